//! The scheduled run, [`Tick`]: under the discovery lease, `discover` the CM campaigns,
//! `reconcile` the links admins made in Salesforce, hand new campaigns to auto-creation, pick
//! the linked campaigns that are `due` and `fan_out` one sync request each, then the
//! `housekeeping` of opt-outs and webhooks (the list backstop, the webhook check and sweep,
//! abandoned runs). The hot schedule's run ([`Tick::run_hot`]) requests young campaigns' syncs.

mod due;
mod housekeeping;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use events::Event;
use events::publisher::EventSink;
use mapping::Settings;
use mapping::autocreate::DiscoveredCampaign;
use mapping::plan::{CampaignNotCreated, CampaignToCreate};
use mapping::plan::{SyncPlan, plan_discovery};
use serde::Serialize;
use state::{LeaseStore, Scope, Store};

use crate::campaign::{CampaignOutcome, CampaignSync, Mode};
use crate::core::{Engine, EngineError, lease_owner, lease_span, link_map, publish};
use crate::discovery::{CatalogRefresh, discover};
use crate::report::record_scheduled_run;

pub use due::HotRunOutcome;

/// What a scheduled run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryOutcome {
    /// The run.
    pub run_id: String,
    /// CM campaigns found.
    pub discovered: usize,
    /// Links found on SF Campaigns and stored.
    pub links_found: usize,
    /// Link field values that name no campaign of a configured client: reported, not used.
    #[serde(default)]
    pub links_refused: usize,
    /// Campaigns handed to auto-creation.
    pub to_create: usize,
    /// Campaigns whose creation Salesforce refused before: left alone until an admin asks.
    pub creation_refused: usize,
    /// Pending webhook batches handed on again.
    pub webhook_batches_swept: usize,
    /// Leads and Contacts the list backstop opted out or marked bounced.
    pub list_people_updated: usize,
    /// Webhooks CM deactivated, when the day's webhook check ran.
    pub inactive_webhooks: Option<usize>,
    /// Sync requests published (one per linked campaign that is due).
    pub syncs_requested: usize,
    /// Linked campaigns not due at this run (their cadence syncs them later, or they are
    /// retired: `cm-sf-admin sync --campaign` syncs one on demand).
    #[serde(default)]
    pub syncs_not_due: usize,
    /// Of the syncs requested: retired campaigns whose daily check found new activity.
    #[serde(default)]
    pub active_again: usize,
    /// For a dry run: the whole plan, campaign by campaign.
    pub plan: Option<SyncPlan>,
    /// For a dry run: the plan as a short readable report.
    pub report: Option<String>,
    /// Another run held the lease.
    pub busy: bool,
}

impl DiscoveryOutcome {
    /// Its counts, as a run record keeps them (the nonzero ones).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        [
            ("campaigns_discovered", self.discovered),
            ("links_found", self.links_found),
            ("links_refused", self.links_refused),
            ("campaigns_to_create", self.to_create),
            ("creations_refused", self.creation_refused),
            ("syncs_requested", self.syncs_requested),
            ("syncs_not_due", self.syncs_not_due),
            ("retired_active_again", self.active_again),
            ("webhook_batches_swept", self.webhook_batches_swept),
            ("list_people_updated", self.list_people_updated),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| (name.to_owned(), n as u64))
        .collect()
    }

    /// What a function returns for it: the counts, and a dry run's redacted report, never the
    /// plan itself (its member rows carry addresses; Lambda caps a response at 6 MB).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::to_value(DiscoveryOutcome {
            plan: None,
            ..self.clone()
        })
        .unwrap_or_default()
    }
}

/// What discovery found: the campaigns, every link, and what auto-creation gets.
struct Found {
    outcome: DiscoveryOutcome,
    links: BTreeMap<String, String>,
    to_create: Vec<CampaignToCreate>,
    not_created: Vec<CampaignNotCreated>,
}

/// The scheduled run (and the hot schedule's).
#[derive(Debug)]
pub struct Tick<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S, P> Tick<'e, S, P> {
    /// The scheduled run of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        Tick { engine }
    }
}

