//! The consumer, [`WebhookConsumer`]: a recorded batch applied at once, through the sync's own
//! rules (`mapping`'s opt-out and bounce decisions) and the lists' writer (Collections of 200):
//! one confirmation read of the list per state, one people look-up for the batch, one write per
//! 200 changes, and each event's own [`EventOutcome`] recorded.

use std::collections::BTreeMap;

use campaign_monitor::webhook::{WebhookEvent, WebhookEventType};
use mapping::activity::{Activity, ActivityDetail, ActivityKind};
use mapping::people::LIST_BOUNCE_TYPE;
use mapping::plan::SkipReason;
use mapping::{CmTimestamp, Settings};
use salesforce::RecordOutcome;
use serde::Serialize;
use state::{
    EventState, MAX_WEBHOOK_ATTEMPTS, PendingBatch, RunFailure, RunStore, Scope, WebhookEventRecord, WebhookEventStore,
};

use crate::core::{Engine, EngineError};
use crate::lists::Lists;
use crate::report::{record_report_once, report_run_id};

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
    /// Unsubscribes and bounces CM's list still does not show a day after they were posted (a
    /// forged or outdated post): closed as "not applied", with why, and reported.
    pub unconfirmed: usize,
    /// Unsubscribes and bounces CM's list does not show yet: left pending, confirmed again at
    /// the next sweep (CM may show a list change later than it posts it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub awaiting_confirmation: usize,
    /// Events the intake refused on their own (malformed), reported as a run of the list.
    pub refused: usize,
    /// Events still not applied after `MAX_WEBHOOK_ATTEMPTS` tries: their batch is parked for
    /// an admin (not re-driven by the schedule, nor by Lambda's retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parked: usize,
    /// Why the events left to retry were refused (the first such reason).
    #[serde(skip)]
    pub retry_reason: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The `alarm` webhook events failed for good are logged with.
pub const ALARM_WEBHOOK_EVENTS_FAILED: &str = "WebhookEventsFailed";
/// The `alarm` a batch parked for an admin is logged with.
pub const ALARM_WEBHOOK_EVENTS_PARKED: &str = "WebhookEventsParked";
/// The `alarm` webhook events closed unconfirmed are logged with.
pub const ALARM_WEBHOOK_EVENTS_UNCONFIRMED: &str = "WebhookEventsUnconfirmed";

