//! The bounded backfill (`cm-sf-admin backfill`): SF Campaigns for CM campaigns of a chosen
//! date range, which auto-creation (never retrospective) leaves alone.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use events::LinkOrigin;
use events::publisher::EventSink;
use mapping::autocreate::{DiscoveredCampaign, Eligibility, backfill_eligibility, backfill_window};
use serde::Serialize;
use state::{AuditStore, LinkStore, RetryQueue, SettingsStore};

use super::audit;

use crate::autocreate::{AutoCreate, AutoCreateOutcome};
use crate::core::{Engine, EngineError, link_map, load_settings};
use crate::discovery::discover;

/// One backfilled campaign.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillResult {
    /// The CM campaign.
    pub campaign: DiscoveredCampaign,
    /// What happened to it (`None` on a dry run).
    pub outcome: Option<AutoCreateOutcome>,
}

/// A backfill over a date range.
#[derive(Debug)]
pub struct Backfill<'e, S, P> {
    engine: &'e Engine<S, P>,
}

/// A backfill asked for: whole days `[from, to]` in the CM time zone, at most `max` campaigns.
#[derive(Debug, Clone, Copy)]
pub struct BackfillRequest {
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
    /// Refuse, creating nothing, when more campaigns than this are in the window.
    pub max: usize,
    /// List what would be created; create nothing.
    pub dry_run: bool,
    /// How the refusal past `max` names the limit: the CLI's `--max`, the console's words.
    pub max_named: &'static str,
}

/// The most campaigns one backfill creates unless told otherwise.
pub const DEFAULT_BACKFILL_MAX: usize = 200;

impl<'e, S: SettingsStore + LinkStore + RetryQueue + AuditStore, P: EventSink> Backfill<'e, S, P> {
    /// The backfill of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        Backfill { engine }
    }

    /// The unlinked CM campaigns created or sent within `[from, to]`, oldest first: what a
    /// backfill would create. Refuses an empty or reversed window.
    pub async fn candidates(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DiscoveredCampaign>, EngineError> {
        if from > to {
            return Err(EngineError::Invalid(format!("--from ({from}) is after --to ({to})")));
        }
        let settings = load_settings(self.engine.store.as_ref()).await?;
        let links: BTreeMap<String, String> = link_map(self.engine.store.as_ref()).await?;
        let mut candidates: Vec<DiscoveredCampaign> = discover(&self.engine.cm, &settings)
            .await?
            .into_iter()
            .filter(|c| {
                backfill_eligibility(c, from, to, links.get(&c.cm_campaign_id).map(String::as_str))
                    == Eligibility::Eligible
            })
            .collect();
        candidates
            .sort_by(|a, b| (a.created_or_sent(), &a.cm_campaign_id).cmp(&(b.created_or_sent(), &b.cm_campaign_id)));
        Ok(candidates)
    }

    /// The whole backfill (`cm-sf-admin backfill`, and the console's through the sync
    /// function): the candidates of the window, refused whole past `max`, each created and
    /// linked unless a dry run, `progress` told of each; the audit names `actor`.
    pub async fn run(
        &self,
        settings: &mapping::Settings,
        request: BackfillRequest,
        actor: &str,
        mut progress: impl FnMut(usize, usize, &BackfillResult),
    ) -> Result<Vec<BackfillResult>, EngineError> {
        let (start, end) = backfill_window(request.from, request.to, settings.zone()).map_err(EngineError::Invalid)?;
        let candidates = self.candidates(start, end).await?;
        if candidates.len() > request.max {
            return Err(EngineError::Invalid(format!(
                "{} campaigns are in the window, more than {} {}: narrow the window or raise the limit; nothing was created",
                candidates.len(),
                request.max_named,
                request.max
            )));
        }
        let mut results = Vec::with_capacity(candidates.len());
        for (i, campaign) in candidates.iter().enumerate() {
            let outcome = if request.dry_run {
                None
            } else {
                Some(self.create_one(settings, campaign).await?)
            };
            let result = BackfillResult {
                campaign: campaign.clone(),
                outcome,
            };
            progress(i + 1, candidates.len(), &result);
            results.push(result);
        }
        if !request.dry_run {
            let linked = results
                .iter()
                .filter(|r| matches!(r.outcome, Some(AutoCreateOutcome::Linked { .. })))
                .count();
            audit::record(
                self.engine.store.as_ref(),
                Some(settings),
                actor,
                format!(
                    "backfill of {} to {}: {linked} of {} campaign(s) linked",
                    request.from,
                    request.to,
                    results.len()
                ),
                None,
            )
            .await;
        }
        Ok(results)
    }

    /// Creates and links the SF Campaign of one backfill candidate (idempotent: a re-run finds
    /// it linked).
    pub async fn create_one(
        &self,
        settings: &mapping::Settings,
        campaign: &DiscoveredCampaign,
    ) -> Result<AutoCreateOutcome, EngineError> {
        AutoCreate::new(self.engine)
            .create(settings, campaign, LinkOrigin::Backfill)
            .await
    }
}
