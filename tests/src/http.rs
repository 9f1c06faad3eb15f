//! Raw HTTP/1.1 exchanges with the daemon's API, byte for byte, so a test can send what no
//! well-behaved client would: malformed request lines, invalid percent-encoding, wrong
//! content types, bodies larger than allowed, garbage. One request per connection.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

use crate::Netns;

/// How long an exchange may take: the daemon answers in milliseconds.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code; 0 when the daemon closed the connection without answering.
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (any case), trimmed; `None` if it was not sent.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The answer's JSON body, if it has one.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// One page of a listing (`GET /v1/clients`, `/v1/sessions`): its rows and the number that
/// match in all (`X-Total-Count`); an error for any answer but 200.
pub fn listing(socket: &Path, target: &str) -> Result<(Vec<serde_json::Value>, u64)> {
    let answer = exchange(socket, &request("GET", target, &[], b""))?;
    ensure!(answer.status == 200, "{target}: {answer:?}");
    let total = answer
        .header("x-total-count")
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("{target}: X-Total-Count in {}", answer.headers))?;
    let rows = answer
        .json()
        .and_then(|body| body.as_array().cloned())
        .with_context(|| format!("{target}: a JSON list in {}", answer.body))?;
    Ok((rows, total))
}

/// A request: the method, the target (path and query, sent as given), headers, the body.
/// `Content-Length` is added for a body; `Host` and `Connection: close` always.
#[must_use]
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: hotspotd\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(text, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(text, "Content-Length: {}\r\n", body.len());
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `raw` on a new connection to the Unix socket at `socket` and reads the answer. A
/// daemon that stops reading (a body too large) may close before all is written; that is
/// not an error, the answer is still read.
pub fn exchange(socket: &Path, raw: &[u8]) -> Result<Answer> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    exchange_on(&mut stream, raw)
}

/// [`exchange`] on a stream the caller connected (a TCP one, say).
pub fn exchange_on(stream: &mut (impl Read + Write), raw: &[u8]) -> Result<Answer> {
    if let Err(error) = stream.write_all(raw)
        && !matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        )
    {
        return Err(error).context("send the request");
    }
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // What was read before the reset is the answer.
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => return Err(error).context("read the answer"),
    }
    Ok(parse(&bytes))
}

fn parse(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = head.split_once("\r\n").map_or("", |(_, rest)| rest);
    Answer {
        status,
        headers: headers.to_owned(),
        body: dechunk(headers, body),
    }
}

/// The body without chunked transfer coding, when the answer used it.
fn dechunk(headers: &str, body: &str) -> String {
    let chunked = headers
        .lines()
        .any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(next)) = (after.get(..size), after.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        rest = next.trim_start_matches("\r\n");
    }
    out
}

/// `requests` GETs of `path` at `target` from inside `netns`, each on a connection of its own
/// as a phone makes them, one after another (or one every `pace`): the time of each from
/// connecting to the whole answer, each checked to be `status`. For the benchmarks.
///
/// # Errors
/// If a connection fails or an answer is not `status`.
pub fn timed_gets(
    netns: &Netns,
    target: std::net::SocketAddr,
    path: &str,
    requests: usize,
    pace: Option<Duration>,
    status: u16,
) -> Result<Vec<Duration>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    let expected = format!("HTTP/1.1 {status} ");
    let path = path.to_owned();
    netns.run(move || -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(requests);
        let started = std::time::Instant::now();
        for n in 0..requests {
            if let Some(pace) = pace {
                let due = started + pace * u32::try_from(n).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let sent = std::time::Instant::now();
            let mut stream = std::net::TcpStream::connect_timeout(&target, EXCHANGE_TIMEOUT)
                .with_context(|| format!("connect to {target}"))?;
            stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
            stream.write_all(request.as_bytes())?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            samples.push(sent.elapsed());
            ensure!(
                answer.starts_with(expected.as_bytes()),
                "{target}{path}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        Ok(samples)
    })?
}
