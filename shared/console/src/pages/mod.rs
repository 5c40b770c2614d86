//! One handler module per page; templates in `templates/` (askama: compiled, HTML-escaped).

pub mod advanced;
pub mod audit;
pub mod backfill;
pub mod catalog;
pub mod dry_run;
pub mod impact;
pub mod link_new;
pub mod links;
pub mod overview;
pub mod runs;
pub mod settings;
pub mod signin;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// The header every signed-in page shows.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Who is signed in.
    pub user: String,
    /// Their CSRF token, for the sign-out form.
    pub csrf: String,
    /// The page, for the navigation's `aria-current`.
    pub current: &'static str,
}

impl Chrome {
    /// The chrome for `session` on page `current`.
    pub fn of(session: &Session, current: &'static str) -> Chrome {
        Chrome {
            user: session.name.clone(),
            csrf: session.csrf.clone(),
            current,
        }
    }
}

/// A rendered page with its status (a template that fails to render is a 500 with no detail).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be shown").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
    action: Option<(&'a str, &'a str)>,
}

/// A page that only explains (refusals, errors, not found).
pub fn refusal(status: StatusCode, text: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Refused");
    render(
        status,
        &Message {
            title,
            text,
            action: Some(("/", "Back to the overview")),
        },
    )
}

/// The permission checked again in Salesforce before a change: a permission set removed
/// since sign-in stops the next change (the refusal says nothing was changed).
pub async fn still_permitted<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
) -> Result<(), Response> {
    match app
        .salesforce
        .identity(&app.config, &current.identity_url, &current.access_token)
        .await
    {
        Ok(identity) if identity.holds(&app.config.permission) => Ok(()),
        Ok(_) => Err(refusal(
            StatusCode::FORBIDDEN,
            &format!(
                "You no longer hold the {} permission (permission set {}): nothing was changed.",
                app.config.permission, app.config.permission_set
            ),
        )),
        Err(error) => Err(refusal(
            StatusCode::FORBIDDEN,
            &format!("{error}: nothing was changed. Sign in again."),
        )),
    }
}

/// Before a change made in Salesforce as the admin: the permission checked again, then a
/// client with the admin's own token.
pub async fn as_permitted_admin<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
) -> Result<salesforce::SfClient, Response> {
    still_permitted(app, current).await?;
    crate::salesforce::as_user(current).map_err(|error| refusal(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()))
}

/// Any other path.
pub async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "There is no such page.")
}

/// The one stylesheet.
pub async fn stylesheet() -> Response {
    let mut response = include_str!("../../static/console.css").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

/// The icon browsers ask for (a page without one makes every visit log a failed request).
pub async fn icon() -> Response {
    let mut response = include_str!("../../static/favicon.svg").into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    response
}

/// An address as pages show it: the first letter of the local part and the domain.
pub fn redacted(address: &str) -> String {
    mapping::email::redact_email(address)
}

#[doc(hidden)]
pub mod tests_support {
    //! A configuration for tests.
    use crate::config::ConsoleConfig;

    /// A loopback console on port 8080 for org `00DSB0000000001AAA`.
    pub fn config() -> ConsoleConfig {
        ConsoleConfig {
            public_origin: "http://127.0.0.1:8080".into(),
            sf_login_url: "http://127.0.0.1:9".into(),
            client_id: "console-app".into(),
            client_secret: None,
            org_id: "00DSB0000000001AAA".into(),
            permission: crate::config::DEFAULT_PERMISSION.into(),
            permission_set: crate::config::DEFAULT_PERMISSION_SET.into(),
            session_keys: vec![[42; 32]],
            loopback: true,
        }
    }
}
