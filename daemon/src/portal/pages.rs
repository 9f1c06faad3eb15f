//! The built-in portal's pages: the landing page (enter a voucher code; what is on sale; a
//! free trial, and "resume" for a browser that remembers a voucher) for a device without a
//! session, the status page (time and data left, queued sessions, speed,
//! pause and resume) for one with, and the answers to their forms. Server-rendered HTML that
//! works without JavaScript; `/portal.js` only refreshes the numbers. The device is the MAC
//! the kernel saw send from the request's address, never anything the request says; every
//! form carries a CSRF token bound to that MAC. A redeemed voucher is remembered in a cookie
//! (`control::resume`): `HttpOnly`, `SameSite=Lax`, `Secure` over HTTPS. Side effects: pause,
//! resume, redemption and trials go to the control task.

use std::fmt::Write as _;

use axum::{
    Form,
    extract::{ConnectInfo, State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Ends, Site};
use crate::theme::Theme;
use crate::{
    control::{Command, CommandError, RedeemBy, RedeemError, Redeemed, ResumeOffer, TrialError},
    sessions::engine::ClientState,
    views::{PortalClient, Remaining, TrialOffer},
};

/// The cookie that remembers a redeemed voucher (`control::resume`).
const RESUME_COOKIE: &str = "hotspotd_voucher";
/// A cookie value is an id and 64 hex digits; anything longer is not one.
const MAX_COOKIE_CHARS: usize = 100;

/// The longest voucher code accepted, in characters.
pub const MAX_CODE_CHARS: usize = 32;

/// `GET /`: the status page of a device with a session, else the landing page (offering to
/// resume the voucher the browser remembers, if it still can be used; a cookie of one that
/// cannot is dropped).
pub(super) async fn home(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    headers: HeaderMap,
) -> Response {
    let client = match site.client(&ends).await {
        Err(response) => return response,
        Ok(client) => client,
    };
    let cookie = resume_cookie(&headers);
    let wants_offer = client.as_ref().is_some_and(|client| !has_session(client));
    let (Some(cookie), true) = (cookie, wants_offer) else {
        return front(&site, client.as_ref(), StatusCode::OK, None);
    };
    let Ok(offer) = site
        .commands
        .ask(|reply| Command::ResumeOffer { cookie, reply })
        .await
    else {
        return unavailable(&site.theme);
    };
    let mut response = front_with(&site, client.as_ref(), StatusCode::OK, None, offer.as_ref());
    if offer.is_none() {
        forget_cookie(&mut response, ends.tls);
    }
    response
}

/// The page a device sees at `/`, with `message` (an answer to its form) on top.
fn front(
    site: &Site,
    client: Option<&PortalClient>,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    front_with(site, client, status, message, None)
}

/// [`front`], offering to resume a remembered voucher on the landing page.
fn front_with(
    site: &Site,
    client: Option<&PortalClient>,
    status: StatusCode,
    message: Option<&str>,
    resume: Option<&ResumeOffer>,
) -> Response {
    let theme = &site.theme;
    let token = client.map(|client| site.csrf.token(client.mac));
    let body = match client {
        Some(client) if has_session(client) => status_page(theme, client, token.as_deref()),
        _ => {
            let trial = client.map_or(TrialOffer::Off, |client| client.trial);
            let moved = client.is_some_and(|client| client.voucher_moved);
            landing_page(theme, token.as_deref(), trial, resume, moved)
        }
    };
    page(theme, status, message, &body)
}

/// The resume cookie the request carries, if one looks like one.
fn resume_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == RESUME_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| {
            (1..=MAX_COOKIE_CHARS).contains(&value.len())
                && value.chars().all(|c| c.is_ascii_hexdigit() || c == '.')
        })
}

