//! The consumer: a recorded batch applied at once, through the sync's own rules (`mapping`'s
//! opt-out and bounce decisions) and writer (Collections of 200): one people look-up for the
//! batch, one write per 200 changes, and each event's own outcome recorded.

use std::collections::BTreeMap;

use campaign_monitor::webhook::{WebhookEvent, WebhookEventType};
use events::publisher::EventSink;
use mapping::activity::{Activity, ActivityDetail, ActivityKind};
use mapping::plan::SkipReason;
use mapping::{CmTimestamp, Settings};
use salesforce::{RecordOutcome, SfError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use state::{EventState, Store, WebhookEventRecord};

use crate::{Engine, EngineError};

/// The reason a bounce from a list deactivation is recorded with.
const BOUNCE_REASON: &str = "Bounced (Campaign Monitor list deactivation)";

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// Events applied (including those that changed nothing, with why).
    pub applied: usize,
    /// Events Salesforce refused for good (each with its code, on the event).
    pub failed: usize,
    /// Events left to retry (a transient refusal).
    pub to_retry: usize,
    /// Events applied before (a redelivered hand-off).
    pub already_applied: usize,
    /// Leads and Contacts written.
    pub people_updated: usize,
    /// Unsubscribes and bounces CM's list does not show (a forged or outdated post): applied as
    /// "not applied", with why.
    pub unconfirmed: usize,
    /// Events the intake refused on their own (malformed), reported as a run of the list.
    pub refused: usize,
}

/// What an event asks of Salesforce.
enum Ask {
    /// An unsubscribe or a bounce: an activity for the rules.
    Change(Activity),
    /// Nothing to write: applied with this note.
    Nothing(String),
}

fn ask_of(event: &WebhookEvent, list_id: &str, settings: &Settings) -> Result<Ask, String> {
    let at = CmTimestamp::parse(&event.date)
        .map_err(|_| format!("recorded date `{}` unreadable", event.date))?
        .to_utc(settings.zone());
    let activity = |kind, detail| Activity {
        kind,
        email: event.email_address.clone(),
        at,
        list_id: list_id.to_owned(),
        detail,
    };
    Ok(match (event.event_type, event.state.as_deref()) {
        (WebhookEventType::Deactivate, Some("Unsubscribed")) => {
            Ask::Change(activity(ActivityKind::Unsubscribed, ActivityDetail::None))
        }
        (WebhookEventType::Deactivate, Some("Bounced")) => Ask::Change(activity(
            ActivityKind::Bounced,
            ActivityDetail::Bounce {
                bounce_type: "Hard".into(),
                reason: BOUNCE_REASON.into(),
            },
        )),
        (WebhookEventType::Deactivate, state) => {
            Ask::Nothing(format!("recorded (deactivated: {})", state.unwrap_or("unknown")))
        }
        (WebhookEventType::Update, _)
            if event
                .old_email_address
                .as_ref()
                .is_some_and(|old| *old != event.email_address) =>
        {
            Ask::Nothing("email change recorded and reported; not applied to Salesforce".to_owned())
        }
        (WebhookEventType::Update, _) => Ask::Nothing("recorded (details updated)".to_owned()),
        (WebhookEventType::Subscribe, _) => Ask::Nothing("recorded (subscribed)".to_owned()),
    })
}

