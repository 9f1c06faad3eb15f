//! End to end: the dashboard on the API's TCP listener lets in only the operator. No token, a
//! wrong token, a made-up or ended login, a change without its login's CSRF token, and any
//! request for it from the LAN (whatever it carries, even from a paying client the gate lets
//! through) are refused; the login form opens a
//! login with an `HttpOnly`, `SameSite=Strict` cookie, and the pages' changes pass with its CSRF
//! token. The page's event stream is refused the same way, and a login cannot open so many
//! that the API's connections run out. Needs root.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange_on, request};
use hotspotd_tests::{Daemon, GATEWAY_LAN_V4, GATEWAY_WAN_V4, Lan, Netns, tcp_connect_from};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PORT: u16 = 8099;
/// Long enough for a LAN in namespaces; a gated client's SYN is dropped, never answered.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A daemon with the TCP listener on `listen`, its token in a file of the returned folder.
fn start(lan: &Lan, listen: &str, extra: &[(&str, &str)]) -> Result<(Daemon, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let token_path = token_file.to_str().context("a UTF-8 path")?.to_owned();
    let mut env = vec![
        ("HOTSPOTD__API__TCP_LISTEN", listen),
        ("HOTSPOTD__API__TOKEN_FILE", token_path.as_str()),
    ];
    env.extend_from_slice(extra);
    let daemon = Daemon::start(lan, &env)?;
    Ok((daemon, dir))
}