/// Sets the resume cookie on `response` (see the module doc for its attributes).
fn remember(response: &mut Response, value: &str, max_age_secs: u64, tls: bool) {
    let secure = if tls { "; Secure" } else { "" };
    let cookie = format!(
        "{RESUME_COOKIE}={value}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Lax{secure}"
    );
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

/// Tells the browser to drop the resume cookie: it names no voucher that can be used.
fn forget_cookie(response: &mut Response, tls: bool) {
    remember(response, "", 0, tls);
}

/// Whether the device has something to show on a status page: a session running, paused
/// or waiting.
fn has_session(client: &PortalClient) -> bool {
    client.state != ClientState::Disconnected
        || client.remaining.is_some()
        || !client.queued.is_empty()
}

/// What the forms send: the CSRF token and, for redemption, the code. Other fields are
/// ignored, as browsers' extensions add some.
#[derive(Debug, Deserialize)]
pub(super) struct PortalForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// `POST /`: redeems the code of the landing page's form.
pub(super) async fn redeem(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    form: Result<Form<PortalForm>, FormRejection>,
) -> Response {
    let (client, form) = match site.checked(&ends, form).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let theme = &site.theme;
    let Some(code) = valid_code(&form.code) else {
        return front(
            &site,
            Some(&client),
            StatusCode::BAD_REQUEST,
            Some(theme.text("bad_code")),
        );
    };
    portal_redeem(&site, &ends, &client, RedeemBy::Code(code)).await
}

/// `POST /resume-voucher`: redeems the voucher the browser's cookie remembers, as a typed
/// code would be (a device back with another MAC resumes in one tap).
pub(super) async fn resume_voucher(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    headers: HeaderMap,
    form: Result<Form<PortalForm>, FormRejection>,
) -> Response {
    let (client, _) = match site.checked(&ends, form).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let Some(cookie) = resume_cookie(&headers) else {
        return front(
            &site,
            Some(&client),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(site.theme.text("resume_invalid")),
        );
    };
    portal_redeem(&site, &ends, &client, RedeemBy::Cookie(cookie)).await
}

/// Redeems for the asking device; on success back to `/` with the cookie that remembers the
/// voucher, else the page saying why.
async fn portal_redeem(site: &Site, ends: &Ends, client: &PortalClient, by: RedeemBy) -> Response {
    let theme = &site.theme;
    let mac = client.mac;
    let by_cookie = matches!(by, RedeemBy::Cookie(_));
    match site
        .commands
        .ask(|reply| Command::PortalRedeem { mac, by, reply })
        .await
    {
        Err(_) => unavailable(theme),
        Ok(Ok(Redeemed { cookie, .. })) => {
            let mut response = Redirect::to("/").into_response();
            // A RADIUS login has no voucher here to remember.
            if let Some(cookie) = cookie {
                remember(&mut response, &cookie.value, cookie.max_age_secs, ends.tls);
            }
            response
        }
        Ok(Err(RedeemError::UnknownCode)) if by_cookie => {
            let mut response = front(
                site,
                Some(client),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(theme.text("resume_invalid")),
            );
            forget_cookie(&mut response, ends.tls);
            response
        }
        Ok(Err(error)) => {
            let key = match &error {
                RedeemError::UnknownCode => "unknown_code",
                RedeemError::Revoked => "voucher_revoked",
                RedeemError::Expired => "voucher_expired",
                RedeemError::UsedUp => "voucher_used_up",
                RedeemError::OwnSession => "voucher_has_session",
                RedeemError::Throttled { .. } => "too_many_attempts",
                RedeemError::Failed(reason) => {
                    tracing::warn!(%mac, reason, "a voucher was valid but its session could not be sold");
                    "redeem_failed"
                }
                RedeemError::Rejected { .. } => "code_rejected",
                RedeemError::ServerAway(_) => "radius_unreachable",
            };
            let (status, message) = match error {
                // The theme's text may say when: `{seconds}` is replaced.
                RedeemError::Throttled { retry_secs } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    theme
                        .text(key)
                        .replace("{seconds}", &retry_secs.to_string()),
                ),
                RedeemError::Failed(_) | RedeemError::ServerAway(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, theme.text(key).to_owned())
                }
                // The server's Reply-Message, if it gave one, after the theme's text.
                RedeemError::Rejected {
                    message: Some(message),
                } => (
                    StatusCode::FORBIDDEN,
                    format!("{} {message}", theme.text(key)),
                ),
                RedeemError::Rejected { message: None } => {
                    (StatusCode::FORBIDDEN, theme.text(key).to_owned())
                }
                _ => (StatusCode::UNPROCESSABLE_ENTITY, theme.text(key).to_owned()),
            };
            front(site, Some(client), status, Some(&message))
        }
    }
}

