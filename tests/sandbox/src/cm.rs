//! The Campaign Monitor API v3.3 surface: auth (API key, OAuth with expiry and refresh),
//! discovery, campaign summaries, paged activity with the `date` filter, subscribers, webhooks.
//! Every date is account-local time with no offset, as CM sends it.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::scenario::{CmAccount, CmActivity, CmCampaign, CmList};
use crate::{AppState, World};

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One activity row, parsed.
#[derive(Debug, Clone)]
pub struct Row {
    /// Email.
    pub email: String,
    /// List.
    pub list_id: String,
    /// Local date.
    pub date: NaiveDateTime,
    /// Source record.
    pub source: CmActivity,
}

/// A campaign with its activity indexed by resource, sorted by date.
#[derive(Debug, Clone)]
pub struct CampaignState {
    /// Scenario data.
    pub meta: CmCampaign,
    /// `opens`, `clicks`, `bounces`, `unsubscribes`, `spam` → rows by date.
    pub activity: HashMap<&'static str, Vec<Row>>,
}

/// A webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// WebhookID.
    pub id: String,
    /// Events.
    pub events: Vec<String>,
    /// Url.
    pub url: String,
    /// Active / Unable to deliver.
    pub active: bool,
    /// Json / Xml.
    pub format: String,
}

/// The CM account's state.
#[derive(Debug)]
pub struct CmWorld {
    /// Scenario account.
    pub account: CmAccount,
    /// Zone.
    pub zone: Tz,
    /// Campaigns by id.
    pub campaigns: BTreeMap<String, CampaignState>,
    /// Lists by id.
    pub lists: BTreeMap<String, CmList>,
    /// Webhooks by list.
    pub webhooks: BTreeMap<String, Vec<Webhook>>,
    /// OAuth access tokens → (expires, calls, revoked).
    pub tokens: HashMap<String, (chrono::DateTime<Utc>, u64)>,
    /// Valid refresh tokens.
    pub refresh_tokens: Vec<String>,
}

fn resource_of(kind: &str) -> Option<&'static str> {
    match kind {
        "open" | "opens" => Some("opens"),
        "click" | "clicks" => Some("clicks"),
        "bounce" | "bounces" => Some("bounces"),
        "unsubscribe" | "unsubscribes" => Some("unsubscribes"),
        "spam" => Some("spam"),
        _ => None,
    }
}

/// Parses a CM local date.
pub fn parse_local(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, DATE_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .ok()
}

impl CmWorld {
    /// Loads the account.
    pub fn new(account: &CmAccount) -> Result<CmWorld, String> {
        let zone: Tz = account
            .timezone
            .parse()
            .map_err(|_| format!("cm.timezone `{}` is not an IANA zone", account.timezone))?;
        let mut campaigns = BTreeMap::new();
        for campaign in &account.campaigns {
            let mut state = CampaignState {
                meta: campaign.clone(),
                activity: HashMap::new(),
            };
            state.meta.activity = Vec::new();
            // Appended, then sorted once (stable: equal dates keep the scenario's order, as
            // `add_activity` keeps them); one sorted insert each would be quadratic.
            for activity in &campaign.activity {
                let (resource, row) = activity_row(activity)?;
                state.activity.entry(resource).or_default().push(row);
            }
            for rows in state.activity.values_mut() {
                rows.sort_by_key(|r| r.date);
            }
            campaigns.insert(campaign.id.clone(), state);
        }
        let mut tokens = HashMap::new();
        let mut refresh_tokens = Vec::new();
        if let Some(oauth) = &account.oauth {
            tokens.insert(
                oauth.access_token.clone(),
                (Utc::now() + chrono::Duration::seconds(oauth.token_lifetime_secs), 0),
            );
            refresh_tokens.push(oauth.refresh_token.clone());
        }
        Ok(CmWorld {
            account: account.clone(),
            zone,
            campaigns,
            lists: account.lists.iter().map(|l| (l.id.clone(), l.clone())).collect(),
            webhooks: BTreeMap::new(),
            tokens,
            refresh_tokens,
        })
    }