/// One request from `netns` to `to`, from `source` when given.
fn ask(
    netns: &Netns,
    source: Option<Ipv4Addr>,
    to: SocketAddrV4,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer> {
    let mut raw_headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    if !body.is_empty() && !headers.iter().any(|(name, _)| *name == "Content-Type") {
        raw_headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    netns.run(move || -> Result<Answer> {
        let headers: Vec<(&str, &str)> = raw_headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let raw = request(&method, &path, &headers, body.as_bytes());
        let mut stream = match source {
            Some(source) => tcp_connect_from(source, to)?,
            None => std::net::TcpStream::connect_timeout(&to.into(), CONNECT_TIMEOUT)?,
        };
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        exchange_on(&mut stream, &raw)
    })?
}

/// The operator on the box: loopback.
fn local(
    lan: &Lan,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer> {
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT);
    ask(
        &lan.gateway,
        Some(Ipv4Addr::LOCALHOST),
        to,
        method,
        path,
        headers,
        body,
    )
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Logs in with the token; returns the `Cookie` header value and the page's CSRF token.
fn log_in(lan: &Lan) -> Result<(String, String)> {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let answer = local(
        lan,
        "POST",
        "/dashboard/login",
        &form,
        &format!("token={TOKEN}"),
    )?;
    ensure!(
        answer.status == 303 && header(&answer, "location") == Some("/dashboard"),
        "the right token: {} {}",
        answer.status,
        answer.headers
    );
    let set_cookie = header(&answer, "set-cookie").context("a cookie")?;
    ensure!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "the cookie is HttpOnly and SameSite=Strict: {set_cookie}"
    );
    let cookie = set_cookie
        .split(';')
        .next()
        .context("a cookie pair")?
        .to_owned();
    let page = local(lan, "GET", "/dashboard", &[("Cookie", &cookie)], "")?;
    ensure!(page.status == 200, "the page: {}", page.status);
    let csrf = page
        .body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the page's CSRF token")?
        .to_owned();
    ensure!(csrf.len() == 64, "a CSRF token: {csrf}");
    Ok((cookie, csrf))
}

const SESSION: &str =
    r#"{"mac":"02:00:00:00:00:aa","type":"time","time_secs":600,"use_global_speed":true}"#;

#[test]
fn without_a_login_only_the_form_is_served() -> Result<()> {
    let lan = Lan::new(1)?;
    let (_daemon, _token) = start(&lan, "127.0.0.1:8099", &[])?;

    // Nothing: a page sends the browser to the form; the API and changes are refused.
    let answer = local(&lan, "GET", "/dashboard", &[], "")?;
    ensure!(
        answer.status == 303 && header(&answer, "location") == Some("/dashboard/login"),
        "no login: {} {}",
        answer.status,
        answer.headers
    );
    let form = local(&lan, "GET", "/dashboard/login", &[], "")?;
    ensure!(
        form.status == 200 && form.body.contains("name=\"token\""),
        "the form: {}",
        form.status
    );
    for (method, path, body) in [
        ("GET", "/v1/clients", ""),
        ("POST", "/v1/sessions", SESSION),
        (
            "POST",
            "/dashboard/vouchers/sheet",
            r#"{"count":1,"type":"time","time_secs":60}"#,
        ),
    ] {
        let answer = local(&lan, method, path, &[], body)?;
        ensure!(
            answer.status == 401,
            "{method} {path} without a login: {}",
            answer.status
        );
    }

    // A wrong token in the form, or none: the form again, no cookie.
    let urlencoded = [("Content-Type", "application/x-www-form-urlencoded")];
    for body in ["token=not-the-token-at-all-000000", "token=", ""] {
        let answer = local(&lan, "POST", "/dashboard/login", &urlencoded, body)?;
        ensure!(
            answer.status == 401
                && header(&answer, "set-cookie").is_none()
                && answer.body.contains("not the token"),
            "login with '{body}': {} {}",
            answer.status,
            answer.headers
        );
    }
    // A made-up login counts for nothing.
    let made_up =
        "hotspotd_dashboard=00000000000000000000000000000000000000000000000000000000000000";
    let answer = local(&lan, "GET", "/v1/clients", &[("Cookie", made_up)], "")?;
    ensure!(answer.status == 401, "a made-up login: {}", answer.status);

    Ok(())
}

#[test]
fn a_login_changes_things_only_with_its_csrf_token() -> Result<()> {
    let lan = Lan::new(1)?;
    let (_daemon, _token) = start(&lan, "127.0.0.1:8099", &[])?;
    let (cookie, csrf) = log_in(&lan)?;
    let answer = local(&lan, "GET", "/v1/clients", &[("Cookie", &cookie)], "")?;
    ensure!(
        answer.status == 200,
        "reading with the login: {}",
        answer.status
    );

    // Changes with the login but without its CSRF token, or with another: refused, undone.
    let wrong = "f".repeat(64);
    for headers in [
        vec![("Cookie", cookie.as_str())],
        vec![
            ("Cookie", cookie.as_str()),
            ("X-CSRF-Token", wrong.as_str()),
        ],
    ] {
        let answer = local(&lan, "POST", "/v1/sessions", &headers, SESSION)?;
        ensure!(
            answer.status == 403 && answer.body.contains("\"csrf_refused\""),
            "a sale without the CSRF token: {} {}",
            answer.status,
            answer.body
        );
        let answer = local(
            &lan,
            "POST",
            "/dashboard/vouchers/sheet",
            &headers,
            r#"{"count":1,"type":"time","time_secs":60}"#,
        )?;
        ensure!(
            answer.status == 403,
            "vouchers without the CSRF token: {}",
            answer.status
        );
    }
    let sessions = local(&lan, "GET", "/v1/sessions", &[("Cookie", &cookie)], "")?;
    ensure!(
        sessions.body.trim() == "[]",
        "nothing was sold: {}",
        sessions.body
    );
    let vouchers = local(&lan, "GET", "/v1/vouchers", &[("Cookie", &cookie)], "")?;
    ensure!(
        vouchers.body.trim() == "[]",
        "no voucher was made: {}",
        vouchers.body
    );

    // With it: sold, and a sheet of three cards.
    let with = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let answer = local(&lan, "POST", "/v1/sessions", &with, SESSION)?;
    ensure!(
        answer.status == 201,
        "a sale with the CSRF token: {} {}",
        answer.status,
        answer.body
    );
    let sheet = local(
        &lan,
        "POST",
        "/dashboard/vouchers/sheet",
        &with,
        r#"{"count":3,"type":"time","time_secs":3600,"use_global_speed":true}"#,
    )?;
    ensure!(
        sheet.status == 200 && sheet.body.matches("<div class=\"card\">").count() == 3,
        "the sheet: {} {}",
        sheet.status,
        sheet.body
    );
    // The bearer token needs no CSRF token: no browser sends it on its own.
    let bearer = format!("Bearer {TOKEN}");
    let answer = local(
        &lan,
        "POST",
        "/v1/sessions",
        &[("Authorization", &bearer)],
        SESSION,
    )?;
    ensure!(
        answer.status == 201,
        "a sale with the bearer token: {}",
        answer.status
    );
    let answer = local(
        &lan,
        "GET",
        "/dashboard",
        &[("Authorization", "Bearer 0000000000000000")],
        "",
    )?;
    ensure!(
        answer.status == 401,
        "a wrong bearer token on a page: {}",
        answer.status
    );

    Ok(())
}

#[test]
fn a_login_sees_charts_and_ends_when_logged_out() -> Result<()> {
    let lan = Lan::new(1)?;
    let (_daemon, _token) = start(&lan, "127.0.0.1:8099", &[])?;
    let (cookie, csrf) = log_in(&lan)?;
    let with = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    // Charts are SVG; a bad range is a sentence.
    let chart = local(
        &lan,
        "GET",
        "/dashboard/charts/traffic.svg?days=2",
        &[("Cookie", &cookie)],
        "",
    )?;
    ensure!(
        chart.status == 200 && chart.body.starts_with("<svg"),
        "the traffic chart: {}",
        chart.status
    );
    let chart = local(
        &lan,
        "GET",
        "/dashboard/charts/sales.svg",
        &[("Cookie", &cookie)],
        "",
    )?;
    ensure!(
        chart.status == 200 && chart.body.contains("Sessions sold by day"),
        "the sales chart: {}",
        chart.body
    );
    let chart = local(
        &lan,
        "GET",
        "/dashboard/charts/sales.svg?days=0",
        &[("Cookie", &cookie)],
        "",
    )?;
    ensure!(
        chart.status == 400 && chart.body.contains("days=0"),
        "days=0: {} {}",
        chart.status,
        chart.body
    );

    // Logged out: the login is gone.
    let answer = local(&lan, "POST", "/dashboard/logout", &with, "")?;
    ensure!(answer.status == 303, "log out: {}", answer.status);
    let answer = local(&lan, "GET", "/v1/clients", &[("Cookie", &cookie)], "")?;
    ensure!(answer.status == 401, "an ended login: {}", answer.status);
    Ok(())
}

#[test]
fn the_lan_never_reaches_the_dashboard() -> Result<()> {
    let lan = Lan::new(1)?;
    let (_daemon, _token) = start(
        &lan,
        "0.0.0.0:8099",
        &[("HOTSPOTD__API__ALLOW_NON_LOOPBACK", "true")],
    )?;
    let client = &lan.clients[0];
    let box_on_lan = SocketAddrV4::new(GATEWAY_LAN_V4, PORT);
    let from_lan = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        ask(&client.netns, None, box_on_lan, method, path, headers, body)
    };

    // Unpaid, the kernel's gate keeps it from the port (not a local service).
    ensure!(
        from_lan("GET", "/dashboard/login", &[], "").is_err(),
        "an unpaid client reached the API's port"
    );
    // Paid, it reaches the box's every port, and the door refuses it.
    let bearer = format!("Bearer {TOKEN}");
    let sale = format!(
        r#"{{"mac":"{}","type":"time","time_secs":3600,"use_global_speed":true,"connect":true}}"#,
        client.mac
    );
    let answer = local(
        &lan,
        "POST",
        "/v1/sessions",
        &[("Authorization", &bearer)],
        &sale,
    )?;
    ensure!(
        answer.status == 201,
        "the client's sale: {} {}",
        answer.status,
        answer.body
    );
    let urlencoded = [("Content-Type", "application/x-www-form-urlencoded")];
    for (method, path, headers, body) in [
        ("GET", "/dashboard/login", vec![], String::new()),
        (
            "POST",
            "/dashboard/login",
            urlencoded.to_vec(),
            format!("token={TOKEN}"),
        ),
        (
            "GET",
            "/dashboard",
            vec![("Authorization", bearer.as_str())],
            String::new(),
        ),
        (
            "GET",
            "/dashboard/charts/sales.svg",
            vec![("Authorization", bearer.as_str())],
            String::new(),
        ),
        (
            "GET",
            "/dashboard/events",
            vec![("Authorization", bearer.as_str())],
            String::new(),
        ),
    ] {
        let answer = from_lan(method, path, &headers, &body)?;
        ensure!(
            answer.status == 403
                && answer.body.contains("\"lan_refused\"")
                && header(&answer, "set-cookie").is_none(),
            "{method} {path} from the LAN: {} {}",
            answer.status,
            answer.body
        );
    }
    login_from_the_lan(&lan, box_on_lan)?;

    // The refusal is the LAN's: the same listener shows the form to the WAN side.
    let wan = SocketAddrV4::new(GATEWAY_WAN_V4, PORT);
    let answer = ask(&lan.internet, None, wan, "GET", "/dashboard/login", &[], "")?;
    ensure!(
        answer.status == 200,
        "the form from the WAN side: {}",
        answer.status
    );
    Ok(())
}

/// A login made on the box is worth nothing from the LAN: the API refuses its cookie, and the
/// page's event stream is the dashboard's, refused to the LAN whatever comes with it.
fn login_from_the_lan(lan: &Lan, box_on_lan: SocketAddrV4) -> Result<()> {
    let client = &lan.clients[0];
    let from_lan = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        ask(&client.netns, None, box_on_lan, method, path, headers, body)
    };
    let (cookie, csrf) = log_in(lan)?;
    for path in ["/v1/clients", "/v1/events"] {
        let answer = from_lan("GET", path, &[("Cookie", &cookie)], "")?;
        ensure!(
            answer.status == 401,
            "the operator's cookie from the LAN on {path}: {}",
            answer.status
        );
    }
    let answer = from_lan("GET", "/dashboard/events", &[("Cookie", &cookie)], "")?;
    ensure!(
        answer.status == 403 && answer.body.contains("\"lan_refused\""),
        "the page's event stream with the operator's cookie from the LAN: {} {}",
        answer.status,
        answer.body
    );
    let answer = from_lan(
        "POST",
        "/v1/sessions",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        SESSION,
    )?;
    ensure!(
        answer.status == 401,
        "a sale with the operator's cookie from the LAN: {}",
        answer.status
    );
    Ok(())
}