/// `POST /trial`: a free trial for the asking device.
pub(super) async fn trial(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    form: Result<Form<PortalForm>, FormRejection>,
) -> Response {
    let (client, _) = match site.checked(&ends, form).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let theme = &site.theme;
    let mac = client.mac;
    let (status, message) = match site
        .commands
        .ask(|reply| Command::Trial { mac, reply })
        .await
    {
        Err(_) => return unavailable(theme),
        Ok(Ok(_)) => return Redirect::to("/").into_response(),
        Ok(Err(TrialError::TooSoon { retry_secs, .. })) => (
            StatusCode::TOO_MANY_REQUESTS,
            theme
                .text("trial_used")
                .replace("{time}", &span(retry_secs)),
        ),
        Ok(Err(TrialError::HasSession)) => (
            StatusCode::CONFLICT,
            theme.text("trial_has_session").to_owned(),
        ),
        Ok(Err(TrialError::Off)) => (StatusCode::CONFLICT, theme.text("trial_off").to_owned()),
        Ok(Err(TrialError::Failed(reason))) => {
            tracing::warn!(%mac, reason, "a free trial could not be given");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                theme.text("trial_failed").to_owned(),
            )
        }
    };
    front(&site, Some(&client), status, Some(&message))
}

/// A duration as the pages say it: "45 s", "5 min", "23 h 5 min" (minutes rounded up).
fn span(secs: u64) -> String {
    if secs < 60 {
        return format!("{secs} s");
    }
    let minutes = secs.div_ceil(60);
    match (minutes / 60, minutes % 60) {
        (0, minutes) => format!("{minutes} min"),
        (hours, 0) => format!("{hours} h"),
        (hours, minutes) => format!("{hours} h {minutes} min"),
    }
}

/// `POST /pause`: pauses the asking device's session.
pub(super) async fn pause(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    form: Result<Form<PortalForm>, FormRejection>,
) -> Response {
    client_command(&site, &ends, form, |mac, reply| Command::Pause {
        mac,
        reply,
    })
    .await
}

/// `POST /resume`: resumes (or starts) the asking device's session.
pub(super) async fn resume(
    State(site): State<Site>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    form: Result<Form<PortalForm>, FormRejection>,
) -> Response {
    client_command(&site, &ends, form, |mac, reply| Command::Connect {
        mac,
        reply,
    })
    .await
}

type ClientReply = tokio::sync::oneshot::Sender<Result<crate::views::ClientView, CommandError>>;

/// Sends a command about the asking device, then sends the browser back to `/` (so a reload
/// does not send the form again); a refusal is shown on the page.
async fn client_command(
    site: &Site,
    ends: &Ends,
    form: Result<Form<PortalForm>, FormRejection>,
    make: impl FnOnce(crate::mac::MacAddr, ClientReply) -> Command,
) -> Response {
    let (client, _) = match site.checked(ends, form).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    match site.commands.ask(|reply| make(client.mac, reply)).await {
        Err(_) => unavailable(&site.theme),
        Ok(Ok(_)) => Redirect::to("/").into_response(),
        Ok(Err(error)) => {
            let message = crate::text::chain(&error).to_string();
            front(site, Some(&client), StatusCode::CONFLICT, Some(&message))
        }
    }
}

