//! CM list webhooks (PRODUCT.md §3.7): strict intake, durable dedupe before the 2xx, hand-off
//! through EventBridge, and the consumer that applies unsubscribes and bounces.
//!
//! CM's payloads are unsigned: the URL's secret token is the only authenticator, compared in
//! constant time. Anything malformed is refused with a 400 and a short message, and nothing is
//! recorded.

use campaign_monitor::webhook::{WebhookBatch, WebhookEvent, WebhookEventType};
use chrono::{Duration, Utc};
use events::Event;
use events::publisher::EventSink;
use mapping::email::normalize_email;
use mapping::people::{
    BounceDecision, BounceSeverity, OptOutDecision, PersonEmailState, SubscriberState, decide_bounce, decide_opt_out,
};
use mapping::settings::OptOutPolicy;
use mapping::{CmTimestamp, Settings};
use salesforce::{Operation, WriteOptions};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use state::{EventState, Recorded, Store, WebhookEventRecord};
use subtle::ConstantTimeEq;

use crate::{Engine, EngineError};

/// The largest body accepted (CM batches up to 1,000 events of a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most events accepted in one delivery.
pub const MAX_EVENTS: usize = 1_000;
/// How long recorded events are kept.
pub const EVENT_TTL_DAYS: i64 = 30;

/// Why a delivery is refused: the HTTP status and a short message.
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

/// One validated event, normalised, with its dedupe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// sha256 of list, type, email, date and state.
    pub dedupe_key: String,
    /// The event, email normalised.
    pub event: WebhookEvent,
}

/// Checks a delivery: the token (constant time), content type, size, JSON shape, list, dates and
/// addresses. Pure: nothing is recorded here.
pub fn validate(
    expected_token: &str,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
    settings: &Settings,
) -> Result<(String, Vec<ValidEvent>), Refused> {
    if expected_token.is_empty() || !bool::from(token.as_bytes().ct_eq(expected_token.as_bytes())) {
        return Err(refuse(401, "unknown webhook token"));
    }
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
    let batch: WebhookBatch =
        serde_json::from_slice(body).map_err(|e| refuse(400, format!("malformed payload: {e}")))?;
    if !settings.cm_lists.iter().any(|l| l.eq_ignore_ascii_case(&batch.list_id)) {
        return Err(refuse(403, "list not configured for webhooks"));
    }
    if batch.events.is_empty() {
        return Err(refuse(400, "no events"));
    }
    if batch.events.len() > MAX_EVENTS {
        return Err(refuse(413, format!("more than {MAX_EVENTS} events")));
    }
    let mut valid = Vec::with_capacity(batch.events.len());
    for (index, mut event) in batch.events.into_iter().enumerate() {
        CmTimestamp::parse(&event.date)
            .map_err(|_| refuse(400, format!("Events[{index}].Date is not YYYY-MM-DD HH:MM:SS")))?;
        event.email_address = normalize_email(&event.email_address);
        if !is_plausible_email(&event.email_address) {
            return Err(refuse(
                400,
                format!("Events[{index}].EmailAddress is not an email address"),
            ));
        }
        if let Some(old) = event.old_email_address.as_mut() {
            *old = normalize_email(old);
        }
        if event.event_type == WebhookEventType::Deactivate && event.state.is_none() {
            return Err(refuse(400, format!("Events[{index}].State is required for Deactivate")));
        }
        let mut hash = Sha256::new();
        for part in [
            batch.list_id.as_str(),
            &format!("{:?}", event.event_type),
            &event.email_address,
            &event.date,
            event.state.as_deref().unwrap_or(""),
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        valid.push(ValidEvent {
            dedupe_key: hex::encode(hash.finalize()),
            event,
        });
    }
    Ok((batch.list_id, valid))
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';' | '(' | ')'))
}

/// What the intake did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Intake {
    /// Newly recorded events.
    pub recorded: usize,
    /// Events seen before (a redelivery).
    pub duplicates: usize,
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

impl<S: Store, P: EventSink> IntakeEngine<S, P> {
    /// One HTTP delivery, start to answer: validation, then record and publish. Returns the
    /// status and a short message; 5xx when the table or the bus failed (CM delivers again).
    pub async fn receive(
        &self,
        settings: &Settings,
        expected_token: &str,
        token: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let (list_id, events) = match validate(expected_token, token, content_type, body, settings) {
            Ok(valid) => valid,
            Err(refused) => {
                tracing::warn!(status = refused.status, reason = %refused.message, "webhook delivery refused");
                return (refused.status, refused.message);
            }
        };
        match self.intake(&list_id, events).await {
            Ok(done) => {
                tracing::info!(
                    recorded = done.recorded,
                    duplicates = done.duplicates,
                    "webhook delivery recorded"
                );
                (
                    200,
                    format!("recorded {}, already known {}", done.recorded, done.duplicates),
                )
            }
            Err(error) => {
                tracing::error!(%error, "webhook delivery not recorded; CM will deliver again");
                (503, "temporarily unavailable".to_owned())
            }
        }
    }

