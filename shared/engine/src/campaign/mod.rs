//! One linked campaign's sync, [`CampaignSync`], as a pipeline of named stages over a
//! `CampaignRun` (PRODUCT.md §5): `start` the run record, `read` what changed in CM (and
//! `retried`: the people queued for another attempt), `split` it into parts, then part by part
//! `plan` it against what Salesforce holds and `apply` the plan, and finally `commit` the
//! watermarks and the run record (no CM call: everything it needs was read before the writes).
//! Each stage is a short method in a file of that name; this one only strings them together.

mod apply;
mod commit;
mod counts;
mod plan;
mod read;
mod retried;
mod run;
mod sent;

use chrono::Utc;
use events::publisher::EventSink;
use mapping::Settings;
use mapping::plan::CampaignPlan;
use serde::Serialize;
use state::{LeaseStore, LinkStore, RetryQueue, RunStore, Scope, WatermarkStore};

pub use apply::MATCH_CHOICE;
pub use commit::TRANSIENT_ATTEMPTS;
pub use counts::RunCounts;
use run::CampaignRun;

use crate::core::{Deadline, Engine, EngineError, lease_owner, lease_span};

/// What a campaign sync keeps in the state table: the link, its lease, its run record, its
/// watermarks and progress, and its retry queue.
pub trait CampaignStore: LinkStore + LeaseStore + RunStore + WatermarkStore + RetryQueue {}

impl<T: LinkStore + LeaseStore + RunStore + WatermarkStore + RetryQueue> CampaignStore for T {}

/// One linked campaign's sync.
#[derive(Debug)]
pub struct CampaignSync<'e, S, P> {
    engine: &'e Engine<S, P>,
}

/// Continuations of one campaign's run before it is stopped as making no progress.
pub const MAX_CONTINUATIONS: u32 = 20;

/// Hand-overs in a row that finished no part before a run is stopped as making no progress.
pub const MAX_STALLED_HAND_OVERS: u32 = 3;

/// Whether a sync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compute and return the plan; write nothing anywhere (no lease, watermark, run record or
    /// SF write).
    DryRun,
    /// Apply the plan. `continuation` counts the invocations this run was handed over before
    /// (0 for a new run); past [`MAX_CONTINUATIONS`] the run stops as making no progress.
    Apply {
        /// Hand-overs so far.
        continuation: u32,
    },
}

impl Mode {
    /// A new run that writes.
    pub const APPLY: Mode = Mode::Apply { continuation: 0 };

    /// Whether this is a dry run.
    pub fn is_dry_run(self) -> bool {
        self == Mode::DryRun
    }
}

/// How a campaign sync ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CampaignOutcome {
    /// Applied (or planned, for a dry run).
    Done {
        /// The run record id.
        run_id: String,
        /// Counters.
        counts: RunCounts,
        /// The plan (always returned; a dry run writes nothing else).
        plan: Box<CampaignPlan>,
        /// Dry run.
        dry_run: bool,
    },
    /// Another run holds the campaign's lease; this one did nothing.
    Busy,
    /// The campaign is not linked.
    NotLinked,
    /// The deadline came first; a continuation event was published.
    Continued {
        /// The run.
        run_id: String,
    },
    /// The lease expired and was taken before this invocation committed: nothing was
    /// committed, and the next run reads the same activity again (applying it changes nothing).
    LeaseLost {
        /// The run.
        run_id: String,
    },
}

impl CampaignOutcome {
    /// What a function returns for it: the outcome and its counts, never the plan (whose member
    /// rows carry addresses and grow with the campaign; Lambda caps a response at 6 MB).
    pub fn summary(&self) -> serde_json::Value {
        match self {
            CampaignOutcome::Done {
                run_id,
                counts,
                dry_run,
                ..
            } => serde_json::json!({"outcome": "done", "run_id": run_id, "counts": counts, "dry_run": dry_run}),
            other => serde_json::to_value(other).unwrap_or_default(),
        }
    }
}

