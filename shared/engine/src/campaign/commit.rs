//! The run record's life: started (or continued), handed over to a new invocation near the
//! deadline, and committed with the watermarks once everything below them is applied.

use std::collections::BTreeMap;

use chrono::Utc;
use events::Event;
use events::publisher::EventSink;
use state::{RunCommit, RunRecord, RunStart, RunStatus, Store};

use super::{CampaignOutcome, CampaignRun, MAX_CONTINUATIONS, Mode};
use crate::{Engine, EngineError};

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Records the run's start (a continuation finds its record already there). A run handed
    /// over more than [`MAX_CONTINUATIONS`] times is stopped as making no progress.
    pub(super) async fn start(&self, run: &mut CampaignRun<'_>) -> Result<(), EngineError> {
        let Mode::Apply { continuation } = run.mode else {
            return Ok(());
        };
        let started = self
            .store
            .start_run(&RunRecord {
                run_id: run.record_id.clone(),
                scope: run.cm_id().to_owned(),
                started_at: Utc::now(),
                ended_at: None,
                status: RunStatus::Running,
                counts: BTreeMap::new(),
                failure_count: 0,
            })
            .await?;
        if started == RunStart::Continued && continuation > MAX_CONTINUATIONS {
            // Recorded as failed, with this error, by `sync_campaign`.
            return Err(EngineError::NoProgress {
                run_id: run.record_id.clone(),
                continuations: continuation,
            });
        }
        Ok(())
    }

    /// Hands the rest of the run to a new invocation (none for a dry run).
    pub(super) async fn continue_later(&self, run: &CampaignRun<'_>) -> Result<CampaignOutcome, EngineError> {
        if let Mode::Apply { continuation } = run.mode {
            self.publish(&[Event::sync_continuation(&run.run_id, run.cm_id(), continuation + 1)])
                .await?;
            self.store
                .finish_run(&run.record_id, Utc::now(), RunStatus::Continued, &BTreeMap::new())
                .await?;
        }
        tracing::info!(campaign = run.cm_id(), "deadline near: continuing in a new invocation");
        Ok(CampaignOutcome::Continued {
            run_id: run.run_id.clone(),
        })
    }

    /// Moves the watermarks (unless a failure was transient: then the work is read again),
    /// consumes the retry queue and closes the run record.
    pub(super) async fn commit(&self, run: CampaignRun<'_>) -> Result<CampaignOutcome, EngineError> {
        if run.mode.is_dry_run() {
            return Ok(CampaignOutcome::Done {
                run_id: run.record_id,
                counts: run.counts,
                plan: Box::new(run.total),
                dry_run: true,
            });
        }
        let cm_id = run.cm_id();
        // One more attempt is what a retry asks for: whoever failed again is in this run's
        // failures, to be retried again by hand if the cause is fixed.
        if !run.retried.is_empty() {
            self.store.remove_failed(cm_id, &run.retried).await?;
        }
        let status = if run.counts.failed == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::CompletedWithFailures
        };
        let commit = RunCommit {
            scope: cm_id.to_owned(),
            // A transient failure keeps the watermarks, so the work is read again.
            watermarks: if run.transient_failures {
                BTreeMap::new()
            } else {
                run.next_watermarks.clone()
            },
            run_id: run.record_id.clone(),
            ended_at: Utc::now(),
            status,
            counts: run.counts.to_map(),
        };
        let Some(lease) = &run.lease else {
            return Err(EngineError::Invalid("a run that writes commits under its lease".into()));
        };
        if !self.store.commit_under_lease(lease, &commit).await? {
            tracing::warn!(run = %run.record_id, campaign = cm_id, "lease lost before the commit; the next run reads this activity again");
            return Ok(CampaignOutcome::LeaseLost { run_id: run.record_id });
        }
        // `failed` is a number of its own: the template's metric filter counts runs with failures.
        tracing::info!(campaign = cm_id, failed = run.counts.failed, parts = run.part_count, counts = ?run.counts, "campaign synced");
        Ok(CampaignOutcome::Done {
            run_id: run.record_id,
            counts: run.counts,
            plan: Box::new(run.total),
            dry_run: false,
        })
    }
}
