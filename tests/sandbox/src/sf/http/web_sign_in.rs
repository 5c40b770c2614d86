//! The console's sign-in as Salesforce serves it: the OAuth 2.0 web server flow with PKCE
//! (authorize → code → token), the identity URL (with the `custom_permissions` scope) and
//! token revocation. A test user "approves" with one click on the authorize page; everything
//! after follows Salesforce's documented rules (see tests/sandbox/README.md).

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::AppState;

/// The org's id in identity URLs.
const ORG_ID: &str = "00DSB0000000001AAA";

/// An authorization code: valid once, for 15 minutes, for the client, redirect URI and code
/// challenge it was issued with.
#[derive(Debug, Clone)]
pub struct AuthCode {
    user_id: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    issued_at: DateTime<Utc>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(status: StatusCode, text: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Error</title><h1>OAuth error</h1><p>{}</p>",
            escape(text)
        )),
    )
        .into_response()
}

/// `GET /services/oauth2/authorize`: the approval page (one button per test user, and Deny);
/// `POST`: the user's choice, answered with a redirect to the callback.
pub(super) fn authorize(state: &AppState, method: &Method, uri: &Uri, body: &[u8]) -> Response {
    let params = if *method == Method::POST {
        form(body)
    } else {
        url_pairs(uri.query().unwrap_or_default())
    };
    let get = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut world = state.lock();
    let app = world.sf.org.console_app.clone();
    // Errors before the redirect URI is known good are shown, never redirected (RFC 6749 §4.1.2.1).
    if get("client_id") != app.client_id {
        return error_page(
            StatusCode::BAD_REQUEST,
            "error=invalid_client_id&error_description=client identifier invalid",
        );
    }
    let redirect_uri = get("redirect_uri");
    if !app.callback_urls.contains(&redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "error=redirect_uri_mismatch&error_description=redirect_uri must match configuration",
        );
    }
    let back = |pairs: &[(&str, &str)]| {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        (
            StatusCode::FOUND,
            [("location", format!("{redirect_uri}{separator}{query}"))],
        )
            .into_response()
    };
    let state_param = get("state");
    if get("response_type") != "code" {
        return back(&[
            ("error", "unsupported_response_type"),
            ("error_description", "response type not supported"),
            ("state", &state_param),
        ]);
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        // The connected app requires PKCE (“Require Proof Key for Code Exchange (PKCE)”).
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "missing required code challenge"),
            ("state", &state_param),
        ]);
    }
    if *method != Method::POST {
        let hidden: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    r#"<input type="hidden" name="{}" value="{}">"#,
                    escape(k),
                    escape(v.as_str().unwrap_or_default())
                )
            })
            .collect();
        let buttons: String = app
            .users
            .iter()
            .map(|u| {
                format!(
                    r#"<button type="submit" name="user" value="{}">Allow as {} ({})</button> "#,
                    escape(&u.id),
                    escape(&u.name),
                    escape(&u.username)
                )
            })
            .collect();
        return Html(format!(
            "<!doctype html><html lang=\"en\"><head><title>Allow Access?</title><link rel=\"icon\" href=\"data:,\"></head><body><h1>Allow Access?</h1>\
             <p>The sandbox org's console app asks to sign you in.</p><form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}{buttons}\
             <button type=\"submit\" name=\"user\" value=\"deny\">Deny</button></form></body></html>"
        ))
        .into_response();
    }
    let user = get("user");
    if user == "deny" {
        return back(&[
            ("error", "access_denied"),
            ("error_description", "end-user denied authorization"),
            ("state", &state_param),
        ]);
    }
    if !app.users.iter().any(|u| u.id == user) {
        return error_page(StatusCode::BAD_REQUEST, "no such user");
    }
    let code = format!("aPrx{}", uuid::Uuid::new_v4().simple());
    world.sf.auth_codes.insert(
        code.clone(),
        AuthCode {
            user_id: user,
            client_id: get("client_id"),
            redirect_uri: redirect_uri.clone(),
            challenge: get("code_challenge"),
            scope: get("scope"),
            issued_at: Utc::now(),
        },
    );
    let mut pairs = vec![("code", code.as_str())];
    if !state_param.is_empty() {
        pairs.push(("state", &state_param));
    }
    back(&pairs)
}

