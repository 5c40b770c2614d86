//! The scheduled run: discover CM campaigns, reconcile links, hand new campaigns to
//! auto-creation and fan out one sync per linked campaign.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use events::publisher::EventSink;
use events::{Event, LinkOrigin};
use mapping::Settings;
use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};
use mapping::plan::{SyncPlan, plan_discovery};
use serde::Serialize;
use state::{LinkRecord, RunFailure, RunStatus, Store};

/// Pending webhook batches one scheduled run sweeps at most.
const WEBHOOK_SWEEP_BATCHES: usize = 200;

/// How many of the newest runs a scheduled run checks for abandoned ones.
const RECENT_RUNS_CHECKED: usize = 500;

use crate::campaign::CampaignOutcome;
use crate::{Engine, EngineError};

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

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Every campaign of the configured clients, sent, scheduled and draft.
    pub async fn discover(&self, settings: &mapping::Settings) -> Result<Vec<DiscoveredCampaign>, EngineError> {
        let mut found = Vec::new();
        for client in &settings.cm_clients {
            for campaign in self.cm.sent_campaigns(client, &Default::default()).await? {
                found.push(DiscoveredCampaign {
                    sent_at: Some(self.cm.to_utc(&campaign.sent_date)?),
                    cm_campaign_id: campaign.campaign_id,
                    cm_client_id: client.clone(),
                    name: campaign.name,
                    subject: campaign.subject,
                    state: CmCampaignState::Sent,
                    created_at: None,
                });
            }
            let scheduled = self
                .cm
                .scheduled_campaigns(client)
                .await?
                .into_iter()
                .map(|c| (c, CmCampaignState::Scheduled));
            let drafts = self
                .cm
                .draft_campaigns(client)
                .await?
                .into_iter()
                .map(|c| (c, CmCampaignState::Draft));
            for (campaign, state) in scheduled.chain(drafts) {
                found.push(DiscoveredCampaign {
                    created_at: self.cm.to_utc(&campaign.date_created).ok(),
                    cm_campaign_id: campaign.campaign_id,
                    cm_client_id: client.clone(),
                    name: campaign.name,
                    subject: campaign.subject,
                    state,
                    sent_at: None,
                });
            }
        }
        Ok(found)
    }

    /// Links an admin made by filling in the link field on an SF Campaign. Stored if new, unless
    /// `dry_run`; returned either way so a dry run plans them too. A value that is not the id of
    /// one of `discovered` (the configured clients' campaigns) is reported and left unused.
    /// Returns the links found and how many values were refused.
    async fn reconcile_links(
        &self,
        settings: &mapping::Settings,
        discovered: &[DiscoveredCampaign],
        dry_run: bool,
    ) -> Result<(Vec<LinkRecord>, usize), EngineError> {
        let campaigns: BTreeSet<String> = discovered
            .iter()
            .map(|c| c.cm_campaign_id.to_ascii_lowercase())
            .collect();
        let mut refused = 0;
        let field = &settings.campaign_link_field;
        let rows = self
            .sf
            .query_all(&format!("SELECT Id, {field} FROM Campaign WHERE {field} != null"))
            .await?;
        // One Query for the links already stored, not a read per Campaign found.
        let linked: BTreeSet<String> = self
            .store
            .links()
            .await?
            .into_iter()
            .map(|l| l.cm_campaign_id)
            .collect();
        let mut found = Vec::new();
        for row in rows {
            let (Some(sf_id), Some(value)) = (row["Id"].as_str(), row[field.as_str()].as_str()) else {
                continue;
            };
            let cm_id = match mapping::links::validate_link(value, &campaigns) {
                Ok(id) => id,
                Err(why) => {
                    refused += 1;
                    tracing::warn!(sf_campaign = sf_id, %why, "link field value refused; the Campaign is not synced until it names a campaign of a configured client");
                    continue;
                }
            };
            let cm_id = cm_id.as_str();
            if linked.contains(cm_id) {
                continue;
            }
            let link = LinkRecord {
                cm_campaign_id: cm_id.to_owned(),
                sf_campaign_id: sf_id.to_owned(),
                origin: LinkOrigin::FoundInSalesforce,
                linked_at: Utc::now(),
            };
            if dry_run {
                found.push(link);
                continue;
            }
            match self.store.put_link(&link).await {
                Ok(_) => found.push(link),
                Err(state::StoreError::LinkConflict { existing, .. }) => {
                    tracing::warn!(cm_campaign = cm_id, sf_campaign = sf_id, %existing, "link field conflicts with a stored link; left as is");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok((found, refused))
    }

    /// `work` under the discovery lease (one scheduled or hot run at a time); `None` when another
    /// run holds it. The lease is released whatever `work` returns.
    pub(crate) async fn under_discovery_lease<T>(
        &self,
        run_id: &str,
        work: impl AsyncFnOnce() -> Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        let owner = format!("{run_id}#{}", uuid::Uuid::new_v4().simple()); // this invocation
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.options.lease).unwrap_or_default();
        if self
            .store
            .acquire_lease("discovery", &owner, now, until)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let result = work().await;
        self.store.release_lease("discovery", &owner).await?;
        result.map(Some)
    }

    /// The scheduled run, under the discovery lease: links found, new campaigns handed to
    /// auto-creation, one sync requested per linked campaign.
    pub async fn run_scheduled(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        let outcome = self
            .under_discovery_lease(run_id, async || {
                self.mark_abandoned_runs().await?;
                self.run_scheduled_locked(settings, run_id, false).await
            })
            .await?;
        Ok(outcome.unwrap_or_else(|| DiscoveryOutcome {
            run_id: run_id.to_owned(),
            busy: true,
            ..DiscoveryOutcome::default()
        }))
    }

    /// Runs still `Running` a whole lease span after their invocation started or took them
    /// over died with it (a timeout or a crash), and runs handed over that long ago that no
    /// continuation took: no commit can come from them any more (commits are fenced by the
    /// lease), so they are recorded as abandoned, with why. Their campaigns' next syncs continue
    /// from the last commit.
    async fn mark_abandoned_runs(&self) -> Result<(), EngineError> {
        let now = Utc::now();
        let span = chrono::Duration::from_std(self.options.lease).unwrap_or_default();
        for run in self.store.recent_runs(RECENT_RUNS_CHECKED).await? {
            let last_alive = match run.status {
                RunStatus::Running => run.resumed_at.unwrap_or(run.started_at),
                RunStatus::Continued => run.ended_at.unwrap_or(run.started_at),
                _ => continue,
            };
            if last_alive + span >= now {
                continue;
            }
            tracing::error!(run = %run.run_id, campaign = %run.scope, "run abandoned: its invocation stopped before finishing");
            let why = RunFailure::new(
                "run",
                "abandoned: its invocation stopped before finishing (a timeout or a crash); the next sync continues from the last commit",
                Some("ABANDONED"),
            );
            self.store.add_run_failures(&run.run_id, &[why]).await?;
            self.store
                .finish_run(&run.run_id, now, RunStatus::Abandoned, &run.counts)
                .await?;
        }
        Ok(())
    }

    /// Webhook batches still pending a while after they were recorded (their hand-off lost, or
    /// an event failed for a reason an admin has fixed since: credentials, limits, a validation
    /// rule): handed on again. Applying an event twice changes nothing.
    async fn sweep_webhook_batches(&self) -> Result<Vec<Event>, EngineError> {
        let settled = Utc::now() - self.options.webhook_sweep_after;
        Ok(self
            .store
            .pending_webhook_batches(WEBHOOK_SWEEP_BATCHES)
            .await?
            .into_iter()
            .filter(|batch| batch.received_at < settled)
            .filter_map(|batch| {
                let unapplied = batch
                    .events
                    .iter()
                    .filter(|e| !matches!(e.state, state::EventState::Applied { .. }))
                    .count();
                (unapplied > 0)
                    .then(|| Event::webhook_batch_received(&batch.batch, &batch.list_id, unapplied, batch.received_at))
            })
            .collect())
    }

    /// A dry run of the scheduled run: plans every linked campaign and writes nothing.
    pub async fn plan_scheduled(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        self.run_scheduled_locked(settings, run_id, true).await
    }

    async fn run_scheduled_locked(
        &self,
        settings: &mapping::Settings,
        run_id: &str,
        dry_run: bool,
    ) -> Result<DiscoveryOutcome, EngineError> {
        let discovered = self.discover(settings).await?;
        let (found, links_refused) = self.reconcile_links(settings, &discovered, dry_run).await?;
        let links_found = found.len();
        let mut links: BTreeMap<String, String> = self.link_map().await?;
        links.extend(found.into_iter().map(|l| (l.cm_campaign_id, l.sf_campaign_id)));
        let (to_create, not_created) = plan_discovery(&discovered, &links, settings);
        // Creations Salesforce refused for good wait for an admin (one read, and only when
        // there is something to create).
        let refused: BTreeSet<String> = if to_create.is_empty() {
            BTreeSet::new()
        } else {
            self.store
                .failed_records(crate::autocreate::REFUSED_SCOPE, 10_000)
                .await?
                .into_iter()
                .map(|r| r.key)
                .collect()
        };
        let (refused_before, to_create): (Vec<_>, Vec<_>) = to_create
            .into_iter()
            .partition(|c| refused.contains(&c.campaign.cm_campaign_id));
        let mut outcome = DiscoveryOutcome {
            run_id: run_id.to_owned(),
            discovered: discovered.len(),
            links_found,
            links_refused,
            to_create: to_create.len(),
            creation_refused: refused_before.len(),
            ..DiscoveryOutcome::default()
        };
        if dry_run {
            let mut plan = SyncPlan {
                campaigns_to_create: to_create,
                campaigns_not_created: not_created,
                campaigns: Vec::new(),
            };
            for (cm_id, sf_id) in &links {
                if let CampaignOutcome::Done {
                    plan: campaign_plan, ..
                } = self.plan_campaign_dry(settings, cm_id, sf_id, run_id).await?
                {
                    plan.campaigns.push(*campaign_plan);
                }
            }
            outcome.report = Some(plan.report(mapping::plan::EmailDisplay::Redacted));
            outcome.plan = Some(plan);
            return Ok(outcome);
        }
        let mut events: Vec<Event> = to_create
            .into_iter()
            .map(|c| Event::campaign_discovered(run_id, c.campaign))
            .collect();
        // Only the campaigns their cadence makes due (on CM's clock, as the syncs set it), and
        // retired ones their daily check finds active again.
        let syncs = self.due_syncs(settings, &links).await?;
        outcome.syncs_not_due = syncs.not_due;
        outcome.active_again = syncs.active_again.len();
        outcome.syncs_requested = syncs.due.len() + syncs.active_again.len();
        events.extend(
            syncs
                .due
                .iter()
                .map(|cm_id| Event::sync_requested(run_id, Some(cm_id), false, "schedule")),
        );
        events.extend(
            syncs
                .active_again
                .iter()
                .map(|cm_id| Event::sync_requested(run_id, Some(cm_id), false, "active again")),
        );
        // CM's lists are the source of truth: their opt-outs and bounces reach Salesforce even
        // when no webhook posts them. A failure here does not hold back the campaigns.
        match self.list_backstop(settings).await {
            Ok(lists) => outcome.list_people_updated = lists.iter().map(|l| l.people_updated).sum(),
            Err(error) => {
                tracing::error!(%error, retryable = error.is_retryable(), "list backstop failed; read again next run")
            }
        }
        match self.check_webhook_health(settings).await {
            Ok(Some(inactive)) => outcome.inactive_webhooks = Some(inactive.len()),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "webhook check failed; made again next run"),
        }
        let swept = self.sweep_webhook_batches().await?;
        outcome.webhook_batches_swept = swept.len();
        events.extend(swept);
        self.publish(&events).await?;
        tracing::info!(
            discovered = outcome.discovered,
            to_create = outcome.to_create,
            syncs = outcome.syncs_requested,
            not_due = outcome.syncs_not_due,
            "scheduled run done"
        );
        Ok(outcome)
    }
}
