//! The run record's life: started (or continued), handed over to a new invocation near the
//! deadline, and committed with the watermarks once everything below them is applied.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use events::Event;
use events::publisher::EventSink;
use mapping::cadence::next_sync;
use state::{FailedRecord, RunCommit, RunRecord, RunStart, RunStatus, Scope};

use super::{
    CampaignOutcome, CampaignRun, CampaignStore, CampaignSync, MAX_CONTINUATIONS, MAX_STALLED_HAND_OVERS, Mode,
    RunCounts,
};
use crate::core::{EngineError, publish};

/// Runs in a row a person's write may fail with a transient error, holding the campaign's
/// watermarks, before the person goes to the retry queue and the watermarks move on.
pub const TRANSIENT_ATTEMPTS: u32 = 3;

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Records the run's start; a continuation (or a retry) takes its record over, with what
    /// the invocations before it finished. A run handed over more than [`MAX_CONTINUATIONS`]
    /// times, or [`MAX_STALLED_HAND_OVERS`] times in a row without finishing a part, is stopped
    /// as making no progress.
    pub(super) async fn start(&self, run: &mut CampaignRun<'_>) -> Result<(), EngineError> {
        let Mode::Apply { continuation } = run.mode else {
            return Ok(());
        };
        let started = self
            .engine
            .store
            .start_run(&RunRecord {
                run_id: run.record_id.clone(),
                scope: run.cm_id().to_owned(),
                started_at: Utc::now(),
                ended_at: None,
                status: RunStatus::Running,
                counts: BTreeMap::new(),
                failure_count: 0,
                resumed_at: None,
                expires_at: Some(run.settings.run_expires_at(Utc::now())),
            })
            .await?;
        if started == RunStart::New {
            return Ok(());
        }
        let resumed = self.engine.store.resume_run(&run.record_id, Utc::now()).await?;
        let stalled = resumed.as_ref().map_or(0, |c| c.stalled);
        if continuation > MAX_CONTINUATIONS || stalled >= MAX_STALLED_HAND_OVERS {
            // Recorded as failed, with this error, by `sync_campaign`.
            return Err(EngineError::NoProgress {
                run_id: run.record_id.clone(),
                continuations: continuation,
            });
        }
        if let Some(checkpoint) = resumed {
            run.counts = RunCounts::from_map(&checkpoint.counts);
            run.transient_people = checkpoint.transient_people.iter().cloned().collect();
            run.transient_failures = checkpoint.transient_other;
            run.parts_done = checkpoint.parts_done;
            run.resumed = Some(checkpoint);
        }
        Ok(())
    }

    /// Hands the rest of the run to a new invocation (none for a dry run), with what is done:
    /// the parts applied are not applied again.
    pub(super) async fn continue_later(&self, run: &CampaignRun<'_>) -> Result<CampaignOutcome, EngineError> {
        if let Mode::Apply { continuation } = run.mode {
            let checkpoint = run.checkpoint();
            // Recorded before the continuation is asked for, so it finds it.
            self.engine
                .store
                .hand_over_run(&run.record_id, Utc::now(), &checkpoint)
                .await?;
            publish(
                &self.engine.publisher,
                &[Event::sync_continuation(&run.run_id, run.cm_id(), continuation + 1)],
            )
            .await?;
        }
        tracing::info!(
            campaign = run.cm_id(),
            parts_done = run.parts_done,
            parts = run.part_count,
            "deadline near: continuing in a new invocation"
        );
        Ok(CampaignOutcome::Continued {
            run_id: run.run_id.clone(),
        })
    }

    /// Moves the watermarks (unless a failure was transient: then the work is read again, up
    /// to [`TRANSIENT_ATTEMPTS`] times per person), consumes the retry queue and closes the run
    /// record.
    pub(super) async fn commit(&self, run: CampaignRun<'_>) -> Result<CampaignOutcome, EngineError> {
        if run.mode.is_dry_run() {
            return Ok(CampaignOutcome::Done {
                run_id: run.record_id,
                counts: run.counts,
                plan: Box::new(run.total),
                dry_run: true,
            });
        }
        let next_sync = run.cm_now.map(|now| {
            next_sync(
                &run.settings.sync_cadence,
                run.cadence_sent_at,
                now,
                run.found_new,
                run.settings.zone(),
            )
        });
        let cm_id = run.cm_id();
        // One more attempt is what a retry asks for: whoever failed again for good is in this
        // run's failures, to be retried again by hand if the cause is fixed. Whoever failed
        // again for a reason that passes (a record still locked) stays queued: the watermarks
        // have moved past their older activity, which only the queue reads again.
        let retried_done: Vec<String> = run
            .retried
            .iter()
            .filter(|person| !run.transient_people.contains(*person))
            .cloned()
            .collect();
        if !retried_done.is_empty() {
            self.engine.store.remove_failed(cm_id, &retried_done).await?;
        }
        let hold_watermarks = self.count_transient_failures(&run).await? || run.transient_failures;
        let status = if run.counts.failed == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::CompletedWithFailures
        };
        let mut progress = run.next_progress.clone();
        if hold_watermarks {
            // The watermarks stay, so the counts of what the overlap read again stay too: a
            // quarter-hour this run applied again and failed to write must not pass for applied.
            progress.recent = run.progress.recent.clone();
            progress.recipients_from_page = run.progress.recipients_from_page;
        }
        let commit = RunCommit {
            scope: Scope::Campaign(cm_id).key(),
            // A transient failure keeps the watermarks, so the work is read again.
            watermarks: if hold_watermarks {
                BTreeMap::new()
            } else {
                forward_only(&run.watermarks, &run.next_watermarks)
            },
            run_id: run.record_id.clone(),
            ended_at: Utc::now(),
            status,
            counts: run.counts.to_map(),
            progress: Some(progress),
            next_sync,
        };
        let Some(lease) = &run.lease else {
            return Err(EngineError::Invalid("a run that writes commits under its lease".into()));
        };
        if !self.engine.store.commit_under_lease(lease, &commit).await? {
            tracing::warn!(run = %run.record_id, campaign = cm_id, "lease lost before the commit; the next run reads this activity again");
            return Ok(CampaignOutcome::LeaseLost { run_id: run.record_id });
        }
        if run.counts.streams_read_in_part > 0 {
            // The rest of a read too long for one invocation: the next run goes on at once,
            // from the watermarks (and recipients' page) just committed.
            let next = crate::report::new_run_id();
            publish(
                &self.engine.publisher,
                &[Event::sync_requested(&next, Some(cm_id), false, "read-in-part")],
            )
            .await?;
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

    /// Counts, per person, the runs in a row whose write failed with a transient error. Whether
    /// the watermarks must stay: someone failed fewer than [`TRANSIENT_ATTEMPTS`] times. People
    /// at the limit go to the retry queue (the next run reads their whole activity again), so
    /// one record that keeps failing never holds a campaign back; people who no longer fail are
    /// forgotten.
    async fn count_transient_failures(&self, run: &CampaignRun<'_>) -> Result<bool, EngineError> {
        let cm_id = run.cm_id();
        let scope = Scope::Transient(cm_id).key();
        let before: BTreeMap<String, FailedRecord> = self
            .engine
            .store
            .failed_records(&scope, 10_000)
            .await?
            .into_iter()
            .map(|record| (record.key.clone(), record))
            .collect();
        let recovered: Vec<String> = before
            .keys()
            .filter(|person| !run.transient_people.contains(*person))
            .cloned()
            .collect();
        let now = Utc::now();
        let (mut waiting, mut escalated) = (Vec::new(), Vec::new());
        for person in &run.transient_people {
            let earlier = before.get(person);
            let record = FailedRecord {
                scope: scope.clone(),
                key: person.clone(),
                payload: serde_json::json!({"run_id": run.record_id, "code": "TRANSIENT"}),
                reason: "a transient Salesforce error, still after the retries".to_owned(),
                attempts: earlier.map_or(1, |r| r.attempts + 1),
                first_failed_at: earlier.map_or(now, |r| r.first_failed_at),
            };
            if record.attempts >= TRANSIENT_ATTEMPTS {
                escalated.push(FailedRecord {
                    scope: Scope::Campaign(cm_id).key(),
                    ..record
                });
            } else {
                waiting.push(record);
            }
        }
        let done: Vec<String> = recovered
            .into_iter()
            .chain(escalated.iter().map(|r| r.key.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !done.is_empty() {
            self.engine.store.remove_failed(&scope, &done).await?;
        }
        if !escalated.is_empty() {
            tracing::warn!(
                campaign = cm_id,
                people = escalated.len(),
                "people still failing after {TRANSIENT_ATTEMPTS} runs go to the retry queue; the watermarks move on"
            );
            self.engine.store.enqueue_failed(&escalated).await?;
        }
        if !waiting.is_empty() {
            self.engine.store.enqueue_failed(&waiting).await?;
        }
        Ok(!waiting.is_empty())
    }
}

/// The watermarks to commit, none moved back: a continuation that commits late (after a newer
/// run of the campaign committed further) keeps the newer ones. `current` are those the run
/// read under its lease, so no other run wrote them since.
fn forward_only(
    current: &BTreeMap<String, chrono::DateTime<Utc>>,
    next: &BTreeMap<String, chrono::DateTime<Utc>>,
) -> BTreeMap<String, chrono::DateTime<Utc>> {
    next.iter()
        .map(|(stream, at)| (stream.clone(), current.get(stream).map_or(*at, |now| (*now).max(*at))))
        .collect()
}
