//! The intake: the token, then the delivery read event by event, recorded as one batch and
//! handed on.

use campaign_monitor::webhook::{WebhookEvent, WebhookEventType};
use chrono::{DateTime, Duration, Utc};
use events::Event;
use events::publisher::EventSink;
use mapping::CmTimestamp;
use mapping::Settings;
use mapping::email::normalize_email;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use state::{EventState, SettingsStore, WebhookBatchRecord, WebhookEventRecord, WebhookEventStore};
use subtle::ConstantTimeEq;

use super::EVENT_TTL_DAYS;
use crate::core::EngineError;

/// The largest body accepted: a Lambda Function URL's request payload limit (6 MB). CM sends up
/// to 1,000 events, each with all of the subscriber's custom fields (about 2 MB with 20).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// The most events recorded and handed on as one batch. CM sends at most 1,000 in a delivery;
/// a bigger one (any count under the body cap) is recorded as several batches, so the pending
/// batch item, which lists its events' keys (about 70 bytes each), stays far under DynamoDB's
/// 400 KB item limit, and one hand-off stays one consumer invocation of 1,000 at most.
pub const EVENTS_PER_BATCH: usize = 1_000;
/// The most refusal reasons kept with a delivery (each at most [`MAX_REASON_CHARS`]); past it,
/// one line says how many more there were.
pub const MAX_REFUSED_KEPT: usize = 100;

/// Why a delivery is refused whole: the HTTP status and a short message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refused {
    /// 400, 401, 403, 413, 415.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

/// One event of a delivery, kept with only what the rules need, and its dedupe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// sha256 of list, type, email, date and state.
    pub dedupe_key: String,
    /// The event: type, date, address (normalised), state, old address. No name, custom
    /// fields or IP address.
    pub event: WebhookEvent,
}

/// An event refused on its own; the rest of its delivery is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedEvent {
    /// Its position in the delivery's `Events`.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// A delivery, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The list.
    pub list_id: String,
    /// The events to record.
    pub events: Vec<ValidEvent>,
    /// The events refused, each with why.
    pub refused: Vec<RefusedEvent>,
}

/// The tokens the intake accepts: the current one and, while it is being rotated, the one
/// before (CM keeps posting to the old URL until the webhooks are registered again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTokens {
    /// The token the webhooks are registered with.
    pub current: String,
    /// The token before a rotation, still accepted until it is removed from the secret.
    pub previous: Option<String>,
}

impl WebhookTokens {
    /// Whether `token` is one of them (each compared in constant time, both always compared).
    pub fn accepts(&self, token: &str) -> bool {
        let matches = |expected: &str| !expected.is_empty() && bool::from(token.as_bytes().ct_eq(expected.as_bytes()));
        let current = matches(&self.current);
        let previous = self.previous.as_deref().is_some_and(matches);
        current | previous
    }
}

/// The token in the URL: the first check, before any I/O.
pub fn check_token(expected: &WebhookTokens, token: &str) -> Result<(), Refused> {
    if !expected.accepts(token) {
        return Err(refuse(401, "unknown webhook token"));
    }
    Ok(())
}

/// The shape of a delivery, its events left as JSON to be read one by one.
#[derive(Deserialize)]
struct RawDelivery {
    #[serde(rename = "ListID")]
    list_id: String,
    #[serde(rename = "Events")]
    events: Vec<Value>,
}

