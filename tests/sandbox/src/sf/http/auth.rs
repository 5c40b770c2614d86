//! The OAuth token endpoint: JWT bearer (signature checked against the connected app's
//! certificate), client credentials and refresh token, with Salesforce's OAuth error bodies.

use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::AppState;

pub(super) fn token(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
    let params = form(body);
    let get = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut world = state.lock();
    let org = world.sf.org.clone();
    let granted = match get("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => verify_jwt(&org, &get("assertion")),
        "client_credentials" => {
            let (mut id, mut secret) = (get("client_id"), get("client_secret"));
            if let Some(basic) = headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Basic "))
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(basic)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                if let Some((i, s)) = decoded.split_once(':') {
                    (id, secret) = (i.to_owned(), s.to_owned());
                }
            }
            if id == org.client_id && secret == org.client_secret {
                Ok(())
            } else {
                Err(("invalid_client", "invalid client credentials"))
            }
        }
        "refresh_token" => {
            if get("client_id") != org.client_id {
                Err(("invalid_client_id", "client identifier invalid"))
            } else if org.refresh_token.as_deref().is_some_and(|t| t == get("refresh_token")) {
                Ok(())
            } else {
                Err(("invalid_grant", "expired access/refresh token"))
            }
        }
        _ => Err(("unsupported_grant_type", "grant type not supported")),
    };
    if let Err((error, description)) = granted {
        return oauth_error(error, description);
    }
    let access_token = format!("00DSB0000000001!{}", uuid::Uuid::new_v4().simple());
    world.sf.tokens.insert(access_token.clone(), 0);
    let instance_url = world.sf_base.clone();
    // Refresh-token rotation (a connected app's "Enable Refresh Token Rotation"): a new refresh
    // token with each refresh; the one used stops working.
    let rotated = (get("grant_type") == "refresh_token" && world.faults.sf.rotate_refresh_tokens).then(|| {
        let next = format!("5Aep861SB{}", uuid::Uuid::new_v4().simple());
        world.sf.org.refresh_token = Some(next.clone());
        next
    });
    let mut body = json!({
        "access_token": access_token,
        "instance_url": instance_url,
        "id": "https://login.salesforce.com/id/00DSB0000000001AAA/005SB0000000001AAA",
        "token_type": "Bearer",
        "issued_at": Utc::now().timestamp_millis().to_string(),
        "signature": "c2FuZGJveA==",
        "scope": "api"
    });
    if let Some(rotated) = rotated {
        body["refresh_token"] = json!(rotated);
    }
    json_response(StatusCode::OK, body)
}

pub(super) fn verify_jwt(org: &crate::scenario::SfOrg, assertion: &str) -> Result<(), (&'static str, &'static str)> {
    let invalid = ("invalid_grant", "invalid assertion");
    let pem = org.jwt_certificate_pem.as_deref().ok_or((
        "invalid_client",
        "the connected app has no certificate for the JWT flow",
    ))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| ("invalid_client", "the connected app's certificate is unreadable"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // `exp` is checked below: clients send it as a number or as a numeric string, and
    // Salesforce accepts both.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation).map_err(|_| invalid)?;
    let claims = data.claims;
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    if text("iss") != org.client_id {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    if !["https://login.salesforce.com", "https://test.salesforce.com"].contains(&text("aud").trim_end_matches('/')) {
        return Err(("invalid_grant", "audience is invalid"));
    }
    let sub = if text("sub").is_empty() {
        text("prn")
    } else {
        text("sub")
    };
    if sub != org.username {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .ok_or(invalid)?;
    if exp <= Utc::now().timestamp() {
        return Err(("invalid_grant", "expired authorization code"));
    }
    Ok(())
}