    /// Records each event (deduplicated) and publishes the new ones. An event recorded but not
    /// yet applied is published again on a redelivery, so a failure between the record and the
    /// publish never loses it. Any error means "answer 5xx": CM will deliver again.
    pub async fn intake(&self, list_id: &str, events: Vec<ValidEvent>) -> Result<Intake, EngineError> {
        let now = Utc::now();
        let mut intake = Intake::default();
        let mut to_publish = Vec::new();
        for valid in events {
            let record = WebhookEventRecord {
                dedupe_key: valid.dedupe_key.clone(),
                list_id: list_id.to_owned(),
                payload: serde_json::to_value(&valid.event).unwrap_or(Value::Null),
                received_at: now,
                expires_at: now + Duration::days(EVENT_TTL_DAYS),
                state: EventState::Received,
            };
            match self.store.record_webhook_event(&record).await? {
                Recorded::New => {
                    intake.recorded += 1;
                    to_publish.push(Event::subscriber_event_received(&valid.dedupe_key, list_id, now));
                }
                Recorded::Duplicate => {
                    intake.duplicates += 1;
                    if self
                        .store
                        .webhook_event(&valid.dedupe_key)
                        .await?
                        .is_some_and(|e| e.state == EventState::Received)
                    {
                        to_publish.push(Event::subscriber_event_received(&valid.dedupe_key, list_id, now));
                    }
                }
            }
        }
        if !to_publish.is_empty() {
            self.publisher.publish(&to_publish).await?;
        }
        Ok(intake)
    }
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Applies one recorded subscriber event to the Lead/Contact and records the outcome.
    pub async fn apply_subscriber_event(
        &self,
        settings: &mapping::Settings,
        dedupe_key: &str,
    ) -> Result<EventState, EngineError> {
        let Some(record) = self.store.webhook_event(dedupe_key).await? else {
            return Err(EngineError::UnexpectedEvent(format!(
                "no recorded webhook event {dedupe_key}"
            )));
        };
        if matches!(record.state, EventState::Applied { .. }) {
            return Ok(record.state); // applied before: a redelivered hand-off
        }
        // Received, or Failed earlier: a retry or a replay tries again (a cause an admin can fix,
        // such as credentials or a permission, must not leave the event parked).
        match self.apply_recorded(settings, &record).await {
            Ok(state) => Ok(state),
            Err(error) if !error.is_retryable() => {
                // Retrying cannot help: say so on the event, then let the trigger's DLQ keep it.
                self.store
                    .set_webhook_event_state(
                        dedupe_key,
                        &EventState::Failed {
                            reason: error.to_string(),
                        },
                    )
                    .await?;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    async fn apply_recorded(
        &self,
        settings: &mapping::Settings,
        record: &WebhookEventRecord,
    ) -> Result<EventState, EngineError> {
        let dedupe_key = record.dedupe_key.as_str();
        let event: WebhookEvent = serde_json::from_value(record.payload.clone())
            .map_err(|e| EngineError::UnexpectedEvent(format!("recorded event unreadable: {e}")))?;
        let outcome = match (event.event_type, event.state.as_deref()) {
            (WebhookEventType::Deactivate, Some("Unsubscribed")) => {
                self.apply_unsubscribe(settings, &record.list_id, &event).await?
            }
            (WebhookEventType::Deactivate, Some("Bounced")) => self.apply_bounce(settings, &event).await?,
            (WebhookEventType::Deactivate, state) => format!("recorded (deactivated: {})", state.unwrap_or("unknown")),
            (WebhookEventType::Update, _)
                if event
                    .old_email_address
                    .as_ref()
                    .is_some_and(|old| *old != event.email_address) =>
            {
                "email change recorded and reported; not applied to Salesforce".to_owned()
            }
            (WebhookEventType::Update, _) => "recorded (details updated)".to_owned(),
            (WebhookEventType::Subscribe, _) => "recorded (subscribed)".to_owned(),
        };
        let state = EventState::Applied { outcome };
        self.store.set_webhook_event_state(dedupe_key, &state).await?;
        Ok(state)
    }

    /// The Leads and Contacts with an address, with their email fields (the sync's own lookup).
    async fn people_with_email(
        &self,
        email: &str,
    ) -> Result<Vec<(String, &'static str, PersonEmailState)>, EngineError> {
        let (candidates, mut states) = crate::salesforce_io::read_people(&self.sf, &[email.to_owned()]).await?;
        Ok(candidates
            .into_values()
            .flatten()
            .map(|person| {
                let object = if person.kind == mapping::matching::PersonKind::Contact {
                    "Contact"
                } else {
                    "Lead"
                };
                let state = states.remove(&person.id).unwrap_or_default();
                (person.id, object, state)
            })
            .collect())
    }

    /// Writes the people's updates; a record Salesforce refused fails the event (never
    /// "applied" for a refused write): transient codes as retryable, the rest with their code.
    async fn update_people(&self, updates: Vec<(&'static str, Map<String, Value>)>) -> Result<usize, EngineError> {
        let mut done = 0;
        for object in ["Contact", "Lead"] {
            let records: Vec<Map<String, Value>> = updates
                .iter()
                .filter(|(o, _)| *o == object)
                .map(|(_, r)| r.clone())
                .collect();
            if records.is_empty() {
                continue;
            }
            let results = self
                .sf
                .write(object, &Operation::Update, &records, &WriteOptions::default())
                .await?;
            for result in results {
                match result.outcome {
                    salesforce::RecordOutcome::Failed(error) if salesforce::is_transient_code(&error.code) => {
                        return Err(salesforce::SfError::Unavailable {
                            code: error.code,
                            attempts: self.sf.config().retry.max_attempts,
                        }
                        .into());
                    }
                    salesforce::RecordOutcome::Failed(error) => {
                        return Err(salesforce::SfError::Api {
                            status: 400,
                            code: error.code,
                            message: format!("updating a {object}: {}", error.message),
                        }
                        .into());
                    }
                    _ => done += 1,
                }
            }
        }
        Ok(done)
    }

    async fn apply_unsubscribe(
        &self,
        settings: &Settings,
        list_id: &str,
        event: &WebhookEvent,
    ) -> Result<String, EngineError> {
        let mut other_lists = Vec::new();
        if settings.opt_out_policy == OptOutPolicy::AllLists {
            for client in &settings.cm_clients {
                for membership in self.cm.lists_for_email(client, &event.email_address).await? {
                    let configured = settings
                        .cm_lists
                        .iter()
                        .any(|l| l.eq_ignore_ascii_case(&membership.list_id));
                    if configured && !membership.list_id.eq_ignore_ascii_case(list_id) {
                        let state = if membership.subscriber_state == "Active" {
                            SubscriberState::Active
                        } else {
                            SubscriberState::Unsubscribed
                        };
                        other_lists.push((membership.list_id, state));
                    }
                }
            }
        }
        let people = self.people_with_email(&event.email_address).await?;
        if people.is_empty() {
            return Ok("no Lead or Contact has the address".to_owned());
        }
        let mut updates = Vec::new();
        let mut kept = Vec::new();
        for (id, object, current) in people {
            match decide_opt_out(settings.opt_out_policy, &current, &other_lists) {
                OptOutDecision::OptOut => updates.push((
                    object,
                    [
                        ("Id".to_owned(), json!(id)),
                        ("HasOptedOutOfEmail".to_owned(), json!(true)),
                    ]
                    .into_iter()
                    .collect(),
                )),
                OptOutDecision::Keep { why } => kept.push(format!("{why:?}")),
            }
        }
        let done = self.update_people(updates).await?;
        Ok(if done > 0 {
            format!("opted out {done} Lead/Contact")
        } else {
            format!("opt-out kept: {}", kept.join(", "))
        })
    }

    async fn apply_bounce(&self, settings: &Settings, event: &WebhookEvent) -> Result<String, EngineError> {
        let at = CmTimestamp::parse(&event.date)
            .map(|t| t.to_utc(settings.zone()))
            .unwrap_or_else(|_| Utc::now());
        let mut updates = Vec::new();
        for (id, object, current) in self.people_with_email(&event.email_address).await? {
            if let BounceDecision::Record { at, reason } = decide_bounce(
                settings.record_bounces,
                BounceSeverity::Hard,
                &current,
                at,
                "Bounced (Campaign Monitor list deactivation)",
            ) {
                let record: Map<String, Value> = [
                    ("Id".to_owned(), json!(id)),
                    ("EmailBouncedDate".to_owned(), json!(at.to_rfc3339())),
                    ("EmailBouncedReason".to_owned(), json!(reason)),
                ]
                .into_iter()
                .collect();
                updates.push((object, record));
            }
        }
        let done = self.update_people(updates).await?;
        Ok(format!("bounce recorded on {done} Lead/Contact"))
    }
}
