//! The Salesforce REST surface: OAuth token endpoint, versions, query/queryAll, sObjects,
//! sObject Collections, Bulk API 2.0 ingest, limits; `Sforce-Limit-Info` on every response.

mod auth;
mod data;
mod web_sign_in;

use auth::token;
use data::data_api;
pub(crate) use data::record_fault;
pub use data::{job_json, record_error};
pub use web_sign_in::AuthCode;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::sf::{SfError, SfWorld, format_datetime};

/// The longest request URI Salesforce accepts.
pub const MAX_URI_BYTES: usize = 16_384;
/// Query page size (default and maximum).
pub const MAX_BATCH: usize = 2_000;
/// Collections cap.
pub const MAX_COLLECTION: usize = 200;

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn error_array(status: StatusCode, error: &SfError) -> Response {
    json_response(
        status,
        json!([{"message": error.message, "errorCode": error.code, "fields": error.fields}]),
    )
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

fn form(body: &[u8]) -> Map<String, Value> {
    url_pairs(std::str::from_utf8(body).unwrap_or_default())
}

fn url_pairs(text: &str) -> Map<String, Value> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// Handles every request to the Salesforce port (except `/_sandbox`).
pub async fn dispatch(state: AppState, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.to_string().len() > MAX_URI_BYTES {
        return json_response(
            StatusCode::URI_TOO_LONG,
            json!([{"message": "URI Too Long", "errorCode": "URI_TOO_LONG"}]),
        );
    }
    let _in_flight = crate::InFlight::enter(&state, "sf");
    let path = uri.path().to_owned();
    let route = route_name(&method, &path);
    let latency = {
        let mut world = state.lock();
        *world.counters.entry(format!("sf {route}")).or_default() += 1;
        world.faults.sf.latency_for(&route)
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if path == "/services/oauth2/token" && method == Method::POST {
        if form(&body).get("grant_type").and_then(Value::as_str) == Some("authorization_code") {
            return web_sign_in::exchange(&state, &body);
        }
        return token(&state, &headers, &body);
    }
    if path == "/services/oauth2/authorize" {
        return web_sign_in::authorize(&state, &method, &uri, &body);
    }
    if path == "/services/oauth2/revoke" && method == Method::POST {
        return web_sign_in::revoke(&state, &body);
    }
    if let Some(ids) = path.strip_prefix("/id/") {
        return web_sign_in::identity(&state, &headers, ids);
    }
    if path == "/services/data" || path == "/services/data/" {
        return json_response(StatusCode::OK, versions());
    }
    let Some(rest) = path.strip_prefix("/services/data/v") else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]),
        );
    };
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let mut world = state.lock();
    // Authentication.
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let expire_after = world.faults.sf.session_expires_after_calls;
    let valid = match world.sf.tokens.get_mut(&token) {
        Some(calls) => {
            *calls += 1;
            expire_after.is_none_or(|limit| *calls <= limit)
        }
        None => false,
    };
    if !valid {
        world.sf.tokens.remove(&token);
        return with_limits(
            &world.sf,
            error_array(
                StatusCode::UNAUTHORIZED,
                &SfError {
                    code: "INVALID_SESSION_ID",
                    message: "Session expired or invalid".into(),
                    fields: vec![],
                },
            ),
        );
    }
    // Allocation.
    world.sf.api_used += 1;
    if world.sf.api_used > world.sf.org.api_allocation {
        let response = error_array(
            StatusCode::FORBIDDEN,
            &SfError {
                code: "REQUEST_LIMIT_EXCEEDED",
                message: "TotalRequests Limit exceeded.".into(),
                fields: vec![],
            },
        );
        return with_limits(&world.sf, response);
    }
    // Drawn call faults, in this order: a transient outage; too many long-running requests at
    // once (the daily allocation's code with another message; it clears as soon as a request
    // in flight ends).
    let drawn = [
        (
            world.faults.sf.error_rate,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable",
        ),
        (
            world.faults.sf.concurrent_limit_rate,
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        ),
    ];
    for (rate, status, code, message) in drawn {
        if world.dice.roll(rate) {
            let fault = SfError {
                code,
                message: message.into(),
                fields: vec![],
            };
            return with_limits(&world.sf, error_array(status, &fault));
        }
    }
    let response = data_api(&mut world, &method, version, rest, &uri, &headers, &body);
    with_limits(&world.sf, response)
}

fn with_limits(sf: &SfWorld, mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!(
        "api-usage={}/{}",
        sf.api_used.min(sf.org.api_allocation),
        sf.org.api_allocation
    )) {
        response.headers_mut().insert("sforce-limit-info", value);
    }
    response
}

/// A stable name for counters: ids replaced by `{id}`.
pub fn route_name(method: &Method, path: &str) -> String {
    let normalised: Vec<String> = path
        .split('/')
        .map(|segment| {
            let looks_like_id = segment.len() >= 15
                && segment.chars().all(|c| c.is_ascii_alphanumeric())
                && segment.chars().any(|c| c.is_ascii_digit());
            if looks_like_id || segment.contains('-') && segment.len() > 20 {
                "{id}".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect();
    format!("{method} {}", normalised.join("/"))
}

fn versions() -> Value {
    let releases = [
        ("Winter '25", "62.0"),
        ("Spring '25", "63.0"),
        ("Summer '25", "64.0"),
        ("Winter '26", "65.0"),
        ("Spring '26", "66.0"),
    ];
    Value::Array(
        releases
            .iter()
            .map(|(label, v)| json!({"label": label, "url": format!("/services/data/v{v}"), "version": v}))
            .collect(),
    )
}