/// Reads a delivery received at `now`: content type, size and shape refuse it whole; each event
/// is read on its own, and one that is wrong (no address, unknown type, bad date, a date outside
/// the window around `now`) is refused alone. Pure.
pub fn read_delivery(
    content_type: Option<&str>,
    body: &[u8],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Delivery, Refused> {
    if !content_type.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    }) {
        return Err(refuse(415, "expected Content-Type: application/json"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(refuse(413, format!("body over {MAX_BODY_BYTES} bytes")));
    }
    let raw: RawDelivery = serde_json::from_slice(body)
        .map_err(|e| refuse(400, format!("not a Campaign Monitor webhook delivery: {e}")))?;
    if !settings.cm_lists.iter().any(|l| l.eq_ignore_ascii_case(&raw.list_id)) {
        return Err(refuse(403, "list not configured for webhooks"));
    }
    if raw.events.is_empty() {
        return Err(refuse(400, "no events"));
    }
    let mut delivery = Delivery {
        list_id: raw.list_id,
        events: Vec::with_capacity(raw.events.len()),
        refused: Vec::new(),
    };
    for (index, value) in raw.events.into_iter().enumerate() {
        match read_event(&delivery.list_id, value, settings.zone(), now) {
            Ok(event) => delivery.events.push(event),
            Err(reason) => delivery.refused.push(RefusedEvent {
                index,
                reason: format!("Events[{index}]: {reason}")
                    .chars()
                    .take(MAX_REASON_CHARS)
                    .collect(),
            }),
        }
    }
    Ok(delivery)
}

/// The longest `State` kept: CM's subscriber states are single words (`Active`,
/// `Unsubscribed`, `Bounced`, `Deleted`).
pub const MAX_STATE_CHARS: usize = 32;
/// The longest refusal reason: it is stored with the batch and sent back to CM, so it is
/// bounded and never repeats a value from the event.
pub const MAX_REASON_CHARS: usize = 200;
/// Fields of an event the rules never read: dropped before the event is read, so a `null` or
/// an odd value there cannot refuse it, and none of it is kept.
const UNUSED_FIELDS: [&str; 3] = ["Name", "CustomFields", "SignupIPAddress"];

/// How far ahead of the intake's clock an event's date may be: CM posts what already happened,
/// so only clock skew and a wrong account time zone can put a date ahead; a date further on is
/// not CM's (and would sort after everything real).
pub const MAX_EVENT_AHEAD: Duration = Duration::hours(36);

/// How old an event may be when it arrives: CM retries a failing URL for about a week and then
/// deactivates the webhook (sandbox README), so an older date is not a delivery of CM's; and the
/// consumer could not confirm it against the list (its read reaches back [`EVENT_TTL_DAYS`]).
/// The list backstop reads such states anyway.
pub const MAX_EVENT_AGE: Duration = Duration::days(EVENT_TTL_DAYS);

fn read_event(list_id: &str, mut value: Value, zone: mapping::Tz, now: DateTime<Utc>) -> Result<ValidEvent, String> {
    if let Value::Object(fields) = &mut value {
        for unused in UNUSED_FIELDS {
            fields.remove(unused);
        }
    }
    let event: WebhookEvent = serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // serde's other messages quote the value (an address, a string of any length).
        if message.starts_with("missing field") {
            message
        } else if path == "." {
            "not an event object".to_owned()
        } else {
            format!("{path} has the wrong type or an unknown value")
        }
    })?;
    let date = CmTimestamp::parse(&event.date)
        .map_err(|_| "Date is not a Campaign Monitor date (YYYY-MM-DD HH:MM:SS, years 1970 to 9999)".to_owned())?;
    let at = date.to_utc(zone);
    if at > now + MAX_EVENT_AHEAD {
        return Err("Date is more than 36 hours ahead of the time it was received".to_owned());
    }
    if at < now - MAX_EVENT_AGE {
        return Err(format!(
            "Date is more than {EVENT_TTL_DAYS} days before the time it was received"
        ));
    }
    let email_address = normalize_email(&event.email_address);
    if !mapping::email::is_plausible_email(&email_address) {
        return Err("EmailAddress is not an email address".to_owned());
    }
    if event.event_type == WebhookEventType::Deactivate && event.state.is_none() {
        return Err("State is required for Deactivate".to_owned());
    }
    if event
        .state
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_STATE_CHARS)
    {
        return Err(format!(
            "State is longer than {MAX_STATE_CHARS} characters: not a subscriber state"
        ));
    }
    if let Some(old) = &event.old_email_address
        && !mapping::email::is_plausible_email(&normalize_email(old))
    {
        return Err("OldEmailAddress is not an email address".to_owned());
    }
    // Only what the rules need: no name, custom fields or IP address is kept.
    let event = WebhookEvent {
        event_type: event.event_type,
        date: event.date,
        email_address,
        name: String::new(),
        custom_fields: Vec::new(),
        signup_ip_address: None,
        old_email_address: event.old_email_address.map(|old| normalize_email(&old)),
        state: event.state,
    };
    Ok(ValidEvent {
        dedupe_key: dedupe_key(list_id, &event),
        event,
    })
}