    /// "Now" in account-local time.
    pub fn now_local(&self) -> NaiveDateTime {
        self.account
            .now
            .as_deref()
            .and_then(parse_local)
            .unwrap_or_else(|| Utc::now().with_timezone(&self.zone).naive_local())
    }
}

fn activity_row(activity: &CmActivity) -> Result<(&'static str, Row), String> {
    let resource = resource_of(&activity.kind).ok_or_else(|| format!("unknown activity kind `{}`", activity.kind))?;
    let date = parse_local(&activity.date).ok_or_else(|| format!("bad activity date `{}`", activity.date))?;
    Ok((
        resource,
        Row {
            email: activity.email.clone(),
            list_id: activity.list_id.clone(),
            date,
            source: activity.clone(),
        },
    ))
}

/// Adds one activity to a campaign at run time (the control API), in date order.
pub fn add_activity(state: &mut CampaignState, activity: &CmActivity) -> Result<(), String> {
    let (resource, row) = activity_row(activity)?;
    let rows = state.activity.entry(resource).or_default();
    let at = rows.partition_point(|r| r.date <= row.date);
    rows.insert(at, row);
    Ok(())
}

fn cm_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        json!({"Code": code, "Message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Query parameters, names lower-cased (CM treats them case-insensitively).
fn params(uri: &Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect()
}

/// A counter name: ids replaced by `{id}`.
fn route_name(method: &Method, path: &str) -> String {
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
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    match fault {
        Some(429) => return cm_error(StatusCode::TOO_MANY_REQUESTS, 429, "Rate limit exceeded"),
        Some(_) => return cm_error(StatusCode::SERVICE_UNAVAILABLE, 500, "Service unavailable"),
        None => {}
    }
    if path == "/oauth/token" && method == Method::POST {
        return oauth_token(&state, &body);
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
enum Outcome {
    Done(Response),
    TestWebhook { url: String, list_id: String },
}

async fn test_webhook(http: &reqwest::Client, url: &str, list_id: &str) -> Response {
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
                    "TimeZone": c.timezone_display.clone().unwrap_or_else(|| format!("({})", world.cm.account.timezone))},
                "AccessDetails": {"Username": "", "AccessLevel": 0},
                "BillingDetails": {}
            })),
            None => cm_error(StatusCode::UNAUTHORIZED, 102, "Invalid ClientID"),
        },
        (Method::GET, ["clients", id, what]) => client_resource(world, id, what, &query),
        (Method::GET, ["campaigns", id, "summary"]) => match world.cm.campaigns.get(*id) {
            Some(c) => ok(summary(c)),
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

fn authenticate(world: &mut World, headers: &HeaderMap) -> Option<Response> {
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

fn oauth_token(state: &AppState, body: &[u8]) -> Response {
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

struct Paging {
    page: usize,
    size: usize,
    ascending: bool,
}

fn paging(
    query: &HashMap<String, String>,
    allowed_order: &[&str],
    default_order: &str,
    default_ascending: bool,
) -> Result<(Paging, String), Response> {
    let page = match query.get("page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| cm_error(StatusCode::BAD_REQUEST, 800, "Invalid page number"))?,
    };
    let size = match query.get("pagesize") {
        None => 1000,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|s| (10..=1000).contains(s))
            .ok_or_else(|| cm_error(StatusCode::BAD_REQUEST, 801, "Invalid page size"))?,
    };
    let order = query
        .get("orderfield")
        .map(|o| o.to_lowercase())
        .unwrap_or_else(|| default_order.to_owned());
    if !allowed_order.contains(&order.as_str()) {
        return Err(cm_error(StatusCode::BAD_REQUEST, 802, "Invalid order field"));
    }
    let ascending = match query.get("orderdirection").map(|d| d.to_lowercase()).as_deref() {
        None => default_ascending,
        Some("asc") => true,
        Some("desc") => false,
        Some(_) => return Err(cm_error(StatusCode::BAD_REQUEST, 803, "Invalid order direction")),
    };
    Ok((Paging { page, size, ascending }, order))
}

fn envelope(results: Vec<Value>, total: usize, paging: &Paging, ordered_by: &str) -> Value {
    let pages = total.div_ceil(paging.size);
    json!({
        "Results": results,
        "ResultsOrderedBy": ordered_by,
        "OrderDirection": if paging.ascending { "asc" } else { "desc" },
        "PageNumber": paging.page,
        "PageSize": paging.size,
        "RecordsOnThisPage": results.len(),
        "TotalNumberOfRecords": total,
        "NumberOfPages": pages,
    })
}

fn page_of<T: Clone>(items: &[T], paging: &Paging) -> Vec<T> {
    let start = (paging.page - 1).saturating_mul(paging.size);
    items.iter().skip(start).take(paging.size).cloned().collect()
}

fn client_resource(world: &World, client_id: &str, what: &str, query: &HashMap<String, String>) -> Response {
    if !world.cm.account.clients.iter().any(|c| c.id == client_id) {
        return cm_error(StatusCode::UNAUTHORIZED, 102, "Invalid ClientID");
    }
    let campaigns = world.cm.campaigns.values().filter(|c| c.meta.client_id == client_id);
    match what {
        "lists" => ok(Value::Array(
            world
                .cm
                .lists
                .values()
                .filter(|l| l.client_id == client_id)
                .map(|l| json!({"ListID": l.id, "Name": l.name}))
                .collect(),
        )),
        "listsforemail" => {
            let email = query.get("email").map(|e| e.to_lowercase()).unwrap_or_default();
            if !email.contains('@') {
                return cm_error(StatusCode::BAD_REQUEST, 1, "Invalid Email Address");
            }
            ok(Value::Array(
                world
                    .cm
                    .lists
                    .values()
                    .filter(|l| l.client_id == client_id)
                    .filter_map(|l| {
                        l.subscribers.iter().find(|s| s.email.to_lowercase() == email).map(|s| {
                            json!({"ListID": l.id, "ListName": l.name, "SubscriberState": s.state, "DateSubscriberAdded": s.date.clone().unwrap_or_default()})
                        })
                    })
                    .collect(),
            ))
        }
        "campaigns" => {
            let (paging, _) = match paging(query, &["sentdate"], "sentdate", false) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let from = match query.get("sentfromdate").filter(|d| !d.is_empty()) {
                Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => return cm_error(StatusCode::BAD_REQUEST, 5, "Invalid Date"),
                },
                None => None,
            };
            let to = match query.get("senttodate").filter(|d| !d.is_empty()) {
                Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => return cm_error(StatusCode::BAD_REQUEST, 5, "Invalid Date"),
                },
                None => None,
            };
            let tags: Vec<String> = query
                .get("tags")
                .map(|t| {
                    t.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let mut sent: Vec<(NaiveDateTime, &CampaignState)> = campaigns
                .filter(|c| c.meta.state == "sent")
                .filter_map(|c| c.meta.sent_date.as_deref().and_then(parse_local).map(|d| (d, c)))
                .filter(|(d, _)| from.is_none_or(|f| d.date() >= f) && to.is_none_or(|t| d.date() <= t))
                .filter(|(_, c)| tags.is_empty() || tags.iter().any(|t| c.meta.tags.contains(t)))
                .collect();
            sent.sort_by_key(|(d, c)| (*d, c.meta.id.clone()));
            if !paging.ascending {
                sent.reverse();
            }
            let total = sent.len();
            let results = page_of(&sent, &paging)
                .into_iter()
                .map(|(d, c)| {
                    json!({"CampaignID": c.meta.id, "Name": c.meta.name, "Subject": c.meta.subject, "FromName": "Sandbox", "FromEmail": "news@example.com",
                        "ReplyTo": "news@example.com", "SentDate": d.format(DATE_FORMAT).to_string(), "TotalRecipients": c.meta.recipients.len(),
                        "WebVersionURL": format!("https://example.createsend.com/t/{}", c.meta.id), "WebVersionTextURL": "", "Tags": c.meta.tags})
                })
                .collect();
            ok(envelope(results, total, &paging, "sentdate"))
        }
        "scheduled" | "drafts" => {
            let state = if what == "scheduled" { "scheduled" } else { "draft" };
            ok(Value::Array(
                campaigns
                    .filter(|c| c.meta.state == state)
                    .map(|c| {
                        let mut entry = json!({"CampaignID": c.meta.id, "Name": c.meta.name, "Subject": c.meta.subject, "FromName": "Sandbox",
                            "FromEmail": "news@example.com", "ReplyTo": "news@example.com", "DateCreated": c.meta.date_created.clone().unwrap_or_default(),
                            "PreviewURL": "", "PreviewTextURL": "", "Tags": c.meta.tags});
                        if state == "scheduled" {
                            entry["DateScheduled"] = json!(c.meta.date_scheduled.clone().unwrap_or_default());
                            entry["ScheduledTimeZone"] = json!(world.cm.account.timezone);
                        }
                        entry
                    })
                    .collect(),
            ))
        }
        _ => cm_error(StatusCode::NOT_FOUND, 404, "Not found"),
    }
}

fn summary(c: &CampaignState) -> Value {
    let rows = |r: &str| c.activity.get(r).map(Vec::as_slice).unwrap_or_default();
    let unique = |r: &str| {
        rows(r)
            .iter()
            .map(|x| x.email.to_lowercase())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    json!({
        "Name": c.meta.name,
        "Recipients": c.meta.recipients.len(),
        "TotalOpened": rows("opens").len(),
        "UniqueOpened": unique("opens"),
        "Clicks": rows("clicks").len(),
        "Unsubscribed": unique("unsubscribes"),
        "Bounced": unique("bounces"),
        "SpamComplaints": unique("spam"),
        "Forwards": c.meta.forwards,
        "Likes": 0,
        "Mentions": 0,
        "WebVersionURL": format!("https://example.createsend.com/t/{}", c.meta.id),
        "WebVersionTextURL": "",
        "WorldviewURL": format!("https://example.createsend.com/reports/wv/r/{}", c.meta.id)
    })
}

fn row_json(resource: &str, row: &Row) -> Value {
    let date = row.date.format(DATE_FORMAT).to_string();
    let geo = |mut v: Value| {
        v["IPAddress"] = json!("203.0.113.9");
        v["Latitude"] = json!(-33.86);
        v["Longitude"] = json!(151.2);
        v["City"] = json!("Sydney");
        v["Region"] = json!("New South Wales");
        v["CountryCode"] = json!("AU");
        v["CountryName"] = json!("Australia");
        v
    };
    match resource {
        "opens" => geo(json!({"EmailAddress": row.email, "ListID": row.list_id, "Date": date})),
        "clicks" => {
            let mut v = geo(json!({"EmailAddress": row.email, "ListID": row.list_id, "Date": date}));
            v["URL"] = json!(row.source.url.clone().unwrap_or_else(|| "https://example.com/".into()));
            v
        }
        "unsubscribes" => {
            json!({"EmailAddress": row.email, "ListID": row.list_id, "Date": date, "IPAddress": "203.0.113.9"})
        }
        "bounces" => {
            json!({"EmailAddress": row.email, "ListID": row.list_id, "BounceType": row.source.bounce_type.clone().unwrap_or_else(|| "Hard".into()),
            "Date": date, "Reason": row.source.reason.clone().unwrap_or_else(|| "Hard Bounce - Mailbox does not exist".into())})
        }
        _ => json!({"EmailAddress": row.email, "ListID": row.list_id, "Date": date}),
    }
}

fn campaign_activity(world: &World, id: &str, resource: &str, query: &HashMap<String, String>) -> Response {
    let Some(campaign) = world.cm.campaigns.get(id) else {
        return cm_error(StatusCode::BAD_REQUEST, 301, "Invalid CampaignID");
    };
    if resource == "recipients" {
        let (paging, order) = match paging(query, &["email", "list"], "email", true) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let mut recipients: Vec<&crate::scenario::CmRecipient> = campaign.meta.recipients.iter().collect();
        if order == "list" {
            recipients.sort_by(|a, b| (&a.list_id, &a.email).cmp(&(&b.list_id, &b.email)));
        } else {
            recipients.sort_by(|a, b| a.email.cmp(&b.email));
        }
        if !paging.ascending {
            recipients.reverse();
        }
        let total = recipients.len();
        let results = page_of(&recipients, &paging)
            .into_iter()
            .map(|r| json!({"EmailAddress": r.email, "ListID": r.list_id}))
            .collect();
        return ok(envelope(results, total, &paging, &order));
    }
    let Some(resource) = resource_of(resource) else {
        return cm_error(StatusCode::NOT_FOUND, 404, "Not found");
    };
    let (paging, order) = match paging(query, &["date", "email", "list"], "date", true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let since = match query.get("date").filter(|d| !d.trim().is_empty()) {
        None => None,
        Some(text) => match parse_local(text.trim()) {
            Some(d) => Some(d),
            None => return cm_error(StatusCode::BAD_REQUEST, 5, "Invalid Date"),
        },
    };
    let rows = campaign.activity.get(resource).map(Vec::as_slice).unwrap_or_default();
    let start = since.map_or(0, |since| rows.partition_point(|r| r.date < since));
    let rows = &rows[start..];
    let total = rows.len();
    let page: Vec<&Row> = if order == "date" {
        // Rows are kept sorted by date: a page is a slice, however large the campaign.
        let offset = (paging.page - 1).saturating_mul(paging.size);
        if paging.ascending {
            rows.iter().skip(offset).take(paging.size).collect()
        } else {
            rows.iter().rev().skip(offset).take(paging.size).collect()
        }
    } else {
        let mut sorted: Vec<&Row> = rows.iter().collect();
        if order == "email" {
            sorted.sort_by(|a, b| (&a.email, a.date).cmp(&(&b.email, b.date)));
        } else {
            sorted.sort_by(|a, b| (&a.list_id, a.date).cmp(&(&b.list_id, b.date)));
        }
        if !paging.ascending {
            sorted.reverse();
        }
        page_of(&sorted, &paging)
    };
    let results = page.into_iter().map(|r| row_json(resource, r)).collect();
    ok(envelope(results, total, &paging, &order))
}

fn subscriber(world: &World, list_id: &str, query: &HashMap<String, String>) -> Response {
    let Some(list) = world.cm.lists.get(list_id) else {
        return cm_error(StatusCode::BAD_REQUEST, 101, "Invalid ListID");
    };
    let email = query.get("email").map(|e| e.to_lowercase()).unwrap_or_default();
    match list.subscribers.iter().find(|s| s.email.to_lowercase() == email) {
        Some(s) => ok(
            json!({"EmailAddress": s.email, "Name": s.name, "Date": s.date.clone().unwrap_or_default(), "ListJoinedDate": s.date.clone().unwrap_or_default(),
            "State": s.state, "CustomFields": [], "ReadsEmailWith": "", "ConsentToTrack": "Yes"}),
        ),
        None => cm_error(
            StatusCode::BAD_REQUEST,
            203,
            "Subscriber not in list or has already been removed.",
        ),
    }
}

fn webhook_json(hook: &Webhook) -> Value {
    json!({"WebhookID": hook.id, "Events": hook.events, "Url": hook.url, "Status": if hook.active { "Active" } else { "Unable to deliver" }, "PayloadFormat": hook.format})
}

fn create_webhook(world: &mut World, list_id: &str, body: &[u8]) -> Response {
    if !world.cm.lists.contains_key(list_id) {
        return cm_error(StatusCode::BAD_REQUEST, 101, "Invalid ListID");
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let url = request
        .get("Url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return cm_error(StatusCode::BAD_REQUEST, 601, "Invalid Webhook URL");
    }
    let format = request
        .get("PayloadFormat")
        .and_then(Value::as_str)
        .unwrap_or("json")
        .to_lowercase();
    if format != "json" && format != "xml" {
        return cm_error(StatusCode::BAD_REQUEST, 602, "Invalid Payload Format");
    }
    let events: Vec<String> = request
        .get("Events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if events.is_empty()
        || events
            .iter()
            .any(|e| !["Subscribe", "Deactivate", "Update"].contains(&e.as_str()))
    {
        return cm_error(StatusCode::BAD_REQUEST, 603, "Invalid Event Name");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    world.cm.webhooks.entry(list_id.to_owned()).or_default().push(Webhook {
        id: id.clone(),
        events,
        url,
        active: true,
        format: if format == "json" { "Json".into() } else { "Xml".into() },
    });
    (
        StatusCode::CREATED,
        [("content-type", "application/json; charset=utf-8")],
        json!(id).to_string(),
    )
        .into_response()
}