impl Site {
    /// The device sending from the connection's address; `Err` is the answer to give when
    /// the daemon is shutting down.
    async fn client(&self, ends: &Ends) -> Result<Option<PortalClient>, Response> {
        let client = ends.peer.ip();
        self.commands
            .ask(|reply| Command::Portal { client, reply })
            .await
            .map_err(|_| unavailable(&self.theme))
    }

    /// A form from a device the kernel can name, with that device's CSRF token; anything
    /// else is answered here with a page saying why.
    async fn checked(
        &self,
        ends: &Ends,
        form: Result<Form<PortalForm>, FormRejection>,
    ) -> Result<(PortalClient, PortalForm), Response> {
        let theme = &self.theme;
        let form = match form {
            Ok(Form(form)) => form,
            Err(rejection) => {
                // 413 too large, 415 not a form; a form that does not parse is a bad request
                // (422 stays the answer to an unknown code).
                let status = match rejection.status() {
                    StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                    status => status,
                };
                let detail = rejection.body_text();
                let body = format!(
                    "<p class=\"muted\">{}</p>{}",
                    escape(&detail),
                    back_link(theme)
                );
                return Err(page(theme, status, Some(theme.text("bad_form")), &body));
            }
        };
        let Some(client) = self.client(ends).await? else {
            return Err(message_page(theme, StatusCode::FORBIDDEN, "not_recognised"));
        };
        if !self.csrf.accepts(client.mac, &form.csrf) {
            return Err(message_page(theme, StatusCode::FORBIDDEN, "bad_token"));
        }
        Ok((client, form))
    }
}

/// The code as redeemed: without surrounding spaces, upper-case; `None` unless it is 1 to
/// [`MAX_CODE_CHARS`] ASCII letters, digits or dashes.
fn valid_code(code: &str) -> Option<String> {
    let code = code.trim();
    let valid = (1..=MAX_CODE_CHARS).contains(&code.len())
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| code.to_ascii_uppercase())
}

/// `GET /portal.js`.
pub(super) async fn script() -> Response {
    asset(
        crate::theme::SCRIPT.to_vec(),
        "text/javascript; charset=utf-8",
    )
}

/// `GET /style.css`: the theme's.
pub(super) async fn style(State(site): State<Site>) -> Response {
    asset(site.theme.style.clone(), "text/css; charset=utf-8")
}

/// `GET /logo`: the theme's SVG or PNG.
pub(super) async fn logo(State(site): State<Site>) -> Response {
    asset(site.theme.logo.clone(), site.theme.logo_type)
}

fn asset(bytes: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) async fn not_found(State(site): State<Site>) -> Response {
    message_page(&site.theme, StatusCode::NOT_FOUND, "not_found")
}

pub(super) async fn method_not_allowed(State(site): State<Site>) -> Response {
    message_page(&site.theme, StatusCode::METHOD_NOT_ALLOWED, "not_found")
}

fn unavailable(theme: &Theme) -> Response {
    message_page(theme, StatusCode::SERVICE_UNAVAILABLE, "unavailable")
}

/// A page that only says the text of `key`, with a way back.
fn message_page(theme: &Theme, status: StatusCode, key: &str) -> Response {
    page(theme, status, Some(theme.text(key)), &back_link(theme))
}

fn back_link(theme: &Theme) -> String {
    format!("<p><a href=\"/\">{}</a></p>", escape(theme.text("back")))
}

/// A whole page: the theme's title and logo, `message` in a card of its own, then `body`.
fn page(theme: &Theme, status: StatusCode, message: Option<&str>, body: &str) -> Response {
    let text = |key| escape(theme.text(key));
    let message = message.map_or_else(String::new, |message| {
        format!(
            "<section class=\"card message\" id=\"message\" role=\"alert\"><p>{}</p></section>",
            escape(message)
        )
    });
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\n\
         <body><main><header><img class=\"logo\" src=\"/logo\" alt=\"\"><h1>{title}</h1></header>\n\
         {message}{body}</main></body></html>\n",
        lang = text("lang"),
        title = text("title"),
    );
    (status, Html(html)).into_response()
}

