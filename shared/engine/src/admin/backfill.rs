//! The bounded backfill (`cm-sf-admin backfill`): SF Campaigns for CM campaigns of a chosen
//! date range, which auto-creation (never retrospective) leaves alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::LinkOrigin;
use events::publisher::EventSink;
use mapping::autocreate::{DiscoveredCampaign, Eligibility, backfill_eligibility};
use serde::Serialize;
use state::{LinkStore, RetryQueue, SettingsStore};

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

impl<'e, S: SettingsStore + LinkStore + RetryQueue, P: EventSink> Backfill<'e, S, P> {
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