/// What happened at one address: the writes for its people, and what was kept with why.
#[derive(Default)]
struct AddressResult {
    written: Vec<&'static str>,
    refused: Vec<(bool, String)>,
    kept: Vec<String>,
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Events the intake refused on their own are kept as a run of the list, each with its
    /// reason (never the event, which may hold an address): `cm-sf-admin runs` lists it. Written
    /// here, not by the intake, whose role writes webhook items only; once per batch, however
    /// often the hand-off is retried.
    async fn record_refused(&self, settings: &Settings, pending: &state::PendingBatch) -> Result<(), EngineError> {
        let counts = std::collections::BTreeMap::from([
            ("recorded".to_owned(), pending.events.len() as u64),
            ("refused".to_owned(), pending.refused.len() as u64),
        ]);
        let failures: Vec<state::RunFailure> = pending
            .refused
            .iter()
            .map(|reason| {
                let event = reason.split_once(": ").map_or("webhook event", |(at, _)| at);
                state::RunFailure::new(&format!("webhook {event}"), reason, Some("WEBHOOK_EVENT_REFUSED"))
            })
            .collect();
        let digest = Sha256::digest(pending.batch.as_bytes());
        let run_id = state::new_run_id(
            pending.received_at,
            u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]),
        );
        let scope = format!("webhook:{}", pending.list_id);
        Ok(crate::record_report_once(self.store.as_ref(), settings, &run_id, &scope, counts, &failures).await?)
    }

    /// Applies a recorded batch of webhook events: every event not applied yet, at once. Each
    /// event ends Applied (with what changed, or why nothing did) or Failed (with Salesforce's
    /// code); one refused with a transient code stays to be retried, and the call fails
    /// retryable so Lambda retries it. A batch whose events are all applied is finished.
    pub async fn apply_webhook_batch(&self, settings: &Settings, batch: &str) -> Result<BatchOutcome, EngineError> {
        let mut outcome = BatchOutcome::default();
        let Some(pending) = self.store.pending_webhook_batch(batch).await? else {
            return Ok(outcome); // finished before: a redelivered hand-off
        };
        if !pending.refused.is_empty() {
            self.record_refused(settings, &pending).await?;
            outcome.refused = pending.refused.len();
        }
        let mut done: Vec<WebhookEventRecord> = Vec::new();
        let mut changes: Vec<(WebhookEventRecord, Activity)> = Vec::new();
        let state::PendingBatch { list_id, events, .. } = pending;
        for record in events {
            if matches!(record.state, EventState::Applied { .. }) {
                outcome.already_applied += 1;
                continue;
            }
            let asked = serde_json::from_value::<WebhookEvent>(record.payload.clone())
                .map_err(|e| format!("recorded event unreadable: {e}"))
                .and_then(|event| ask_of(&event, &record.list_id, settings));
            match asked {
                Ok(Ask::Change(activity)) => changes.push((record, activity)),
                Ok(Ask::Nothing(note)) => done.push(WebhookEventRecord {
                    state: EventState::Applied { outcome: note },
                    ..record
                }),
                Err(reason) => done.push(WebhookEventRecord {
                    state: EventState::Failed { reason },
                    ..record
                }),
            }
        }
        let results = self.apply_changes(settings, &list_id, &changes, &mut outcome).await?;
        let mut transient = None;
        for (record, activity) in changes {
            let result = results.get(activity.email.as_str());
            if let Some((_, why)) = result.and_then(|r| r.refused.iter().find(|(transient, _)| *transient)) {
                transient = Some(why.clone());
                outcome.to_retry += 1;
                continue; // stays Received: retried
            }
            let state = match result {
                Some(r) if !r.refused.is_empty() => EventState::Failed {
                    reason: mapping::email::redact_emails_in(
                        &r.refused
                            .iter()
                            .map(|(_, why)| why.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                },
                Some(r) if !r.written.is_empty() => EventState::Applied {
                    outcome: r.written.join(", "),
                },
                Some(r) if !r.kept.is_empty() => EventState::Applied {
                    outcome: r.kept.join(", "),
                },
                _ => EventState::Applied {
                    outcome: "nothing to change".to_owned(),
                },
            };
            done.push(WebhookEventRecord { state, ..record });
        }
        outcome.applied += done
            .iter()
            .filter(|r| matches!(r.state, EventState::Applied { .. }))
            .count();
        outcome.failed += done
            .iter()
            .filter(|r| matches!(r.state, EventState::Failed { .. }))
            .count();
        // An applied event is kept for its dedupe key and outcome only: its address and the rest
        // of the event are not needed again (a failed one keeps them, to be applied later).
        for record in &mut done {
            if matches!(record.state, EventState::Applied { .. }) {
                record.payload = serde_json::Value::Null;
            }
        }
        self.store.save_webhook_events(&done).await?;
        if outcome.failed == 0 && outcome.to_retry == 0 {
            self.store.finish_webhook_batch(batch).await?;
        }
        tracing::info!(
            batch,
            applied = outcome.applied,
            failed = outcome.failed,
            to_retry = outcome.to_retry,
            people = outcome.people_updated,
            "webhook batch applied"
        );
        if let Some(why) = transient {
            return Err(SfError::Unavailable {
                code: why,
                attempts: self.sf.config().retry.max_attempts,
            }
            .into());
        }
        Ok(outcome)
    }

    /// The batch's unsubscribes and bounces: confirmed by CM's list state (one paged read per
    /// state, not one call per person), then one look-up of the people, the rules, one write per
    /// 200 changes; what happened at each address. An unsubscribe or bounce the list does not
    /// show is not applied: a forged or outdated post changes nothing.
    async fn apply_changes(
        &self,
        settings: &Settings,
        list_id: &str,
        changes: &[(WebhookEventRecord, Activity)],
        outcome: &mut BatchOutcome,
    ) -> Result<BTreeMap<String, AddressResult>, EngineError> {
        let mut results: BTreeMap<String, AddressResult> = BTreeMap::new();
        let Some(earliest) = changes.iter().map(|(_, a)| a.at).min() else {
            return Ok(results);
        };
        // A minute before the earliest event: whether CM's `date` filter includes its own
        // second is not documented, and an event must not go unconfirmed for that.
        let since = CmTimestamp::since(earliest - chrono::Duration::minutes(1), settings.zone());
        let shown = self.list_states_since(list_id, since).await?;
        let mut confirmed = Vec::new();
        let mut unconfirmed = Vec::new();
        for (record, activity) in changes {
            if shown
                .get(&activity.kind)
                .is_some_and(|emails| emails.contains(&activity.email))
            {
                confirmed.push(activity.clone());
                continue;
            }
            outcome.unconfirmed += 1;
            let what = if activity.kind == ActivityKind::Bounced {
                "bounced"
            } else {
                "unsubscribed"
            };
            results.entry(activity.email.clone()).or_default().kept.push(format!(
                "not applied: Campaign Monitor's list does not show the address {what} (a forged or outdated post)"
            ));
            unconfirmed.push(state::RunFailure {
                person: Some(mapping::email::person_key(&activity.email)),
                ..state::RunFailure::new(
                    &format!("webhook event {}", record.dedupe_key),
                    &format!(
                        "{} not applied: Campaign Monitor's list does not show it {what} (a forged or outdated post)",
                        mapping::email::redact_email(&activity.email)
                    ),
                    Some("WEBHOOK_NOT_CONFIRMED"),
                )
            });
        }
        if !unconfirmed.is_empty() {
            tracing::warn!(
                list = list_id,
                unconfirmed = unconfirmed.len(),
                "webhook opt-outs or bounces the list does not confirm were not applied"
            );
            let counts = BTreeMap::from([("not_confirmed".to_owned(), unconfirmed.len() as u64)]);
            crate::record_report(
                self.store.as_ref(),
                settings,
                &format!("webhook:{list_id}"),
                counts,
                &unconfirmed,
            )
            .await?;
        }
        let (plan, written) = self.apply_list_changes(settings, &confirmed).await?;
        for skip in &plan.skips {
            let why = match &skip.reason {
                SkipReason::UnmatchedEmail => "no Lead or Contact has the address".to_owned(),
                SkipReason::OptOutKept { why } => format!("opt-out kept: {why:?}"),
                SkipReason::BounceKept { why } => format!("bounce kept: {why:?}"),
                other => other.label().to_owned(),
            };
            results.entry(skip.subject.clone()).or_default().kept.push(why);
        }
        for (update, result) in plan.person_updates.iter().zip(written) {
            let at = results.entry(update.email.clone()).or_default();
            match result {
                RecordOutcome::Failed(error) => at.refused.push((
                    salesforce::is_transient_code(&error.code),
                    format!("{}: {}", error.code, error.message),
                )),
                _ => {
                    outcome.people_updated += 1;
                    at.written.push(match (update.opt_out, update.bounce.is_some()) {
                        (true, true) => "opted out and bounce recorded",
                        (true, false) => "opted out",
                        _ => "bounce recorded",
                    });
                }
            }
        }
        Ok(results)
    }
}