/// The voucher form. Without a token (a device the kernel cannot name yet) it is still
/// shown; sending it says what to do.
fn code_form(theme: &Theme, token: Option<&str>) -> String {
    let text = |key| escape(theme.text(key));
    format!(
        "<form method=\"post\" action=\"/\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <label for=\"code\">{label}</label>\
         <input id=\"code\" name=\"code\" maxlength=\"{MAX_CODE_CHARS}\" required \
         autocomplete=\"one-time-code\" autocapitalize=\"characters\" spellcheck=\"false\">\
         <button type=\"submit\" id=\"redeem\">{button}</button></form>",
        token = escape(token.unwrap_or_default()),
        label = text("code_label"),
        button = text("redeem_button"),
    )
}

fn landing_page(
    theme: &Theme,
    token: Option<&str>,
    trial: TrialOffer,
    resume: Option<&ResumeOffer>,
    voucher_moved: bool,
) -> String {
    let text = |key| escape(theme.text(key));
    let csrf = escape(token.unwrap_or_default());
    let mut html = String::new();
    if voucher_moved {
        let _ = write!(
            html,
            "<section class=\"card\" id=\"voucher-moved\"><h2>{}</h2><p>{}</p></section>",
            text("voucher_moved_heading"),
            text("voucher_moved"),
        );
    }
    if let Some(resume) = resume {
        let _ = write!(
            html,
            "<section class=\"card\" id=\"resume-offer\"><h2>{}</h2><p>{}</p>\
             <p class=\"muted\">{}</p>\
             <form method=\"post\" action=\"/resume-voucher\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"resume-voucher\">{}</button></form></section>",
            text("resume_heading"),
            text("resume_note"),
            left_in_words(theme, resume.remaining),
            text("resume_voucher_button"),
        );
    }
    let _ = write!(
        html,
        "<section class=\"card\" id=\"landing\"><h2>{heading}</h2><p>{on_sale}</p>{form}</section>",
        heading = text("landing_heading"),
        on_sale = text("on_sale"),
        form = code_form(theme, token),
    );
    match trial {
        TrialOffer::Off => {}
        TrialOffer::Available { secs } => {
            let _ = write!(
                html,
                "<section class=\"card\" id=\"trial\"><h2>{}</h2><p>{}</p>\
                 <form method=\"post\" action=\"/trial\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"trial-button\">{}</button></form></section>",
                text("trial_heading"),
                text("trial_note"),
                escape(&theme.text("trial_button").replace("{time}", &span(secs))),
            );
        }
        TrialOffer::After { retry_secs } => {
            let _ = write!(
                html,
                "<section class=\"card\" id=\"trial\"><h2>{}</h2><p class=\"muted\">{}</p></section>",
                text("trial_heading"),
                escape(
                    &theme
                        .text("trial_used")
                        .replace("{time}", &span(retry_secs))
                ),
            );
        }
    }
    html
}