impl BatchOutcome {
    /// The outcome, or the error that makes the trigger run the batch again when events are
    /// left to retry (those applied are not applied again: they are recorded as applied).
    pub fn into_result(self) -> Result<BatchOutcome, EngineError> {
        match self.retry_reason {
            Some(reason) => Err(EngineError::RetryLater { reason }),
            None => Ok(self),
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied: what changed, or why nothing did.
    Applied(String),
    /// Refused for good (Salesforce's codes and messages, addresses redacted).
    FailedForGood(String),
    /// Refused for a reason that passes: the event stays to be applied again.
    Retry(String),
    /// CM's list does not show the change yet: the event stays, to be confirmed again.
    AwaitingConfirmation,
}

impl EventOutcome {
    /// The state the event is stored in; `None`: left as received, to be retried.
    fn state(self) -> Option<EventState> {
        match self {
            EventOutcome::Applied(outcome) => Some(EventState::Applied { outcome }),
            EventOutcome::FailedForGood(reason) => Some(EventState::Failed { reason }),
            EventOutcome::Retry(_) | EventOutcome::AwaitingConfirmation => None,
        }
    }
}

/// What an event asks of Salesforce.
enum Ask {
    /// An unsubscribe or a bounce: an activity for the rules.
    Change(Activity),
    /// Nothing to write: applied with this note.
    Nothing(String),
}

/// What a recorded event asks of Salesforce, read from its stored payload.
fn ask_of_record(record: &WebhookEventRecord, settings: &Settings) -> Result<Ask, String> {
    serde_json::from_value::<WebhookEvent>(record.payload.clone())
        .map_err(|e| format!("recorded event unreadable: {e}"))
        .and_then(|event| ask_of(&event, &record.list_id, settings))
}

/// The change a recorded event plans, with where its confirmation read of the list would start
/// at `now` (`None`: nothing to write; `Err`: refused for good, with why). Pure: the consumer's
/// path from a stored event to what it asks of CM and Salesforce, for the fuzz test.
pub fn planned_change(
    record: &WebhookEventRecord,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(Activity, CmTimestamp)>, String> {
    Ok(match ask_of_record(record, settings)? {
        Ask::Change(activity) => {
            let since = CmTimestamp::since(confirmation_window_start(activity.at, now), settings.zone());
            Some((activity, since))
        }
        Ask::Nothing(_) => None,
    })
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
                bounce_type: LIST_BOUNCE_TYPE.into(),
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

/// A write Salesforce refused at an address.
struct Refusal {
    transient: bool,
    why: String,
}

/// What happened at one address: the writes for its people, and what was kept with why.
#[derive(Default)]
struct AddressResult {
    written: Vec<&'static str>,
    refused: Vec<Refusal>,
    kept: Vec<String>,
    /// CM's list does not show the change yet, and it was posted less than a day ago.
    awaiting: bool,
}

impl AddressResult {
    /// The outcome of the events at this address.
    fn outcome(&self) -> EventOutcome {
        if self.awaiting {
            return EventOutcome::AwaitingConfirmation;
        }
        if let Some(refusal) = self.refused.iter().find(|r| r.transient) {
            return EventOutcome::Retry(refusal.why.clone());
        }
        if !self.refused.is_empty() {
            let why: Vec<&str> = self.refused.iter().map(|r| r.why.as_str()).collect();
            return EventOutcome::FailedForGood(mapping::email::redact_emails_in(&why.join("; ")));
        }
        if !self.written.is_empty() {
            return EventOutcome::Applied(self.written.join(", "));
        }
        if !self.kept.is_empty() {
            return EventOutcome::Applied(self.kept.join(", "));
        }
        EventOutcome::Applied("nothing to change".to_owned())
    }
}

/// The events of a batch sorted by what they ask.
#[derive(Default)]
struct Sorted {
    /// Decided already: nothing to write, or unreadable.
    done: Vec<WebhookEventRecord>,
    /// Unsubscribes and bounces to confirm and apply.
    changes: Vec<(WebhookEventRecord, Activity)>,
}

/// The webhook consumer: applies recorded batches.
#[derive(Debug)]
pub struct WebhookConsumer<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: WebhookEventStore + RunStore, P> WebhookConsumer<'e, S, P> {
    /// The consumer of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        WebhookConsumer { engine }
    }

    /// Applies a recorded batch of webhook events: every event not applied yet, at once. Each
    /// event ends Applied (with what changed, or why nothing did) or Failed (with Salesforce's
    /// code); one refused with a transient code stays to be retried, and the outcome says so
    /// ([`BatchOutcome::into_result`]). A batch whose events are all applied is finished.
    pub async fn apply(&self, settings: &Settings, batch: &str) -> Result<BatchOutcome, EngineError> {
        let mut outcome = BatchOutcome::default();
        let Some(pending) = self.engine.store.pending_webhook_batch(batch).await? else {
            return Ok(outcome); // finished before: a redelivered hand-off
        };
        if !pending.refused.is_empty() {
            self.record_refused(settings, &pending).await?;
            outcome.refused = pending.refused.len();
        }
        let list_id = pending.list_id.clone();
        let Sorted { mut done, changes } = sort(pending, settings, &mut outcome);
        let results = self.apply_changes(settings, &list_id, &changes, &mut outcome).await?;
        for (record, activity) in changes {
            let at = results.get(activity.email.as_str());
            let event_outcome = at.map_or(EventOutcome::Applied("nothing to change".to_owned()), |r| r.outcome());
            if let EventOutcome::Retry(why) = &event_outcome {
                outcome.retry_reason.get_or_insert_with(|| why.clone());
            }
            // Every try that does not apply the event counts toward MAX_WEBHOOK_ATTEMPTS.
            let tried = record.attempts.saturating_add(1);
            match event_outcome {
                EventOutcome::AwaitingConfirmation => outcome.awaiting_confirmation += 1, // stays Received
                event_outcome => match event_outcome.state() {
                    Some(state @ EventState::Failed { .. }) => done.push(WebhookEventRecord {
                        state,
                        attempts: tried,
                        ..record
                    }),
                    Some(state) => done.push(WebhookEventRecord { state, ..record }),
                    None => {
                        // Stays Received, to be retried; its try is counted.
                        outcome.to_retry += 1;
                        done.push(WebhookEventRecord {
                            attempts: tried,
                            ..record
                        });
                    }
                },
            }
        }
        self.save(batch, done, &mut outcome).await?;
        Ok(outcome)
    }

    /// Stores the events' states; a batch with nothing failed or left to retry is finished.
    async fn save(
        &self,
        batch: &str,
        mut done: Vec<WebhookEventRecord>,
        outcome: &mut BatchOutcome,
    ) -> Result<(), EngineError> {
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
        let exhausted = done
            .iter()
            .filter(|r| !matches!(r.state, EventState::Applied { .. }) && r.attempts >= MAX_WEBHOOK_ATTEMPTS)
            .count();
        self.engine.store.save_webhook_events(&done).await?;
        if outcome.failed == 0 && outcome.to_retry == 0 && outcome.awaiting_confirmation == 0 {
            self.engine.store.finish_webhook_batch(batch).await?;
        } else if exhausted > 0 {
            // Tried enough: no sweep re-drives it (a refusal that needs a person, or an outage
            // that outlasted hours of retries); `doctor` lists it, `replay` re-drives it.
            self.engine.store.park_webhook_batch(batch).await?;
            outcome.parked = exhausted;
            outcome.retry_reason = None;
            tracing::error!(
                alarm = ALARM_WEBHOOK_EVENTS_PARKED,
                batch,
                events = exhausted,
                attempts = MAX_WEBHOOK_ATTEMPTS,
                "webhook events not applied after every attempt wait for an admin: `cm-sf-admin doctor` lists them; fix the cause, then `cm-sf-admin replay`"
            );
        }
        if outcome.failed > 0 {
            tracing::error!(
                alarm = ALARM_WEBHOOK_EVENTS_FAILED,
                batch,
                failed = outcome.failed,
                "webhook events Salesforce refused for good: `cm-sf-admin runs` shows them"
            );
        }
        tracing::info!(
            batch,
            applied = outcome.applied,
            failed = outcome.failed,
            to_retry = outcome.to_retry,
            awaiting_confirmation = outcome.awaiting_confirmation,
            people = outcome.people_updated,
            "webhook batch applied"
        );
        Ok(())
    }

    /// Events the intake refused on their own are kept as a run of the list, each with its
    /// reason (never the event, which may hold an address): `cm-sf-admin runs` lists it. Written
    /// here, not by the intake, whose role writes webhook items only; once per batch, however
    /// often the hand-off is retried.
    async fn record_refused(&self, settings: &Settings, pending: &PendingBatch) -> Result<(), EngineError> {
        let counts = BTreeMap::from([
            ("recorded".to_owned(), pending.events.len() as u64),
            ("refused".to_owned(), pending.refused.len() as u64),
        ]);
        let failures: Vec<RunFailure> = pending
            .refused
            .iter()
            .map(|reason| {
                let event = reason.split_once(": ").map_or("webhook event", |(at, _)| at);
                RunFailure::new(&format!("webhook {event}"), reason, Some("WEBHOOK_EVENT_REFUSED"))
            })
            .collect();
        let run_id = report_run_id(pending.received_at, &pending.batch);
        let scope = Scope::WebhookList(&pending.list_id);
        Ok(record_report_once(self.engine.store.as_ref(), settings, &run_id, scope, counts, &failures).await?)
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
        let lists = Lists::new(self.engine);
        let since = CmTimestamp::since(confirmation_window_start(earliest, chrono::Utc::now()), settings.zone());
        let shown = lists.list_states_since(list_id, since).await?;
        let mut confirmed = Vec::new();
        let mut unconfirmed = Vec::new();
        let mut unconfirmed_events = Vec::new();
        for (record, activity) in changes {
            if shown
                .get(&activity.kind)
                .is_some_and(|emails| emails.contains(&activity.email))
            {
                confirmed.push(activity.clone());
                continue;
            }
            if chrono::Utc::now() - record.received_at < self.engine.options.webhook_confirm_for {
                results.entry(activity.email.clone()).or_default().awaiting = true;
                continue;
            }
            outcome.unconfirmed += 1;
            unconfirmed_events.push((record.dedupe_key.as_str(), record.received_at));
            let (kept, failure) = not_confirmed(record, activity);
            results.entry(activity.email.clone()).or_default().kept.push(kept);
            unconfirmed.push(failure);
        }
        self.report_unconfirmed(settings, list_id, &unconfirmed_events, &unconfirmed)
            .await?;
        let (plan, written) = lists.apply_list_changes(settings, &confirmed).await?;
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
                RecordOutcome::Failed(error) => at.refused.push(Refusal {
                    transient: salesforce::is_transient_code(&error.code),
                    why: format!("{}: {}", error.code, error.message),
                }),
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

    /// Opt-outs and bounces the list did not confirm, kept as a run of the list: once per
    /// closure, under a run id made from the events closed (a retried invocation closes the same
    /// ones and adds no second report).
    async fn report_unconfirmed(
        &self,
        settings: &Settings,
        list_id: &str,
        events: &[(&str, chrono::DateTime<chrono::Utc>)],
        unconfirmed: &[RunFailure],
    ) -> Result<(), EngineError> {
        let Some(latest) = events.iter().map(|(_, at)| *at).max() else {
            return Ok(());
        };
        let mut keys: Vec<&str> = events.iter().map(|(key, _)| *key).collect();
        keys.sort_unstable();
        let run_id = report_run_id(latest, &format!("unconfirmed\0{list_id}\0{}", keys.join("\0")));
        tracing::error!(
            alarm = ALARM_WEBHOOK_EVENTS_UNCONFIRMED,
            list = list_id,
            unconfirmed = unconfirmed.len(),
            "webhook opt-outs or bounces the list still does not show a day later were not applied"
        );
        let counts = BTreeMap::from([("not_confirmed".to_owned(), unconfirmed.len() as u64)]);
        let scope = Scope::WebhookList(list_id);
        Ok(record_report_once(
            self.engine.store.as_ref(),
            settings,
            &run_id,
            scope,
            counts,
            unconfirmed,
        )
        .await?)
    }
}

/// Where the read of a list's states to confirm events starts: a minute before the earliest
/// event (whether CM's `date` filter includes its own second is not documented, and an event
/// must not go unconfirmed for that), but never further back than events are kept: an event
/// dated years ago (forged, or a clock gone wrong) must not make each delivery read the list's
/// whole history. CM's list does not show such an event within the window, so it ends
/// unconfirmed; the list backstop applies whatever the list does show.
fn confirmation_window_start(
    earliest: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    (earliest - chrono::Duration::minutes(1)).max(now - chrono::Duration::days(super::EVENT_TTL_DAYS))
}

/// Each event not applied yet, by what it asks: nothing to write (decided now), or a change.
fn sort(pending: PendingBatch, settings: &Settings, outcome: &mut BatchOutcome) -> Sorted {
    let mut sorted = Sorted::default();
    for record in pending.events {
        if matches!(record.state, EventState::Applied { .. }) {
            outcome.already_applied += 1;
            continue;
        }
        match ask_of_record(&record, settings) {
            Ok(Ask::Change(activity)) => sorted.changes.push((record, activity)),
            Ok(Ask::Nothing(note)) => sorted.done.push(WebhookEventRecord {
                state: EventState::Applied { outcome: note },
                ..record
            }),
            Err(reason) => sorted.done.push(WebhookEventRecord {
                state: EventState::Failed { reason },
                attempts: record.attempts.saturating_add(1),
                ..record
            }),
        }
    }
    sorted
}

/// Why an unsubscribe or bounce the list does not show is not applied: the note kept on the
/// event, and the failure reported for the person.
fn not_confirmed(record: &WebhookEventRecord, activity: &Activity) -> (String, RunFailure) {
    let what = if activity.kind == ActivityKind::Bounced {
        "bounced"
    } else {
        "unsubscribed"
    };
    let kept =
        format!("not applied: Campaign Monitor's list does not show the address {what} (a forged or outdated post)");
    let failure = RunFailure {
        person: Some(mapping::email::person_key(&activity.email)),
        ..RunFailure::new(
            &format!("webhook event {}", record.dedupe_key),
            &format!(
                "{} not applied: Campaign Monitor's list does not show it {what} (a forged or outdated post)",
                mapping::email::redact_email(&activity.email)
            ),
            Some("WEBHOOK_NOT_CONFIRMED"),
        )
    };
    (kept, failure)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_confirmation_read_starts_a_minute_early_but_never_before_events_are_kept() {
        let now: chrono::DateTime<chrono::Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let recent = now - chrono::Duration::hours(3);
        assert_eq!(
            confirmation_window_start(recent, now),
            recent - chrono::Duration::minutes(1)
        );
        let ancient: chrono::DateTime<chrono::Utc> = "1970-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            confirmation_window_start(ancient, now),
            now - chrono::Duration::days(crate::webhook::EVENT_TTL_DAYS),
            "not the list's whole history"
        );
    }
}
