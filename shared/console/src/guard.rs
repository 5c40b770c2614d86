//! What every request goes through. Every response: the security headers, and on a loopback
//! console only a loopback `Host` is answered (a DNS-rebinding page cannot reach it). Every
//! signed-in route: a live session (else to sign-in), refreshed on use. Every change (POST):
//! the session's CSRF token in the form and the console's own `Origin`, else 403 and nothing
//! done.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use crate::pages::refusal;
use crate::session::{self, MAX_AGE, Session};
use crate::{App, ConsoleSink, ConsoleStore};

/// The Content-Security-Policy: nothing runs, nothing frames the console, forms post only to it.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// The largest form the console accepts.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// Host check (loopback consoles) and the security headers on every response.
pub async fn host_and_headers<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if app.config.loopback && !loopback_host(request.headers()) {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers on its loopback address only",
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}

/// `Host` is a loopback name or address (with any port).
fn loopback_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(is_loopback_host)
}

/// `host[:port]` names this machine: `localhost`, `127.0.0.0/8`, `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost" || name == "::1" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A live session for every signed-in route (refreshed on use); CSRF and `Origin` for changes.
pub async fn require_session<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    request: Request,
    next: Next,
) -> Response {
    let config = &app.config;
    let sealer = match session::Sealer::new(&config.session_keys) {
        Ok(sealer) => sealer,
        Err(_) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console's session key is unusable.",
            );
        }
    };
    let now = Utc::now();
    let found = request
        .headers()
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| session::cookie_value(c, &session::cookie_name(config, "session")).map(str::to_owned))
        .and_then(|sealed| sealer.open::<Session>("session", &sealed))
        .filter(|s| s.live_at(now) && s.org_id == config.org_id);
    let Some(mut current) = found else {
        let mut response = Redirect::to("/signin").into_response();
        *response.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(clear) = HeaderValue::from_str(&session::clear_cookie(config, "session")) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        return response;
    };
    let request = if request.method() == Method::POST {
        match checked_change(&app, &current, request).await {
            Ok(request) => request,
            Err(refused) => return refused,
        }
    } else {
        request
    };
    current.seen_at = now;
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(current.clone());
    let mut response = next.run(Request::from_parts(parts, body)).await;
    // Signed out by the handler: no refreshed cookie.
    if response.extensions().get::<SignedOut>().is_none()
        && let Ok(sealed) = sealer.seal("session", &current)
        && let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(
            config,
            "session",
            &sealed,
            (current.issued_at + MAX_AGE) - now,
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Marks a response that ended the session.
#[derive(Debug, Clone, Copy)]
pub struct SignedOut;

/// Whether a change comes from the console's own pages. Browsers send `Origin` on every form
/// POST, but as `null` when the page's referrer policy is `no-referrer` (Fetch Standard,
/// "serializing a request origin"), which the console sends; so a `null` or missing `Origin`
/// counts only with `Sec-Fetch-Site: same-origin` (Fetch Metadata, set by the browser and never
/// by a page). Any other origin, or a cross-site fetch, is refused.
fn same_origin(headers: &HeaderMap, public_origin: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match text(header::ORIGIN.as_str()) {
        Some(origin) if origin != "null" => origin == public_origin.trim_end_matches('/'),
        _ => text("sec-fetch-site") == Some("same-origin"),
    }
}

/// A change must come from the console's own origin and carry the session's CSRF token.
async fn checked_change<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
    request: Request,
) -> Result<Request, Response> {
    let forbidden = |why: &str| {
        tracing::warn!(user = %current.user_id, why, "change refused");
        refusal(
            StatusCode::FORBIDDEN,
            "This change was refused: it did not come from a console page of this session. Reload the page and try again.",
        )
    };
    if !same_origin(request.headers(), &app.config.public_origin) {
        return Err(forbidden(
            "Origin foreign, or missing without Sec-Fetch-Site: same-origin",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| refusal(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !crate::pkce::same_secret(&token, &current.csrf) {
        return Err(forbidden("CSRF token missing or wrong"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
