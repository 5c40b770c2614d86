//! The HTTP side: routing a request to its resource, authentication (API key, OAuth bearer
//! tokens with expiry and refresh), CM's error bodies, and the webhook test delivery.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use super::resources::*;
use super::*;
use crate::{AppState, World};

pub(super) fn cm_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        json!({"Code": code, "Message": message}).to_string(),
    )
        .into_response()
}

pub(super) fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Query parameters, names lower-cased (CM treats them case-insensitively).
pub(super) fn params(uri: &Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect()
}

/// A counter name: ids replaced by `{id}`.
pub(super) fn route_name(method: &Method, path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|s| {
            let stem = s.trim_end_matches(".json");
            if stem.len() == 32 && stem.chars().all(|c| c.is_ascii_hexdigit()) {
                s.replace(stem, "{id}")
            } else {
                s.to_owned()
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

/// Handles every request to the CM port (except `/_sandbox`).
pub async fn dispatch(state: AppState, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = crate::InFlight::enter(&state, "cm");
    let path = uri.path().to_owned();
    let route = route_name(&method, &path);
    let (latency, fault) = {
        let mut world = state.lock();
        *world.counters.entry(format!("cm {route}")).or_default() += 1;
        let rate = world.faults.cm.error_rate;
        let fault = if world.dice.roll(rate) {
            Some(if world.dice.roll(0.5) { 429 } else { 503 })
        } else {
            None
        };
        (world.faults.cm.latency_for(&route), fault)
    };
    if path == "/oauth/token" && method == Method::POST && fault.is_none() {
        // The grant is carried out when CM receives it, whether or not the client waits for
        // the answer (a client that gives up has still spent its refresh token).
        let answer = oauth_token(&state, &body);
        if latency > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
        }
        return answer;
    }
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    match fault {
        Some(429) => return cm_error(StatusCode::TOO_MANY_REQUESTS, 429, "Rate limit exceeded"),
        Some(_) => return cm_error(StatusCode::SERVICE_UNAVAILABLE, 500, "Service unavailable"),
        None => {}
    }
    let Some(rest) = path.strip_prefix("/api/v3.3/") else {
        return cm_error(StatusCode::NOT_FOUND, 404, "Not found");
    };
    let outcome = handle(&mut state.lock(), method, rest, &uri, &headers, &body);
    match outcome {
        Outcome::Done(response) => response,
        Outcome::TestWebhook { url, list_id } => test_webhook(&state.http, &url, &list_id).await,
    }
}

/// What a request needs: an answer now, or a webhook test call first.
pub(super) enum Outcome {
    Done(Response),
    TestWebhook { url: String, list_id: String },
}

pub(super) async fn test_webhook(http: &reqwest::Client, url: &str, list_id: &str) -> Response {
    let payload = json!({"ListID": list_id, "Events": [{"Type": "Subscribe", "Date": Utc::now().format(DATE_FORMAT).to_string(),
        "EmailAddress": "test@example.com", "Name": "Test Subscriber", "CustomFields": [], "SignupIPAddress": "TypeManual"}]});
    let failure = |status: &str, code: u16, message: String, response: String| {
        (StatusCode::BAD_REQUEST, [("content-type", "application/json; charset=utf-8")], json!({"Code": 610, "Message": "The webhook request has failed",
            "ResultData": {"FailureStatus": status, "FailureResponseMessage": message, "FailureResponseCode": code, "FailureResponse": response}}).to_string())
            .into_response()
    };
    match http.post(url).json(&payload).send().await {
        Ok(r) if r.status().is_success() => ok(json!("")),
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            failure("ProtocolError", status, String::new(), text)
        }
        Err(e) => failure("ConnectFailure", 0, e.to_string(), String::new()),
    }
}

fn handle(world: &mut World, method: Method, rest: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Outcome {
    Outcome::Done(match handle_request(world, method, rest, uri, headers, body) {
        Ok(response) => response,
        Err(outcome) => return outcome,
    })
}

fn handle_request(
    world: &mut World,
    method: Method,
    rest: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Outcome> {
    if let Some(refused) = authenticate(world, headers) {
        return Ok(refused);
    }
    let Some(rest) = rest.strip_suffix(".json") else {
        return Ok(cm_error(StatusCode::NOT_FOUND, 404, "Use the .json suffix"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let query = params(uri);
    Ok(match (method, segments.as_slice()) {
        (Method::GET, ["clients"]) => ok(Value::Array(
            world
                .cm
                .account
                .clients
                .iter()
                .map(|c| json!({"ClientID": c.id, "Name": c.name}))
                .collect(),
        )),
        (Method::GET, ["systemdate"]) => {
            ok(json!({"SystemDate": world.cm.now_local().format(DATE_FORMAT).to_string()}))
        }
        (Method::GET, ["clients", id]) => match world.cm.account.clients.iter().find(|c| c.id == *id) {
            Some(c) => ok(json!({
                "ApiKey": format!("client-key-{}", c.id),
                "BasicDetails": {"ClientID": c.id, "CompanyName": c.name, "Country": "Australia",
                    "TimeZone": c.timezone_display.clone().unwrap_or_else(|| world.cm.zone_display())},
                "AccessDetails": {"Username": "", "AccessLevel": 0},
                "BillingDetails": {}
            })),
            None => cm_error(StatusCode::UNAUTHORIZED, 102, "Invalid ClientID"),
        },
        (Method::GET, ["clients", id, what]) => client_resource(world, id, what, &query),
        (Method::GET, ["campaigns", id, "summary"]) => match world.cm.campaigns.get(*id) {
            Some(c) => ok(summary(world, c)),
            None => cm_error(StatusCode::BAD_REQUEST, 301, "Invalid CampaignID"),
        },
        (Method::GET, ["campaigns", id, "listsandsegments"]) => match world.cm.campaigns.get(*id) {
            Some(c) => ok(json!({
                "Lists": c.meta.list_ids.iter().map(|l| json!({"ListID": l, "Name": world.cm.lists.get(l).map(|x| x.name.clone()).unwrap_or_default()})).collect::<Vec<_>>(),
                "Segments": []
            })),
            None => cm_error(StatusCode::BAD_REQUEST, 301, "Invalid CampaignID"),
        },
        (Method::GET, ["campaigns", id, resource]) => campaign_activity(world, id, resource, &query),
        (Method::GET, ["subscribers", list_id]) => subscriber(world, list_id, &query),
        (
            Method::GET,
            [
                "lists",
                list_id,
                state @ ("active" | "unconfirmed" | "unsubscribed" | "bounced" | "deleted"),
            ],
        ) => list_by_state(world, list_id, state, &query),
        (Method::GET, ["lists", list_id, "webhooks"]) => ok(Value::Array(
            world
                .cm
                .webhooks
                .get(*list_id)
                .into_iter()
                .flatten()
                .map(webhook_json)
                .collect(),
        )),
        (Method::POST, ["lists", list_id, "webhooks"]) => create_webhook(world, list_id, body),
        (Method::DELETE, ["lists", list_id, "webhooks", webhook_id]) => {
            let hooks = world.cm.webhooks.entry((*list_id).to_owned()).or_default();
            let before = hooks.len();
            hooks.retain(|h| h.id != *webhook_id);
            if hooks.len() < before {
                ok(json!(""))
            } else {
                cm_error(StatusCode::BAD_REQUEST, 600, "Invalid WebhookID")
            }
        }
        (
            Method::PUT,
            [
                "lists",
                list_id,
                "webhooks",
                webhook_id,
                action @ ("activate" | "deactivate"),
            ],
        ) => {
            match world
                .cm
                .webhooks
                .get_mut(*list_id)
                .and_then(|h| h.iter_mut().find(|h| h.id == *webhook_id))
            {
                Some(hook) => {
                    hook.active = *action == "activate";
                    ok(json!(""))
                }
                None => cm_error(StatusCode::BAD_REQUEST, 600, "Invalid WebhookID"),
            }
        }
        (Method::GET, ["lists", list_id, "webhooks", webhook_id, "test"]) => {
            match world
                .cm
                .webhooks
                .get(*list_id)
                .and_then(|h| h.iter().find(|h| h.id == *webhook_id))
            {
                None => cm_error(StatusCode::BAD_REQUEST, 600, "Invalid WebhookID"),
                Some(hook) => {
                    return Err(Outcome::TestWebhook {
                        url: hook.url.clone(),
                        list_id: (*list_id).to_owned(),
                    });
                }
            }
        }
        _ => cm_error(StatusCode::NOT_FOUND, 404, "Not found"),
    })
}

pub(super) fn authenticate(world: &mut World, headers: &HeaderMap) -> Option<Response> {
    let header = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if let Some(basic) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let key = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .map(|(k, _)| k.to_owned());
        return match key {
            Some(key) if key == world.cm.account.api_key => None,
            Some(_) => Some(cm_error(StatusCode::UNAUTHORIZED, 100, "Invalid API Key")),
            None => Some(cm_error(
                StatusCode::UNAUTHORIZED,
                50,
                "Must supply a valid HTTP Basic Authorization header",
            )),
        };
    }
    if let Some(token) = header.strip_prefix("Bearer ") {
        let limit = world.faults.cm.token_expires_after_calls;
        return match world.cm.tokens.get_mut(token.trim()) {
            None => Some(cm_error(StatusCode::UNAUTHORIZED, 120, "Invalid OAuth Token")),
            Some((expires, calls)) => {
                *calls += 1;
                if *expires <= Utc::now() || limit.is_some_and(|l| *calls > l) {
                    Some(cm_error(StatusCode::UNAUTHORIZED, 121, "Expired OAuth Token"))
                } else {
                    None
                }
            }
        };
    }
    Some(cm_error(
        StatusCode::UNAUTHORIZED,
        50,
        "Must supply a valid HTTP Basic Authorization header",
    ))
}

pub(super) fn oauth_token(state: &AppState, body: &[u8]) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut world = state.lock();
    let Some(oauth) = world.cm.account.oauth.clone() else {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"error": "invalid_client", "error_description": "OAuth is not set up"}).to_string(),
        )
            .into_response();
    };
    let refresh = form.get("refresh_token").cloned().unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || !world.cm.refresh_tokens.contains(&refresh)
    {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"error": "invalid_grant", "error_description": "Specified refresh_token is invalid or expired."})
                .to_string(),
        )
            .into_response();
    }
    let access = format!("cm-access-{}", uuid::Uuid::new_v4().simple());
    let new_refresh = format!("cm-refresh-{}", uuid::Uuid::new_v4().simple());
    world.cm.refresh_tokens.retain(|t| *t != refresh);
    world.cm.refresh_tokens.push(new_refresh.clone());
    world.cm.tokens.insert(
        access.clone(),
        (Utc::now() + chrono::Duration::seconds(oauth.token_lifetime_secs), 0),
    );
    ok(json!({"access_token": access, "expires_in": oauth.token_lifetime_secs, "refresh_token": new_refresh}))
}