/// `POST /services/oauth2/token` with `grant_type=authorization_code`: the code once, within
/// 15 minutes, with the same client and redirect URI, and a verifier whose S256 hash is the
/// challenge.
pub(super) fn exchange(state: &AppState, body: &[u8]) -> Response {
    let params = form(body);
    let get = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut world = state.lock();
    // A code is spent by its first exchange, whatever the outcome.
    let Some(code) = world.sf.auth_codes.remove(&get("code")) else {
        return oauth_error("invalid_grant", "invalid authorization code");
    };
    if Utc::now() > code.issued_at + Duration::minutes(15) {
        return oauth_error("invalid_grant", "expired authorization code");
    }
    if get("client_id") != code.client_id {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if get("redirect_uri") != code.redirect_uri {
        return oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration");
    }
    let hashed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if hashed != code.challenge {
        return oauth_error("invalid_grant", "invalid code verifier");
    }
    let access_token = format!("00DSB0000000001!U{}", uuid::Uuid::new_v4().simple());
    world.sf.tokens.insert(access_token.clone(), 0);
    world
        .sf
        .user_tokens
        .insert(access_token.clone(), (code.user_id.clone(), code.scope.clone()));
    let base = world.sf_base.clone();
    json_response(
        StatusCode::OK,
        json!({
            "access_token": access_token,
            "instance_url": base,
            "id": format!("{base}/id/{ORG_ID}/{}", code.user_id),
            "token_type": "Bearer",
            "issued_at": Utc::now().timestamp_millis().to_string(),
            "signature": "c2FuZGJveA==",
            "scope": code.scope,
        }),
    )
}

/// `GET /id/{org}/{user}`: who holds the token; the custom permissions the connected app
/// lists, with whether the user holds each, when the token has the `custom_permissions` scope.
pub(super) fn identity(state: &AppState, headers: &HeaderMap, ids: &str) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let world = state.lock();
    let Some((user_id, scope)) = world.sf.user_tokens.get(token) else {
        return (StatusCode::UNAUTHORIZED, "Bad_OAuth_Token").into_response();
    };
    if ids != format!("{ORG_ID}/{user_id}") {
        return (StatusCode::FORBIDDEN, "Bad_Id").into_response();
    }
    let Some(user) = world.sf.org.console_app.users.iter().find(|u| &u.id == user_id) else {
        return (StatusCode::FORBIDDEN, "Bad_Id").into_response();
    };
    let mut body = json!({
        "id": format!("{}/id/{ORG_ID}/{user_id}", world.sf_base),
        "user_id": user_id,
        "organization_id": ORG_ID,
        "username": user.username,
        "display_name": user.name,
        "active": true,
    });
    if scope.split_whitespace().any(|s| s == "custom_permissions") {
        // Every custom permission the connected app is given, each with the user's value.
        let mut permissions = serde_json::Map::new();
        for app_permission in &world.sf.org.console_app.custom_permissions {
            let held = user.permissions.contains(app_permission);
            permissions.insert(app_permission.clone(), json!(held));
        }
        body["custom_permissions"] = Value::Object(permissions);
    }
    json_response(StatusCode::OK, body)
}

/// `POST /services/oauth2/revoke`: the token stops working (200); an unknown one is 400.
pub(super) fn revoke(state: &AppState, body: &[u8]) -> Response {
    let params = form(body);
    let token = params
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut world = state.lock();
    let known = world.sf.tokens.remove(&token).is_some() | world.sf.user_tokens.remove(&token).is_some();
    if known {
        StatusCode::OK.into_response()
    } else {
        oauth_error("unsupported_token_type", "this token type is not supported")
    }
}