fn status_page(theme: &Theme, client: &PortalClient, token: Option<&str>) -> String {
    let text = |key| escape(theme.text(key));
    let (state, heading) = match client.state {
        ClientState::Connected => ("connected", "status_connected"),
        ClientState::Paused => ("paused", "status_paused"),
        ClientState::Disconnected => ("disconnected", "status_waiting"),
    };
    let mut html = format!(
        "<section class=\"card\" id=\"status\" data-state=\"{state}\"><h2>{}</h2><dl>",
        text(heading)
    );
    if let Some(remaining) = client.remaining {
        let unlimited = text("unlimited");
        let time = remaining.seconds.map_or_else(
            || format!("<dd class=\"big\">{unlimited}</dd>"),
            |seconds| {
                format!(
                    "<dd class=\"big\" id=\"seconds-left\" data-seconds=\"{seconds}\">{}</dd>",
                    clock(seconds)
                )
            },
        );
        let data = remaining.bytes.map_or_else(
            || format!("<dd class=\"big\">{unlimited}</dd>"),
            |bytes| {
                format!(
                    "<dd class=\"big\" id=\"bytes-left\" data-bytes=\"{bytes}\">{}</dd>",
                    amount(bytes)
                )
            },
        );
        let _ = write!(
            html,
            "<dt>{}</dt>{time}<dt>{}</dt>{data}",
            text("time_left"),
            text("data_left")
        );
    }
    if let (Some(down), Some(up)) = (client.down_mbits, client.up_mbits) {
        let _ = write!(
            html,
            "<dt>{}</dt><dd id=\"speed\">{down} Mbit/s {}<br>{up} Mbit/s {}</dd>",
            text("speed"),
            text("down"),
            text("up")
        );
    }
    html.push_str("</dl>");
    let form_token = token;
    let token = escape(token.unwrap_or_default());
    if client.state == ClientState::Connected {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/pause\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <button type=\"submit\" id=\"pause\">{}</button></form>",
            text("pause_button")
        );
    } else {
        if client.state == ClientState::Paused {
            let _ = write!(html, "<p class=\"muted\">{}</p>", text("paused_note"));
        }
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <button type=\"submit\" id=\"resume\">{}</button></form>",
            text("resume_button")
        );
    }
    html.push_str("</section>");
    if !client.queued.is_empty() {
        let _ = write!(
            html,
            "<section class=\"card\" id=\"queued\"><h2>{}</h2><ul>",
            text("queued_heading")
        );
        for session in &client.queued {
            let _ = write!(html, "<li>{}</li>", left_in_words(theme, session.remaining));
        }
        html.push_str("</ul></section>");
    }
    let _ = write!(
        html,
        "<section class=\"card\"><h2>{}</h2>{}</section><script src=\"/portal.js\" defer></script>",
        text("more_heading"),
        code_form(theme, form_token),
    );
    html
}

/// A queued session's time and data, as one line.
fn left_in_words(theme: &Theme, remaining: Remaining) -> String {
    let parts: Vec<String> = [
        remaining
            .seconds
            .map(|seconds| format!("{} {}", escape(theme.text("time_left")), clock(seconds))),
        remaining
            .bytes
            .map(|bytes| format!("{} {}", escape(theme.text("data_left")), amount(bytes))),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join(" · ")
}

/// Seconds as H:MM:SS, as `/portal.js` writes them.
fn clock(seconds: u64) -> String {
    format!(
        "{}:{:02}:{:02}",
        seconds / 3_600,
        seconds % 3_600 / 60,
        seconds % 60
    )
}

/// Bytes in MB or GB (10^6, 10^9) with two decimals, as `/portal.js` writes them.
fn amount(bytes: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "two decimals of MB are shown; the bytes beyond 2^53 are not"
    )]
    let bytes = bytes as f64;
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else {
        format!("{:.2} MB", bytes / 1e6)
    }
}

