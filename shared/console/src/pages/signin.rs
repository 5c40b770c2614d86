//! Sign-in with Salesforce (the OAuth 2.0 web server flow with PKCE and `state`), the 403 page
//! for users without the console's permission, and sign-out (the token revoked).

use askama::Template;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{refusal, render};
use crate::guard::SignedOut;
use crate::pkce::{challenge, random_token, same_secret};
use crate::salesforce::SalesforceAuth;
use crate::session::{self, SIGN_IN_WITHIN, Sealer, Session, SignIn};
use crate::{App, ConsoleSink, ConsoleStore};

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage;

/// The sign-in page: one link, to Salesforce.
pub async fn page<S: ConsoleStore, P: ConsoleSink>() -> Response {
    render(StatusCode::OK, &SignInPage)
}

/// Leaves for Salesforce with a fresh `state` and PKCE challenge, kept in a sealed cookie for
/// the way back.
pub async fn start<S: ConsoleStore, P: ConsoleSink>(State(app): State<App<S, P>>) -> Response {
    let config = &app.config;
    let (Ok(state), Ok(verifier), Ok(sealer)) = (random_token(), random_token(), Sealer::new(&config.session_keys))
    else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be started.");
    };
    let sign_in = SignIn {
        state: state.clone(),
        verifier: verifier.clone(),
        started_at: Utc::now(),
    };
    let Ok(sealed) = sealer.seal("sign-in", &sign_in) else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be started.");
    };
    let mut response =
        Redirect::to(&SalesforceAuth::authorize_url(config, &state, &challenge(&verifier))).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(config, "signin", &sealed, SIGN_IN_WITHIN)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// What Salesforce sends back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Template)]
#[template(path = "forbidden.html")]
struct Forbidden<'a> {
    name: &'a str,
    permission: &'a str,
    permission_set: &'a str,
}

/// Back from Salesforce: the `state` must be the one sent (else 400, nothing stored), the code
/// is exchanged with the verifier, and only a user of the configured org holding the console's
/// custom permission gets a session (else the 403 page naming the permission set).
pub async fn callback<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let config = &app.config;
    let Ok(sealer) = Sealer::new(&config.session_keys) else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be finished.");
    };
    let pending = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| session::cookie_value(c, &session::cookie_name(config, "signin")).map(str::to_owned))
        .and_then(|sealed| sealer.open::<SignIn>("sign-in", &sealed))
        .filter(|s| Utc::now() < s.started_at + SIGN_IN_WITHIN);
    let returned_state = callback.state.as_deref().unwrap_or_default();
    let Some(pending) = pending.filter(|p| !returned_state.is_empty() && same_secret(&p.state, returned_state)) else {
        return with_cleared_sign_in(
            refusal(
                StatusCode::BAD_REQUEST,
                "This sign-in could not be matched to one started here (it expired, or came from elsewhere). Sign in again.",
            ),
            &app,
        );
    };
    if let Some(error) = callback.error {
        let text = format!(
            "Salesforce did not sign you in: {} ({error}).",
            callback.error_description.unwrap_or_default()
        );
        return with_cleared_sign_in(refusal(StatusCode::FORBIDDEN, &text), &app);
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty()) else {
        return with_cleared_sign_in(
            refusal(StatusCode::BAD_REQUEST, "Salesforce sent no authorization code."),
            &app,
        );
    };
    let tokens = match app.salesforce.exchange(config, &code, &pending.verifier).await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, "sign-in: code exchange failed");
            return with_cleared_sign_in(refusal(StatusCode::BAD_GATEWAY, &error.to_string()), &app);
        }
    };
    if !crate::salesforce::instance_host_allowed(config, &tokens.instance_url) {
        tracing::warn!("sign-in: the token answer names an instance that is not Salesforce's");
        let _ = app.salesforce.revoke(config, &tokens.access_token).await;
        return with_cleared_sign_in(
            refusal(
                StatusCode::BAD_GATEWAY,
                "Salesforce's answer named an unexpected instance.",
            ),
            &app,
        );
    }
    let identity = match app.salesforce.identity(config, &tokens.id, &tokens.access_token).await {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(%error, "sign-in: identity lookup failed");
            return with_cleared_sign_in(refusal(StatusCode::BAD_GATEWAY, &error.to_string()), &app);
        }
    };
    if identity.organization_id != config.org_id || !identity.holds(&config.permission) {
        tracing::info!(user = %identity.user_id, org = %identity.organization_id, "sign-in refused: not this org or no permission");
        // The token is not kept: revoked at once.
        let _ = app.salesforce.revoke(config, &tokens.access_token).await;
        let page = Forbidden {
            name: &identity.display_name,
            permission: &config.permission,
            permission_set: &config.permission_set,
        };
        return with_cleared_sign_in(render(StatusCode::FORBIDDEN, &page), &app);
    }
    let (Ok(csrf), now) = (random_token(), Utc::now()) else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be finished.");
    };
    let signed_in = Session {
        user_id: identity.user_id.clone(),
        org_id: identity.organization_id,
        name: identity.display_name,
        access_token: tokens.access_token,
        identity_url: tokens.id,
        instance_url: tokens.instance_url,
        csrf,
        issued_at: now,
        seen_at: now,
    };
    let Ok(sealed) = sealer.seal("session", &signed_in) else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be finished.");
    };
    tracing::info!(user = %identity.user_id, "signed in");
    let mut response = with_cleared_sign_in(Redirect::to("/").into_response(), &app);
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(config, "session", &sealed, session::MAX_AGE)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn with_cleared_sign_in<S, P>(mut response: Response, app: &App<S, P>) -> Response {
    if let Ok(clear) = HeaderValue::from_str(&session::clear_cookie(&app.config, "signin")) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// Signs out: the Salesforce token is revoked and the session cookie removed.
pub async fn sign_out<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    if let Err(error) = app.salesforce.revoke(&app.config, &current.access_token).await {
        tracing::warn!(%error, user = %current.user_id, "sign-out: the token could not be revoked");
    }
    let mut response = Redirect::to("/signin").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.extensions_mut().insert(SignedOut);
    if let Ok(clear) = HeaderValue::from_str(&session::clear_cookie(&app.config, "session")) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}
