//! The control API, under `/_sandbox` on both ports: counters, SF records, faults, reset,
//! session and token expiry, new CM activity, and webhook delivery exactly as CM posts it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Dice, Faults};
use crate::scenario::CmActivity;
use crate::{AppState, World};

/// The control routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/counters", get(counters).delete(reset_counters))
        .route("/sf/records", get(records))
        .route("/sf/usage", get(usage))
        .route("/sf/expire-sessions", post(expire_sessions))
        .route("/cm/expire-tokens", post(expire_tokens))
        .route("/cm/activity", post(add_activity))
        .route("/cm/campaigns", post(add_campaign))
        .route("/cm/now", post(set_now))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/reset", post(reset))
        .route("/webhooks/deliver", post(deliver))
}

async fn counters(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.lock().counters))
}

async fn reset_counters(State(state): State<AppState>) -> StatusCode {
    state.lock().counters.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RecordsQuery {
    object: Option<String>,
}

async fn records(State(state): State<AppState>, Query(query): Query<RecordsQuery>) -> Json<Value> {
    let world = state.lock();
    let mut out = serde_json::Map::new();
    for (object, records) in &world.sf.records {
        if query.object.as_ref().is_some_and(|o| !o.eq_ignore_ascii_case(object)) {
            continue;
        }
        out.insert(
            object.clone(),
            Value::Array(
                records
                    .values()
                    .map(|r| Value::from(world.sf.view(object, r)))
                    .collect(),
            ),
        );
    }
    Json(Value::Object(out))
}

async fn usage(State(state): State<AppState>) -> Json<Value> {
    let world = state.lock();
    Json(json!({"used": world.sf.api_used, "allocation": world.sf.org.api_allocation}))
}

async fn expire_sessions(State(state): State<AppState>) -> StatusCode {
    state.lock().sf.tokens.clear();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(state): State<AppState>) -> StatusCode {
    let mut world = state.lock();
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    for (expires, _) in world.cm.tokens.values_mut() {
        *expires = past;
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NewActivity {
    campaign_id: String,
    activity: Vec<CmActivity>,
}

async fn add_activity(State(state): State<AppState>, Json(request): Json<NewActivity>) -> Response {
    let mut world = state.lock();
    let Some(campaign) = world.cm.campaigns.get_mut(&request.campaign_id) else {
        return (StatusCode::NOT_FOUND, "no such campaign").into_response();
    };
    for activity in &request.activity {
        if let Err(error) = crate::cm::add_activity(campaign, activity) {
            return (StatusCode::BAD_REQUEST, error).into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A campaign made in CM while the stack runs (a draft someone just created): it appears in
/// its client's listings from now on. Its activity, if any, is added as `add_activity` does.
async fn add_campaign(State(state): State<AppState>, Json(campaign): Json<crate::scenario::CmCampaign>) -> Response {
    let mut world = state.lock();
    if world.cm.campaigns.contains_key(&campaign.id) {
        return (StatusCode::CONFLICT, "a campaign with this id exists").into_response();
    }
    let id = campaign.id.clone();
    match crate::cm::CampaignState::new(campaign) {
        Ok(added) => world.cm.campaigns.insert(id, added),
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Now {
    now: String,
}

/// Moves CM's clock (`systemdate.json`), so tests can let time pass.
async fn set_now(State(state): State<AppState>, Json(request): Json<Now>) -> Response {
    if crate::cm::parse_local(&request.now).is_none() {
        return (StatusCode::BAD_REQUEST, "now must be YYYY-MM-DD HH:MM:SS").into_response();
    }
    state.lock().cm.account.now = Some(request.now);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.lock().faults.clone())
}

async fn put_faults(State(state): State<AppState>, Json(faults): Json<Faults>) -> StatusCode {
    let mut world = state.lock();
    world.dice = Dice::new(faults.seed);
    world.faults = faults.realistic();
    world.lock_streaks.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<AppState>) -> Response {
    // The old world goes first, under the lock (no request sees a half-built one): a
    // workload's world is gigabytes, and the old and the new at once would double the peak.
    let mut world = state.lock();
    let sf_base = world.sf_base.clone();
    match World::from_scenario(crate::scenario::Scenario::default(), &sf_base) {
        Ok(empty) => drop(std::mem::replace(&mut *world, empty)),
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
    match state.source.world(&sf_base) {
        Ok(fresh) => {
            *world = fresh;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Delivery {
    #[serde(rename = "ListID")]
    list_id: String,
    events: Vec<Value>,
}

/// Posts `{ListID, Events}` to every active webhook of the list, each receiving the events of
/// the types it subscribed to, as CM does. Answers with each delivery's HTTP status.
async fn deliver(State(state): State<AppState>, Json(delivery): Json<Delivery>) -> Json<Value> {
    let hooks = {
        let mut world = state.lock();
        // CM posts what already happened: each Deactivate is the subscriber's state on the list.
        if let Some(list) = world.cm.lists.get_mut(&delivery.list_id) {
            for event in &delivery.events {
                let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
                let (Some("Deactivate"), Some(email), Some(new_state)) =
                    (text("Type").as_deref(), text("EmailAddress"), text("State"))
                else {
                    continue;
                };
                let date = text("Date");
                match list
                    .subscribers
                    .iter_mut()
                    .find(|s| s.email.eq_ignore_ascii_case(&email))
                {
                    Some(subscriber) => {
                        subscriber.state = new_state;
                        subscriber.date = date;
                    }
                    None => list.subscribers.push(crate::scenario::CmSubscriber {
                        email,
                        name: String::new(),
                        state: new_state,
                        date,
                    }),
                }
            }
        }
        world.cm.webhooks.get(&delivery.list_id).cloned().unwrap_or_default()
    };
    let mut results = Vec::new();
    for hook in hooks.into_iter().filter(|h| h.active) {
        let events: Vec<Value> = delivery
            .events
            .iter()
            .filter(|e| {
                e.get("Type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| hook.events.iter().any(|h| h == t))
            })
            .cloned()
            .collect();
        if events.is_empty() {
            continue;
        }
        let payload = json!({"ListID": delivery.list_id, "Events": events});
        let status = match state.http.post(&hook.url).json(&payload).send().await {
            Ok(response) => json!(response.status().as_u16()),
            Err(error) => json!(error.to_string()),
        };
        results.push(json!({"WebhookID": hook.id, "status": status}));
    }
    Json(Value::Array(results))
}