/// The dedupe key of an event: its list, CM's name of its type, address, date and state,
/// keyed with the deployment's pepper ([`mapping::email::keyed_digest`]), so the key cannot be
/// recomputed from a candidate address without the deployment's secret. Built from stable names
/// only: stored keys must not change with a rename in code. (During a key change an event
/// redelivered after it may be recorded once more under the new key: applying an opt-out or a
/// bounce again changes nothing.)
fn dedupe_key(list_id: &str, event: &WebhookEvent) -> String {
    hex::encode(mapping::email::keyed_digest(
        mapping::email::installed_peppers()[0],
        "cm-sf-sync webhook event",
        &[
            list_id,
            event.event_type.as_str(),
            &event.email_address,
            &event.date,
            event.state.as_deref().unwrap_or(""),
        ],
    ))
}

/// What the intake needs: the state table and the bus (no CM or SF client).
pub struct IntakeEngine<S, P> {
    /// The state table.
    pub store: std::sync::Arc<S>,
    /// The publisher.
    pub publisher: std::sync::Arc<events::publisher::Publisher<P>>,
}

impl<S, P> std::fmt::Debug for IntakeEngine<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntakeEngine")
    }
}

impl<S: SettingsStore + WebhookEventStore, P: EventSink> IntakeEngine<S, P> {
    /// One HTTP delivery, start to answer: the token first, then the settings, the delivery,
    /// the record and the hand-off. Returns the status and a JSON body; 5xx when the table or
    /// the bus failed (CM delivers again).
    pub async fn receive(
        &self,
        expected: &WebhookTokens,
        token: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        if let Err(refused) = check_token(expected, token) {
            tracing::warn!(status = refused.status, reason = %refused.message, "webhook delivery refused");
            return (refused.status, json!({"message": refused.message}));
        }
        let settings = match self.store.load_settings().await {
            Ok(Some(stored)) => stored.settings,
            Ok(None) => return (503, json!({"message": "not configured yet"})),
            Err(error) => {
                tracing::error!(%error, "state table unavailable");
                return (503, json!({"message": "temporarily unavailable"}));
            }
        };
        let delivery = match read_delivery(content_type, body, &settings, Utc::now()) {
            Ok(delivery) => delivery,
            Err(refused) => {
                tracing::warn!(status = refused.status, reason = %refused.message, "webhook delivery refused");
                return (refused.status, json!({"message": refused.message}));
            }
        };
        if !delivery.refused.is_empty() {
            tracing::warn!(refused = delivery.refused.len(), first = %delivery.refused[0].reason, "webhook events refused on their own; the rest of the delivery is recorded");
        }
        match self.intake(&delivery).await {
            Ok((recorded, already)) => {
                tracing::info!(
                    recorded,
                    already_known = already,
                    refused = delivery.refused.len(),
                    "webhook delivery recorded"
                );
                (
                    200,
                    json!({
                        "message": format!("recorded {recorded}, already known {already}, refused {}", delivery.refused.len()),
                        // The first reasons only: the answer stays small whatever was sent.
                        "refused": delivery.refused.iter().take(MAX_REFUSED_KEPT).collect::<Vec<_>>(),
                    }),
                )
            }
            Err(error) => {
                tracing::error!(%error, "webhook delivery not recorded; CM will deliver again");
                (503, json!({"message": "temporarily unavailable"}))
            }
        }
    }