/// The `alarm` a scheduled run skipped because another held its lease is logged with.
pub const ALARM_SCHEDULED_RUN_SKIPPED: &str = "ScheduledRunSkipped";

/// The leases: one scheduled run at a time, and one hot run at a time, apart.
impl<S: LeaseStore, P> Tick<'_, S, P> {
    /// `work` under the lease `scope`; `None` when another run holds it. The lease is released
    /// whatever `work` returns.
    async fn under_lease<T>(
        &self,
        scope: Scope<'_>,
        run_id: &str,
        work: impl AsyncFnOnce() -> Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        let owner = lease_owner(run_id);
        let scope = scope.key();
        let now = Utc::now();
        let until = now + lease_span(&self.engine.options);
        if self
            .engine
            .store
            .acquire_lease(&scope, &owner, now, until)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let result = work().await;
        self.engine.store.release_lease(&scope, &owner).await?;
        result.map(Some)
    }
}

impl<S: Store, P: EventSink> Tick<'_, S, P> {
    /// The scheduled run, under its lease: links found, new campaigns handed to auto-creation,
    /// one sync requested per linked campaign that is due; and the housekeeping of opt-outs
    /// and webhooks, whatever discovery did (a discovery that failed is returned after it, for
    /// the trigger to retry). Another scheduled run holding the lease makes this one `busy`,
    /// logged as an alarm: the trigger retries it.
    pub async fn run(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        let started_at = Utc::now();
        let outcome = self
            .under_lease(Scope::Discovery, run_id, async || {
                let mut outcome = DiscoveryOutcome {
                    run_id: run_id.to_owned(),
                    ..DiscoveryOutcome::default()
                };
                let mut events = Vec::new();
                let discovered = match self.discover_and_link(settings, run_id, Mode::APPLY).await {
                    Ok(found) => self.due_and_fan_out(settings, run_id, found, &mut outcome).await,
                    Err(error) => Err(error),
                };
                if let Ok(fanned_out) = &discovered {
                    events.extend(fanned_out.iter().cloned());
                }
                events.extend(self.housekeeping(settings, &mut outcome).await);
                publish(&self.engine.publisher, &events).await?;
                discovered?;
                tracing::info!(
                    discovered = outcome.discovered,
                    to_create = outcome.to_create,
                    syncs = outcome.syncs_requested,
                    not_due = outcome.syncs_not_due,
                    "scheduled run done"
                );
                Ok(outcome)
            })
            .await;
        self.record(settings, run_id, started_at, &outcome).await;
        Ok(outcome?.unwrap_or_else(|| {
            tracing::error!(
                alarm = ALARM_SCHEDULED_RUN_SKIPPED,
                run = run_id,
                "another scheduled run holds the lease: this one is skipped and retried"
            );
            DiscoveryOutcome {
                run_id: run_id.to_owned(),
                busy: true,
                ..DiscoveryOutcome::default()
            }
        }))
    }

    /// Keeps the run's record (a run skipped as busy is not one: its alarm and retry are).
    /// A record that cannot be written is logged: it must not turn a done run into a failed one.
    async fn record(
        &self,
        settings: &Settings,
        run_id: &str,
        started_at: chrono::DateTime<Utc>,
        outcome: &Result<Option<DiscoveryOutcome>, EngineError>,
    ) {
        let (counts, failure) = match outcome {
            Ok(None) => return,
            Ok(Some(done)) => (done.counts(), None),
            Err(error) => (
                BTreeMap::new(),
                Some(state::RunFailure::new(
                    "scheduled run",
                    &error.to_string(),
                    Some(error.run_failure_code()),
                )),
            ),
        };
        let store = self.engine.store.as_ref();
        if let Err(error) = record_scheduled_run(store, settings, run_id, started_at, counts, failure).await {
            tracing::warn!(%error, run = run_id, "the scheduled run's record could not be written");
        }
    }

    /// A dry run of the scheduled run: plans every linked campaign and writes nothing.
    pub async fn plan(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        let found = self.discover_and_link(settings, run_id, Mode::DryRun).await?;
        let mut outcome = found.outcome;
        let mut plan = SyncPlan {
            campaigns_to_create: found.to_create,
            campaigns_not_created: found.not_created,
            campaigns: Vec::new(),
        };
        let campaigns = CampaignSync::new(self.engine);
        for (cm_id, sf_id) in &found.links {
            if let CampaignOutcome::Done {
                plan: campaign_plan, ..
            } = campaigns.plan_dry(settings, cm_id, sf_id, run_id).await?
            {
                plan.campaigns.push(*campaign_plan);
            }
        }
        outcome.report = Some(plan.report(mapping::plan::EmailDisplay::Redacted));
        outcome.plan = Some(plan);
        Ok(outcome)
    }

    /// Stages `discover` and `reconcile`: the CM campaigns, the links (those found in
    /// Salesforce stored unless a dry run), and what auto-creation gets, less the creations
    /// Salesforce refused before (they wait for an admin).
    async fn discover_and_link(&self, settings: &Settings, run_id: &str, mode: Mode) -> Result<Found, EngineError> {
        let discovered: Vec<DiscoveredCampaign> = discover(&self.engine.cm, settings).await?;
        if mode != Mode::DryRun {
            CatalogRefresh::new(self.engine).keep_if_stale(&discovered).await;
        }
        let (found, links_refused) = self.reconcile_links(settings, &discovered, mode).await?;
        let links_found = found.len();
        let mut links = link_map(self.engine.store.as_ref()).await?;
        links.extend(found.into_iter().map(|l| (l.cm_campaign_id, l.sf_campaign_id)));
        let (to_create, not_created) = plan_discovery(&discovered, &links, settings);
        let refused = self.refused_creations(to_create.is_empty()).await?;
        let (refused_before, to_create): (Vec<_>, Vec<_>) = to_create
            .into_iter()
            .partition(|c| refused.contains(&c.campaign.cm_campaign_id));
        let outcome = DiscoveryOutcome {
            run_id: run_id.to_owned(),
            discovered: discovered.len(),
            links_found,
            links_refused,
            to_create: to_create.len(),
            creation_refused: refused_before.len(),
            ..DiscoveryOutcome::default()
        };
        Ok(Found {
            outcome,
            links,
            to_create,
            not_created,
        })
    }

    /// Creations Salesforce refused for good (one read, and only when there is something to
    /// create).
    async fn refused_creations(&self, nothing_to_create: bool) -> Result<BTreeSet<String>, EngineError> {
        if nothing_to_create {
            return Ok(BTreeSet::new());
        }
        Ok(self
            .engine
            .store
            .failed_records(&Scope::AutocreateRefused.key(), 10_000)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect())
    }

    /// Stages `due` and `fan_out`: the creations and the sync requests of the campaigns due,
    /// to publish; what discovery found goes into `outcome`.
    async fn due_and_fan_out(
        &self,
        settings: &Settings,
        run_id: &str,
        found: Found,
        outcome: &mut DiscoveryOutcome,
    ) -> Result<Vec<Event>, EngineError> {
        *outcome = found.outcome;
        let mut events: Vec<Event> = found
            .to_create
            .into_iter()
            .map(|c| Event::campaign_discovered(run_id, c.campaign))
            .collect();
        events.extend(self.fan_out(settings, run_id, &found.links, outcome).await?);
        Ok(events)
    }

    /// Only the campaigns their cadence makes due (on CM's clock, as the syncs set it), and
    /// retired ones their daily check finds active again: one sync request each.
    async fn fan_out(
        &self,
        settings: &Settings,
        run_id: &str,
        links: &BTreeMap<String, String>,
        outcome: &mut DiscoveryOutcome,
    ) -> Result<Vec<Event>, EngineError> {
        let syncs = self.due_syncs(settings, links).await?;
        outcome.syncs_not_due = syncs.not_due;
        outcome.active_again = syncs.active_again.len();
        outcome.syncs_requested = syncs.due.len() + syncs.active_again.len();
        let due = syncs
            .due
            .iter()
            .map(|cm_id| Event::sync_requested(run_id, Some(cm_id), false, "schedule"));
        let again = syncs
            .active_again
            .iter()
            .map(|cm_id| Event::sync_requested(run_id, Some(cm_id), false, "active again"));
        Ok(due.chain(again).collect())
    }
}
