//! Stage `housekeeping`: what keeps opt-outs and webhooks flowing whatever the campaigns do
//! (the list backstop, the daily webhook check, pending webhook batches handed on again), and
//! runs whose invocation died recorded as abandoned.

use chrono::Utc;
use events::Event;
use events::publisher::EventSink;
use mapping::Settings;
use state::{Clock, ClockStore, EventState, RunFailure, RunStatus, Store};

use super::{DiscoveryOutcome, Tick};
use crate::core::{EngineError, lease_span};
use crate::lists::Lists;
use crate::webhook::WebhookHealth;

/// Pending webhook batches one scheduled run sweeps at most.
const WEBHOOK_SWEEP_BATCHES: usize = 200;

/// The `alarm` a webhook sweep or check failure is logged with.
pub const ALARM_WEBHOOK_SWEEP_FAILED: &str = "WebhookSweepFailed";
/// The `alarm` a run recorded as abandoned is logged with.
pub const ALARM_RUN_ABANDONED: &str = "RunAbandoned";

impl<S: Store, P: EventSink> Tick<'_, S, P> {
    /// CM's lists are the source of truth: their opt-outs and bounces reach Salesforce even
    /// when no webhook posts them, whatever else the run did. Each part runs on its own: one
    /// that fails is logged as an alarm and made again at the next run, and holds back neither
    /// the others nor the campaigns. The webhook batches to hand on again.
    pub(super) async fn housekeeping(&self, settings: &Settings, outcome: &mut DiscoveryOutcome) -> Vec<Event> {
        if let Err(error) = self.mark_abandoned_runs().await {
            tracing::error!(alarm = ALARM_RUN_ABANDONED, error = %crate::core::redacted(&error), "abandoned runs could not be checked; checked again next run");
        }
        match Lists::new(self.engine).backstop(settings).await {
            Ok(lists) => outcome.list_people_updated = lists.iter().map(|l| l.people_updated).sum(),
            Err(error) => {
                tracing::error!(alarm = crate::lists::ALARM_BACKSTOP_FAILED, error = %crate::core::redacted(&error), retryable = error.is_retryable(), "list backstop failed; read again next run")
            }
        }
        match WebhookHealth::new(self.engine).check(settings).await {
            Ok(Some(inactive)) => outcome.inactive_webhooks = Some(inactive.len()),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(alarm = ALARM_WEBHOOK_SWEEP_FAILED, error = %crate::core::redacted(&error), "webhook check failed; made again next run")
            }
        }
        match self.sweep_webhook_batches().await {
            Ok(swept) => {
                outcome.webhook_batches_swept = swept.len();
                swept
            }
            Err(error) => {
                tracing::error!(alarm = ALARM_WEBHOOK_SWEEP_FAILED, error = %crate::core::redacted(&error), "pending webhook batches could not be swept; swept again next run");
                Vec::new()
            }
        }
    }

    /// Runs still `Running` a whole lease span after their invocation started or took them
    /// over died with it (a timeout or a crash), and runs handed over that long ago that no
    /// continuation took: no commit can come from them any more (commits are fenced by the
    /// lease), so they are recorded as abandoned, with why. Their campaigns' next syncs continue
    /// from the last commit.
    pub(super) async fn mark_abandoned_runs(&self) -> Result<(), EngineError> {
        let now = Utc::now();
        let span = lease_span(&self.engine.options);
        for run in self.engine.store.unfinished_runs().await? {
            let last_alive = match run.status {
                RunStatus::Running => run.resumed_at.unwrap_or(run.started_at),
                RunStatus::Continued => run.ended_at.unwrap_or(run.started_at),
                _ => continue,
            };
            if last_alive + span >= now {
                continue;
            }
            tracing::error!(alarm = ALARM_RUN_ABANDONED, run = %run.run_id, campaign = %run.scope, "run abandoned: its invocation stopped before finishing");
            let why = RunFailure::new(
                "run",
                "abandoned: its invocation stopped before finishing (a timeout or a crash); the next sync continues from the last commit",
                Some("ABANDONED"),
            );
            self.engine.store.add_run_failures(&run.run_id, &[why]).await?;
            self.engine
                .store
                .finish_run(&run.run_id, now, RunStatus::Abandoned, &run.counts)
                .await?;
        }
        Ok(())
    }

    /// Webhook batches still pending a while after they were recorded (their hand-off lost, or
    /// an event failed for a reason an admin has fixed since: credentials, limits, a validation
    /// rule): handed on again. Applying an event twice changes nothing.
    async fn sweep_webhook_batches(&self) -> Result<Vec<Event>, EngineError> {
        let settled = Utc::now() - self.engine.options.webhook_sweep_after;
        let store = &self.engine.store;
        // From where the last sweep stopped, so batches failing again and again at the head of
        // the list never hide newer ones: every batch is reached within a few sweeps.
        let cursor = store.last_done(Clock::WebhookSweep).await?;
        let after = cursor.map(sweep_cursor_id);
        let batches = store
            .pending_webhook_batches(after.as_deref(), WEBHOOK_SWEEP_BATCHES)
            .await?;
        match batches.last() {
            Some(last) if batches.len() == WEBHOOK_SWEEP_BATCHES => {
                store.mark_done(Clock::WebhookSweep, last.received_at).await?;
            }
            // The end of the list: the next sweep starts again from the oldest.
            _ if cursor.is_some() => {
                store.reset_watermarks(&Clock::WebhookSweep.scope().key()).await?;
            }
            _ => {}
        }
        Ok(batches
            .into_iter()
            .filter(|batch| batch.received_at < settled)
            .filter_map(|batch| {
                let unapplied = batch
                    .events
                    .iter()
                    .filter(|e| !matches!(e.state, EventState::Applied { .. }))
                    .count();
                (unapplied > 0)
                    .then(|| Event::webhook_batch_received(&batch.batch, &batch.list_id, unapplied, batch.received_at))
            })
            .collect())
    }
}

/// The batch id a sweep cursor at `at` goes on after: every id of that millisecond (batch ids
/// are `<receipt time, RFC 3339 ms>#<16 hex>`, and `~` sorts after any hex digit).
fn sweep_cursor_id(at: chrono::DateTime<Utc>) -> String {
    format!("{}#~", at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}