/// Opens the page's event stream from loopback with `cookie`: the connection, once its answer's
/// headers and first line are in, and what was read. An answer that is not a stream is read
/// whole.
fn open_stream(lan: &Lan, cookie: &str) -> Result<(std::net::TcpStream, String)> {
    use std::io::{Read as _, Write as _};
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT);
    let mut stream = lan
        .gateway
        .run(move || tcp_connect_from(Ipv4Addr::LOCALHOST, to))??;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(&request(
        "GET",
        "/dashboard/events",
        &[("Cookie", cookie), ("Accept", "text/event-stream")],
        b"",
    ))?;
    let mut read = Vec::new();
    let mut buffer = [0; 4096];
    // The stream's first line is the comment ": live"; anything else ends with the connection.
    while !String::from_utf8_lossy(&read).contains(": live") {
        let count = stream.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        read.extend_from_slice(&buffer[..count]);
    }
    Ok((stream, String::from_utf8_lossy(&read).into_owned()))
}

/// The places for the page's event streams (16).
const STREAMS: usize = 16;

#[test]
fn the_pages_event_stream_needs_a_login_and_is_capped() -> Result<()> {
    let lan = Lan::new(1)?;
    let (_daemon, _token) = start(&lan, "127.0.0.1:8099", &[])?;

    // Without a login, or with a made-up one: the login form, no stream.
    let made_up =
        "hotspotd_dashboard=00000000000000000000000000000000000000000000000000000000000000";
    for headers in [vec![], vec![("Cookie", made_up)]] {
        let answer = local(&lan, "GET", "/dashboard/events", &headers, "")?;
        ensure!(
            answer.status == 303
                && header(&answer, "location") == Some("/dashboard/login")
                && header(&answer, "content-type").is_none_or(|kind| kind != "text/event-stream"),
            "the stream without a login ({headers:?}): {} {}",
            answer.status,
            answer.headers
        );
    }

    // A login's streams: as many as there are places, then `429`; the API still answers.
    let (cookie, csrf) = log_in(&lan)?;
    let mut open = Vec::new();
    for at in 0..STREAMS {
        let (stream, head) = open_stream(&lan, &cookie)?;
        ensure!(
            head.starts_with("HTTP/1.1 200")
                && head
                    .to_ascii_lowercase()
                    .contains("content-type: text/event-stream"),
            "stream {at}: {head}"
        );
        open.push(stream);
    }
    let (_, refused) = open_stream(&lan, &cookie)?;
    ensure!(
        refused.starts_with("HTTP/1.1 429") && refused.contains("\"too_many_streams\""),
        "stream {} of a login: {refused}",
        STREAMS + 1
    );
    let bearer = format!("Bearer {TOKEN}");
    let answer = local(
        &lan,
        "GET",
        "/v1/clients",
        &[("Authorization", &bearer)],
        "",
    )?;
    ensure!(
        answer.status == 200,
        "the API with every stream open: {}",
        answer.status
    );
    // Nor can the login read the API's stream, which is not counted.
    let answer = local(&lan, "GET", "/v1/events", &[("Cookie", &cookie)], "")?;
    ensure!(
        answer.status == 403 && answer.body.contains("\"dashboard_stream\""),
        "/v1/events with a login: {} {}",
        answer.status,
        answer.body
    );
    // An event reaches every open stream: a session sold and started.
    let mac = lan.clients[0].mac.as_str();
    let sale = format!(
        r#"{{"mac":"{mac}","type":"time","time_secs":600,"use_global_speed":true,"connect":true}}"#
    );
    let sold = local(
        &lan,
        "POST",
        "/v1/sessions",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        &sale,
    )?;
    ensure!(sold.status == 201, "a sale: {} {}", sold.status, sold.body);
    for (at, stream) in open.iter_mut().enumerate() {
        let line = read_until(stream, "\"event\":\"session_started\"")?;
        ensure!(
            line.contains("data: {") && line.contains(mac),
            "stream {at}: {line}"
        );
    }

    places_come_back_and_streams_end(&lan, &cookie, &csrf, open)
}

