//! The resources: client discovery, campaign summaries, paged activity with the `date` filter
//! and CM's paged envelope, subscribers and webhooks.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::http::*;
use super::*;
use crate::World;

pub(super) struct Paging {
    page: usize,
    size: usize,
    ascending: bool,
}

pub(super) fn paging(
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

pub(super) fn envelope(results: Vec<Value>, total: usize, paging: &Paging, ordered_by: &str) -> Value {
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

/// The `date` parameter (changed or happened since), if any; code 5 if it is not a date.
fn since_param(query: &HashMap<String, String>) -> Result<Option<chrono::NaiveDateTime>, Response> {
    match query.get("date").filter(|d| !d.trim().is_empty()) {
        None => Ok(None),
        Some(text) => parse_local(text.trim())
            .map(Some)
            .ok_or_else(|| cm_error(StatusCode::BAD_REQUEST, 5, "Invalid Date")),
    }
}

pub(super) fn page_of<T: Clone>(items: &[T], paging: &Paging) -> Vec<T> {
    let start = (paging.page - 1).saturating_mul(paging.size);
    items.iter().skip(start).take(paging.size).cloned().collect()
}

pub(super) fn client_resource(world: &World, client_id: &str, what: &str, query: &HashMap<String, String>) -> Response {
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
                        "ReplyTo": "news@example.com", "SentDate": d.format(DATE_FORMAT).to_string(), "TotalRecipients": c.recipients.len(),
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

pub(super) fn summary(world: &World, c: &CampaignState) -> Value {
    // With `summary_lag_minutes` the counts are those of that long ago: a record shows in its
    // stream before the summary counts it.
    let as_of = world.cm.now_local() - chrono::Duration::minutes(world.faults.cm.summary_lag_minutes as i64);
    let rows = |r: &str| visible_rows_at(world, c, r, as_of);
    let unique = |r: &str| {
        rows(r)
            .iter()
            .map(|x| x.email().to_lowercase())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    json!({
        "Name": c.meta.name,
        "Recipients": c.recipients.len(),
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

/// A campaign's rows of one resource that CM shows now, by date: all of them, unless records
/// become visible late (`late_visibility_minutes`), when each shows a seeded 0 to N minutes
/// after its date on CM's clock.
fn visible_rows<'a>(world: &World, c: &'a CampaignState, resource: &str) -> std::borrow::Cow<'a, [Row]> {
    visible_rows_at(world, c, resource, world.cm.now_local())
}

/// The rows CM shows at `now` (see [`visible_rows`]).
fn visible_rows_at<'a>(
    world: &World,
    c: &'a CampaignState,
    resource: &str,
    now: chrono::NaiveDateTime,
) -> std::borrow::Cow<'a, [Row]> {
    let rows = c.activity.get(resource).map(Vec::as_slice).unwrap_or_default();
    let most = world.faults.cm.late_visibility_minutes;
    if most == 0 && now >= world.cm.now_local() {
        return std::borrow::Cow::Borrowed(rows);
    }
    let seed = world.faults.seed;
    std::borrow::Cow::Owned(
        rows.iter()
            .filter(|row| row.date + chrono::Duration::minutes(visibility_delay(seed, resource, row, most)) <= now)
            .cloned()
            .collect(),
    )
}

/// A page of rows kept by date, records of the same date in an order of this request's own: CM
/// promises the order by date, not among equal dates, so a tie that straddles a page boundary
/// may be served differently to each page request (a row served twice, another never).
fn page_with_ties_reordered<'a>(world: &World, rows: &'a [Row], paging: &Paging) -> Vec<&'a Row> {
    let len = rows.len();
    let offset = (paging.page - 1).saturating_mul(paging.size).min(len);
    let end = (offset + paging.size).min(len);
    // The page's range in ascending order.
    let (a, b) = if paging.ascending {
        (offset, end)
    } else {
        (len - end, len - offset)
    };
    if a >= b {
        return Vec::new();
    }
    let lo = rows.partition_point(|r| r.date < rows[a].date);
    let hi = rows.partition_point(|r| r.date <= rows[b - 1].date);
    // Each request reorders differently: the calls made so far are its nonce.
    let nonce: u64 = world.counters.values().sum();
    let tie_key = |row: &Row| seeded_hash((world.faults.seed, nonce, row.email(), row.list_id()));
    let mut window: Vec<&Row> = rows[lo..hi].iter().collect();
    window.sort_by_cached_key(|row| (row.date, tie_key(row)));
    let mut page: Vec<&Row> = window[a - lo..b - lo].to_vec();
    if !paging.ascending {
        page.reverse();
    }
    page
}

/// The seeded delay, in minutes, before a list's change of state shows.
fn state_delay(seed: u64, list_id: &str, email: &str, date: chrono::NaiveDateTime, most: u64) -> i64 {
    (seeded_hash((seed, list_id, email, date)) % (most + 1)) as i64
}

/// The seeded delay, in minutes, before a record shows: the same for a record every time.
fn visibility_delay(seed: u64, resource: &str, row: &Row, most: u64) -> i64 {
    (seeded_hash((seed, resource, row.email(), row.date)) % (most + 1)) as i64
}

/// A seeded draw from a key: SipHash with fixed keys (DefaultHasher::new), stable within a
/// build, which is all a run needs.
fn seeded_hash(key: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

pub(super) fn row_json(resource: &str, row: &Row) -> Value {
    let date = row
        .served_date()
        .map_or_else(|| row.date.format(DATE_FORMAT).to_string(), str::to_owned);
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
        "opens" => geo(json!({"EmailAddress": row.email(), "ListID": row.list_id(), "Date": date})),
        "clicks" => {
            let mut v = geo(json!({"EmailAddress": row.email(), "ListID": row.list_id(), "Date": date}));
            v["URL"] = json!(row.url().unwrap_or("https://example.com/"));
            v
        }
        "unsubscribes" => {
            json!({"EmailAddress": row.email(), "ListID": row.list_id(), "Date": date, "IPAddress": "203.0.113.9"})
        }
        "bounces" => {
            json!({"EmailAddress": row.email(), "ListID": row.list_id(), "BounceType": row.bounce_type().unwrap_or("Hard"),
            "Date": date, "Reason": row.reason().unwrap_or("Hard Bounce - Mailbox does not exist")})
        }
        _ => json!({"EmailAddress": row.email(), "ListID": row.list_id(), "Date": date}),
    }
}

pub(super) fn campaign_activity(world: &World, id: &str, resource: &str, query: &HashMap<String, String>) -> Response {
    let Some(campaign) = world.cm.campaigns.get(id) else {
        return cm_error(StatusCode::BAD_REQUEST, 301, "Invalid CampaignID");
    };
    if resource == "recipients" {
        let (paging, order) = match paging(query, &["email", "list"], "email", true) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let total = campaign.recipients.len();
        let offset = (paging.page - 1).saturating_mul(paging.size);
        let page: Vec<&crate::cm::Recipient> = match (order.as_str(), paging.ascending) {
            // Kept by address: a page is a slice.
            ("email", true) => campaign.recipients.iter().skip(offset).take(paging.size).collect(),
            ("email", false) => campaign
                .recipients
                .iter()
                .rev()
                .skip(offset)
                .take(paging.size)
                .collect(),
            _ => {
                let mut by_list: Vec<&crate::cm::Recipient> = campaign.recipients.iter().collect();
                by_list.sort_by(|a, b| (a.list_id(), a.email()).cmp(&(b.list_id(), b.email())));
                if !paging.ascending {
                    by_list.reverse();
                }
                page_of(&by_list, &paging)
            }
        };
        let results = page
            .into_iter()
            .map(|r| json!({"EmailAddress": r.email(), "ListID": r.list_id()}))
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
    let since = match since_param(query) {
        Ok(since) => since,
        Err(refused) => return refused,
    };
    let rows = visible_rows(world, campaign, resource);
    // Whether `date` includes its own second is not documented: the exclusive reading (the
    // less convenient one) with `exclusive_date_filter`.
    let start = since.map_or(0, |since| {
        if world.faults.cm.exclusive_date_filter {
            rows.partition_point(|r| r.date <= since)
        } else {
            rows.partition_point(|r| r.date < since)
        }
    });
    let rows = &rows[start..];
    let total = rows.len();
    let page: Vec<&Row> = if order == "date" && world.faults.cm.reorder_ties {
        page_with_ties_reordered(world, rows, &paging)
    } else if order == "date" {
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
            sorted.sort_by(|a, b| (a.email(), a.date).cmp(&(b.email(), b.date)));
        } else {
            sorted.sort_by(|a, b| (a.list_id(), a.date).cmp(&(b.list_id(), b.date)));
        }
        if !paging.ascending {
            sorted.reverse();
        }
        page_of(&sorted, &paging)
    };
    let results = page.into_iter().map(|r| row_json(resource, r)).collect();
    ok(envelope(results, total, &paging, &order))
}

pub(super) fn subscriber(world: &World, list_id: &str, query: &HashMap<String, String>) -> Response {
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

/// `lists/{id}/{state}.json`: the list's subscribers in that state whose state changed at or
/// after `date`, paged, by `date` (default), `email` or `name`.
pub(super) fn list_by_state(world: &World, list_id: &str, state: &str, query: &HashMap<String, String>) -> Response {
    let Some(list) = world.cm.lists.get(list_id) else {
        return cm_error(StatusCode::BAD_REQUEST, 101, "Invalid ListID");
    };
    let (paging, order) = match paging(query, &["date", "email", "name"], "date", false) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let since = match since_param(query) {
        Ok(since) => since,
        Err(refused) => return refused,
    };
    // With `late_visibility_minutes`, a change of state shows a seeded 0 to N minutes after its
    // date, as activity does: CM does not document that its lists show a change at once.
    let most = world.faults.cm.late_visibility_minutes;
    let now = world.cm.now_local();
    let visible = |s: &crate::scenario::CmSubscriber| {
        most == 0
            || s.date.as_deref().and_then(parse_local).is_none_or(|date| {
                date + chrono::Duration::minutes(state_delay(world.faults.seed, list_id, &s.email, date, most)) <= now
            })
    };
    let mut subscribers: Vec<&crate::scenario::CmSubscriber> = list
        .subscribers
        .iter()
        .filter(|s| s.state.eq_ignore_ascii_case(state))
        .filter(|s| visible(s))
        .filter(|s| since.is_none_or(|since| s.date.as_deref().and_then(parse_local).is_some_and(|d| d >= since)))
        .collect();
    match order.as_str() {
        "email" => subscribers.sort_by(|a, b| a.email.cmp(&b.email)),
        "name" => subscribers.sort_by(|a, b| (&a.name, &a.email).cmp(&(&b.name, &b.email))),
        _ => subscribers.sort_by(|a, b| (&a.date, &a.email).cmp(&(&b.date, &b.email))),
    }
    if !paging.ascending {
        subscribers.reverse();
    }
    let total = subscribers.len();
    let results = page_of(&subscribers, &paging)
        .into_iter()
        .map(|s| {
            let date = s.date.clone().unwrap_or_default();
            json!({"EmailAddress": s.email, "Name": s.name, "Date": date, "ListJoinedDate": date, "State": s.state,
                "CustomFields": [], "ReadsEmailWith": "", "ConsentToTrack": "Yes"})
        })
        .collect();
    ok(envelope(results, total, &paging, &order))
}

pub(super) fn webhook_json(hook: &Webhook) -> Value {
    json!({"WebhookID": hook.id, "Events": hook.events, "Url": hook.url, "Status": if hook.active { "Active" } else { "Unable to deliver" }, "PayloadFormat": hook.format})
}

pub(super) fn create_webhook(world: &mut World, list_id: &str, body: &[u8]) -> Response {
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