    /// Records the delivery's events as one batch and hands the batch on (one event, whatever
    /// the number of subscribers). Events seen before and not applied yet are handed on again,
    /// so a lost hand-off is never final. Returns (new, already known); any error means "answer
    /// 5xx": CM will deliver again.
    pub async fn intake(&self, delivery: &Delivery) -> Result<(usize, usize), EngineError> {
        let now = Utc::now();
        let expires_at = now + Duration::days(EVENT_TTL_DAYS);
        let mut refused: Vec<String> = delivery
            .refused
            .iter()
            .take(MAX_REFUSED_KEPT)
            .map(|r| r.reason.clone())
            .collect();
        if delivery.refused.len() > MAX_REFUSED_KEPT {
            refused.push(format!(
                "and {} more events refused for reasons not kept",
                delivery.refused.len() - MAX_REFUSED_KEPT
            ));
        }
        let chunks: Vec<&[ValidEvent]> = if delivery.events.is_empty() {
            vec![&[]]
        } else {
            delivery.events.chunks(EVENTS_PER_BATCH).collect()
        };
        let (mut new, mut already) = (0, 0);
        let mut hand_offs = Vec::new();
        for (index, chunk) in chunks.into_iter().enumerate() {
            let mut digest = Sha256::new();
            for event in chunk {
                digest.update(event.dedupe_key.as_bytes());
            }
            let batch = format!(
                "{}#{}",
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                &hex::encode(digest.finalize())[..16]
            );
            let record = WebhookBatchRecord {
                batch: batch.clone(),
                list_id: delivery.list_id.clone(),
                received_at: now,
                expires_at,
                events: chunk
                    .iter()
                    .map(|valid| WebhookEventRecord {
                        dedupe_key: valid.dedupe_key.clone(),
                        list_id: delivery.list_id.clone(),
                        payload: serde_json::to_value(&valid.event).unwrap_or(Value::Null),
                        person: Some(mapping::email::person_key(&valid.event.email_address)),
                        received_at: now,
                        expires_at,
                        state: EventState::Received,
                        attempts: 0,
                    })
                    .collect(),
                // Reported once, with the delivery's first batch.
                refused: if index == 0 {
                    std::mem::take(&mut refused)
                } else {
                    Vec::new()
                },
            };
            let recorded = self.store.record_webhook_batch(&record).await?;
            if recorded.pending {
                hand_offs.push(Event::webhook_batch_received(
                    &batch,
                    &delivery.list_id,
                    recorded.to_apply,
                    now,
                ));
            }
            new += recorded.new;
            already += recorded.duplicates;
        }
        if !hand_offs.is_empty() {
            self.publisher.publish(&hand_offs).await?;
        }
        Ok((new, already))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedupe_key_of_an_event_is_pinned() {
        let event = WebhookEvent {
            event_type: WebhookEventType::Deactivate,
            date: "2026-11-20 10:00:00".into(),
            email_address: "ann@example.com".into(),
            name: String::new(),
            custom_fields: Vec::new(),
            signup_ip_address: None,
            old_email_address: None,
            state: Some("Unsubscribed".into()),
        };
        // Every stored event is deduplicated by this key: a change here re-applies history
        // (redelivered events only; applying an opt-out again changes nothing). Without a
        // pepper installed (unit tests), the public tag's key.
        assert_eq!(
            dedupe_key("list-1", &event),
            "3f8ec701d6f45ad8196052a85303c8681bdc2aaa75df15ef3543f9c5d3f201b3"
        );
        let peppered = hex::encode(mapping::email::keyed_digest(
            Some(&[9; 32]),
            "cm-sf-sync webhook event",
            &[
                "list-1",
                "Deactivate",
                "ann@example.com",
                "2026-11-20 10:00:00",
                "Unsubscribed",
            ],
        ));
        assert_ne!(
            peppered,
            dedupe_key("list-1", &event),
            "a deployment's pepper changes it"
        );
    }
}