/// A closed stream gives its place back; a login's streams end when it is logged out, and it
/// opens no new one.
fn places_come_back_and_streams_end(
    lan: &Lan,
    cookie: &str,
    csrf: &str,
    mut open: Vec<std::net::TcpStream>,
) -> Result<()> {
    // A tab closed gives its place back: the connection's end drops its stream.
    drop(open.pop());
    let closed = std::time::Instant::now();
    let mut reopened = String::new();
    let again = hotspotd_tests::wait_for(std::time::Duration::from_secs(10), || {
        if let Ok((stream, head)) = open_stream(lan, cookie) {
            reopened = head;
            if reopened.starts_with("HTTP/1.1 200") {
                open.push(stream);
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        false
    });
    ensure!(again, "a closed stream's place never came back: {reopened}");
    eprintln!(
        "a closed stream's place came back after {} ms",
        closed.elapsed().as_millis()
    );

    // Logged out: its streams end (at the next keep-alive), and no new one opens.
    let with = [("Cookie", cookie), ("X-CSRF-Token", csrf)];
    let answer = local(lan, "POST", "/dashboard/logout", &with, "")?;
    ensure!(answer.status == 303, "log out: {}", answer.status);
    let answer = local(lan, "GET", "/dashboard/events", &[("Cookie", cookie)], "")?;
    ensure!(
        answer.status == 303,
        "the stream of an ended login: {}",
        answer.status
    );
    let logged_out = std::time::Instant::now();
    let stream = open.first_mut().context("an open stream")?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(25)))?;
    let ended = read_to_end(stream)?;
    eprintln!(
        "a logged-out login's stream ended after {} ms",
        logged_out.elapsed().as_millis()
    );
    ensure!(
        ended.contains("0\r\n\r\n"),
        "the stream of an ended login did not end: {ended}"
    );
    Ok(())
}

/// Reads `stream` until what was read contains `wanted`; what was read.
fn read_until(stream: &mut std::net::TcpStream, wanted: &str) -> Result<String> {
    use std::io::Read as _;
    let mut read = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&read).contains(wanted) {
        let count = stream.read(&mut buffer).context("read the stream")?;
        ensure!(
            count > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buffer[..count]);
    }
    Ok(String::from_utf8_lossy(&read).into_owned())
}

/// Reads `stream` until the daemon closes it; what was read.
fn read_to_end(stream: &mut std::net::TcpStream) -> Result<String> {
    use std::io::Read as _;
    let mut read = Vec::new();
    stream.read_to_end(&mut read).context("read to the end")?;
    Ok(String::from_utf8_lossy(&read).into_owned())
}
