//! Discovery: every campaign of the configured CM clients, sent, scheduled and draft, as the
//! rules see them. Used by the scheduled run and by a backfill.

use campaign_monitor::CmClient;
use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};

use crate::core::EngineError;

/// Every campaign of the configured clients, sent, scheduled and draft.
pub async fn discover(cm: &CmClient, settings: &mapping::Settings) -> Result<Vec<DiscoveredCampaign>, EngineError> {
    let mut found = Vec::new();
    for client in &settings.cm_clients {
        for campaign in cm.sent_campaigns(client, &Default::default()).await? {
            found.push(DiscoveredCampaign {
                sent_at: Some(cm.to_utc(&campaign.sent_date)?),
                cm_campaign_id: campaign.campaign_id,
                cm_client_id: client.clone(),
                name: campaign.name,
                subject: campaign.subject,
                state: CmCampaignState::Sent,
                created_at: None,
            });
        }
        let scheduled = cm
            .scheduled_campaigns(client)
            .await?
            .into_iter()
            .map(|c| (c, CmCampaignState::Scheduled));
        let drafts = cm
            .draft_campaigns(client)
            .await?
            .into_iter()
            .map(|c| (c, CmCampaignState::Draft));
        for (campaign, state) in scheduled.chain(drafts) {
            found.push(DiscoveredCampaign {
                created_at: cm.to_utc(&campaign.date_created).ok(),
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

/// The catalog of CM campaigns kept for the console (see [`state::CatalogRecord`]).
#[derive(Debug)]
pub struct CatalogRefresh<'e, S, P> {
    engine: &'e crate::core::Engine<S, P>,
}

/// A catalog older than this is refreshed by the next scheduled run, from what that run
/// discovered anyway (no extra CM call).
pub const CATALOG_MAX_AGE: chrono::Duration = chrono::Duration::hours(24);

impl<'e, S: state::CatalogStore, P> CatalogRefresh<'e, S, P> {
    /// The catalog of `engine`'s deployment.
    pub fn new(engine: &'e crate::core::Engine<S, P>) -> Self {
        CatalogRefresh { engine }
    }

    /// Discovers the campaigns and keeps them as the catalog (an admin asked).
    pub async fn refresh(&self, settings: &mapping::Settings) -> Result<state::CatalogRecord, EngineError> {
        let campaigns = discover(&self.engine.cm, settings).await?;
        self.keep(campaigns).await
    }

    /// Keeps what a scheduled run discovered when the kept catalog is older than
    /// [`CATALOG_MAX_AGE`] (one small read otherwise). A failure is logged, never the run's.
    pub async fn keep_if_stale(&self, discovered: &[DiscoveredCampaign]) {
        let now = chrono::Utc::now();
        let stale = match self.engine.store.catalog_refreshed_at().await {
            Ok(Some(at)) => now - at > CATALOG_MAX_AGE,
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(%error, "the campaign catalog's age could not be read; not refreshed");
                false
            }
        };
        if stale && let Err(error) = self.keep(discovered.to_vec()).await {
            tracing::warn!(%error, "the campaign catalog could not be kept");
        }
    }

    async fn keep(&self, campaigns: Vec<DiscoveredCampaign>) -> Result<state::CatalogRecord, EngineError> {
        let catalog = state::CatalogRecord {
            refreshed_at: chrono::Utc::now(),
            campaigns,
        };
        self.engine.store.save_catalog(&catalog).await?;
        Ok(catalog)
    }
}