impl<'e, S, P> CampaignSync<'e, S, P> {
    /// The campaign sync of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        CampaignSync { engine }
    }
}

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Syncs one linked campaign under its lease (none for a dry run).
    pub async fn sync(
        &self,
        settings: &Settings,
        cm_campaign_id: &str,
        run_id: &str,
        mode: Mode,
        deadline: Deadline,
    ) -> Result<CampaignOutcome, EngineError> {
        let Some(link) = self.engine.store.link(cm_campaign_id).await? else {
            return Ok(CampaignOutcome::NotLinked);
        };
        if mode.is_dry_run() {
            return self
                .run_pipeline(CampaignRun::new(settings, &link, run_id, mode), deadline)
                .await;
        }
        // The owner is this invocation, not the run: the same event delivered twice at once
        // runs once (the other finds the lease held), and commits are fenced by it.
        let scope = Scope::CampaignLease(cm_campaign_id).key();
        let owner = lease_owner(run_id);
        let now = Utc::now();
        let until = now + lease_span(&self.engine.options);
        let Some(lease) = self.engine.store.acquire_lease(&scope, &owner, now, until).await? else {
            if let Mode::Apply { continuation } = mode
                && continuation > 0
            {
                // The rest of a run must not be dropped: the trigger retries it after the other.
                return Err(EngineError::RetryLater {
                    reason: format!("campaign {cm_campaign_id} is being synced by another invocation"),
                });
            }
            tracing::info!(
                campaign = cm_campaign_id,
                "another invocation holds this campaign; skipping"
            );
            return Ok(CampaignOutcome::Busy);
        };
        let mut run = CampaignRun::new(settings, &link, run_id, mode);
        run.lease = Some(lease);
        let result = self.run_pipeline(run, deadline).await;
        if let Err(error) = &result {
            self.record_failed_run(run_id, cm_campaign_id, error).await;
        }
        self.engine.store.release_lease(&scope, &owner).await?;
        result
    }

    /// A run that stopped on an error ends recorded as failed, with the error, and is logged
    /// once at ERROR with its run and campaign. A retry or a replay of the same event continues
    /// the same run record.
    async fn record_failed_run(&self, run_id: &str, cm_campaign_id: &str, error: &EngineError) {
        let record_id = format!("{run_id}:{cm_campaign_id}");
        tracing::error!(run = %record_id, campaign = cm_campaign_id, retryable = error.is_retryable(), error = %crate::core::redacted(&error), "campaign sync failed");
        let failure = state::RunFailure::new("run", &error.to_string(), Some(error.run_failure_code()));
        let recorded = async {
            self.engine.store.add_run_failures(&record_id, &[failure]).await?;
            self.engine
                .store
                .finish_run(&record_id, Utc::now(), state::RunStatus::Failed, &Default::default())
                .await
        };
        if let Err(store_error) = recorded.await {
            // The run record may not exist (the error came before it was written).
            tracing::warn!(run = %record_id, error = %store_error, "the failed run could not be recorded");
        }
    }

    /// A dry run of a campaign that may be linked only on the SF side so far.
    pub async fn plan_dry(
        &self,
        settings: &Settings,
        cm_campaign_id: &str,
        sf_campaign_id: &str,
        run_id: &str,
    ) -> Result<CampaignOutcome, EngineError> {
        let link = state::LinkRecord {
            cm_campaign_id: cm_campaign_id.to_owned(),
            sf_campaign_id: sf_campaign_id.to_owned(),
            origin: events::LinkOrigin::FoundInSalesforce,
            linked_at: Utc::now(),
        };
        self.run_pipeline(
            CampaignRun::new(settings, &link, run_id, Mode::DryRun),
            Deadline::none(),
        )
        .await
    }

    /// start → read changes → read retried → the sent date → split → (plan a part → apply a
    /// part)* → commit. The deadline is watched while reading and between parts; a
    /// continuation starts after the parts done.
    async fn run_pipeline(&self, mut run: CampaignRun<'_>, deadline: Deadline) -> Result<CampaignOutcome, EngineError> {
        self.start(&mut run).await?;
        let Some(mut spool) = self.read_changes(&mut run, &deadline).await? else {
            return self.continue_later(&run).await;
        };
        if !self.read_retried(&mut run, &mut spool, &deadline).await? {
            return self.continue_later(&run).await;
        }
        if !run.mode.is_dry_run() {
            // Read before any write: the commit makes no CM call.
            run.cadence_sent_at = self.sent_at_for_cadence(&mut run).await?;
        }
        let mut parts = self.split_parts(&mut run, spool)?;
        if deadline.passed() {
            return self.continue_later(&run).await;
        }
        let mut next = parts.next_part()?;
        let mut planned_ahead = None;
        while let Some(activities) = next.take() {
            let plan = match planned_ahead.take() {
                Some(planned) => planned?,
                None => self.plan_part(&mut run, &activities).await?,
            };
            drop(activities);
            next = parts.next_part()?;
            if run.mode.is_dry_run() {
                run.absorb_planned(plan);
                continue;
            }
            if deadline.passed() {
                // Parts already applied are re-applied by the continuation, changing nothing.
                return self.continue_later(&run).await;
            }
            // The next part is planned while this one is written: parts hold different people
            // (`spool`), so its reads see nothing this part writes, except the statuses this
            // part creates: those are written first, and read again by the next part's plan.
            let creates_statuses = !plan.statuses.create.is_empty() || !plan.statuses.correct.is_empty();
            let settings = run.settings;
            let record_id = run.record_id.clone();
            let written = match next.as_ref() {
                Some(upcoming) => {
                    let statuses_written = if creates_statuses {
                        let written = self.write_statuses(&plan).await?;
                        run.statuses = None;
                        Some(written)
                    } else {
                        None
                    };
                    let (written, planned) = futures::join!(
                        self.write_part(settings, &record_id, &plan, statuses_written),
                        self.plan_part(&mut run, upcoming)
                    );
                    planned_ahead = Some(planned);
                    written?
                }
                None => self.write_part(settings, &record_id, &plan, None).await?,
            };
            self.take_written(&mut run, plan, written);
            run.parts_done += 1;
        }
        self.commit(run).await
    }
}