/// `text` safe in HTML text and in a double- or single-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_letters_digits_and_dashes() {
        assert_eq!(valid_code(" abc-123 ").as_deref(), Some("ABC-123"));
        assert_eq!(
            valid_code(&"A".repeat(MAX_CODE_CHARS)).map(|c| c.len()),
            Some(MAX_CODE_CHARS)
        );
        for bad in [
            "",
            "   ",
            "a b",
            "<script>",
            "ABC;",
            "ÄBC",
            "\u{0}",
            &"A".repeat(MAX_CODE_CHARS + 1),
        ] {
            assert_eq!(valid_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(span(45), "45 s");
        assert_eq!(span(60), "1 min");
        assert_eq!(span(61), "2 min", "rounded up: never too early");
        assert_eq!(span(3_600), "1 h");
        assert_eq!(span(86_399), "24 h");
        assert_eq!(span(83_100), "23 h 5 min");
    }

    #[test]
    fn the_resume_cookie_is_read_from_any_cookie_header() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(header::COOKIE, HeaderValue::from_str(value).expect("ascii"));
            }
            map
        };
        let value = format!("17.{}", "ab".repeat(32));
        assert_eq!(
            resume_cookie(&headers(&["a=b", &format!("x=1; {RESUME_COOKIE}={value}")])),
            Some(value)
        );
        assert_eq!(resume_cookie(&headers(&["a=b"])), None);
        assert_eq!(
            resume_cookie(&headers(&[&format!("{RESUME_COOKIE}=<script>")])),
            None
        );
        assert_eq!(
            resume_cookie(&headers(&[&format!("{RESUME_COOKIE}={}", "1".repeat(101))])),
            None
        );
    }

    #[test]
    fn the_cookie_is_private_to_the_portal_and_secure_over_https() {
        let mut response = Redirect::to("/").into_response();
        remember(&mut response, "17.ab", 600, true);
        let set = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii");
        assert_eq!(
            set,
            format!("{RESUME_COOKIE}=17.ab; Max-Age=600; Path=/; HttpOnly; SameSite=Lax; Secure")
        );
        let mut response = Redirect::to("/").into_response();
        forget_cookie(&mut response, false);
        let set = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii");
        assert!(
            set.contains("Max-Age=0") && !set.contains("Secure"),
            "{set}"
        );
    }

    #[test]
    fn numbers_read_as_the_script_writes_them() {
        assert_eq!(clock(3_599), "0:59:59");
        assert_eq!(clock(90_061), "25:01:01");
        assert_eq!(amount(4_990_000), "4.99 MB");
        assert_eq!(amount(2_500_000_000), "2.50 GB");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_text_the_pages_use_is_built_in() {
        let theme = Theme::builtin();
        let client = PortalClient {
            mac: crate::mac::MacAddr([2, 0, 0, 0, 0, 1]),
            state: ClientState::Paused,
            remaining: Some(Remaining {
                seconds: Some(60),
                bytes: None,
            }),
            down_mbits: Some(10),
            up_mbits: Some(2),
            queued: vec![crate::views::QueuedSession {
                kind: crate::sessions::SessionType::TimeOrData,
                remaining: Remaining {
                    seconds: Some(60),
                    bytes: Some(1_000_000),
                },
            }],
            trial: TrialOffer::Off,
            voucher_moved: false,
        };
        let mut html = status_page(&theme, &client, Some("t"));
        let resume = ResumeOffer {
            remaining: Remaining {
                seconds: Some(60),
                bytes: None,
            },
        };
        html.push_str(&landing_page(
            &theme,
            None,
            TrialOffer::Available { secs: 300 },
            Some(&resume),
            true,
        ));
        html.push_str(&landing_page(
            &theme,
            None,
            TrialOffer::After { retry_secs: 90 },
            None,
            false,
        ));
        assert!(html.contains("Try it free for 5 min"), "{html}");
        assert!(html.contains("possible in 2 min"), "{html}");
        assert!(html.contains("in use on another device"), "{html}");
        for key in [
            "bad_code",
            "unknown_code",
            "not_recognised",
            "bad_token",
            "bad_form",
            "not_found",
            "unavailable",
            "back",
            "lang",
            "title",
            "status_connected",
            "status_waiting",
            "pause_button",
            "resume_invalid",
            "trial_has_session",
            "trial_off",
            "trial_failed",
            "code_rejected",
            "radius_unreachable",
        ] {
            assert_ne!(theme.text(key), key, "{key} has no built-in text");
        }
        // A key missing from the built-in strings would show as itself, in snake case.
        assert!(
            !html.contains("_heading") && !html.contains("_left<") && !html.contains("_button"),
            "{html}"
        );
    }
}
