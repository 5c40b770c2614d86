//! Discovery: every campaign of the configured CM clients, sent, scheduled and draft, as the
//! rules see them. Used by the scheduled run and by a backfill.

use campaign_monitor::{CmClient, SentFilter};
use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};

use crate::core::EngineError;

/// Every campaign of the configured clients, sent, scheduled and draft.
pub async fn discover(cm: &CmClient, settings: &mapping::Settings) -> Result<Vec<DiscoveredCampaign>, EngineError> {
    let mut found = Vec::new();
    for client in &settings.cm_clients {
        found.extend(sent(cm, client, &SentFilter::default()).await?);
        found.extend(unsent(cm, client, CmCampaignState::Scheduled).await?);
        found.extend(unsent(cm, client, CmCampaignState::Draft).await?);
    }
    Ok(found)
}

/// A client's sent campaigns matching `filter`.
async fn sent(cm: &CmClient, client: &str, filter: &SentFilter) -> Result<Vec<DiscoveredCampaign>, EngineError> {
    cm.sent_campaigns(client, filter)
        .await?
        .into_iter()
        .map(|campaign| {
            Ok(DiscoveredCampaign {
                sent_at: Some(cm.to_utc(&campaign.sent_date)?),
                cm_campaign_id: campaign.campaign_id,
                cm_client_id: client.to_owned(),
                name: campaign.name,
                subject: campaign.subject,
                state: CmCampaignState::Sent,
                created_at: None,
            })
        })
        .collect()
}

/// A client's scheduled or draft campaigns.
async fn unsent(cm: &CmClient, client: &str, state: CmCampaignState) -> Result<Vec<DiscoveredCampaign>, EngineError> {
    let listed = match state {
        CmCampaignState::Scheduled => cm.scheduled_campaigns(client).await?,
        _ => cm.draft_campaigns(client).await?,
    };
    Ok(listed
        .into_iter()
        .map(|campaign| DiscoveredCampaign {
            created_at: cm.to_utc(&campaign.date_created).ok(),
            cm_campaign_id: campaign.campaign_id,
            cm_client_id: client.to_owned(),
            name: campaign.name,
            subject: campaign.subject,
            state,
            sent_at: None,
        })
        .collect())
}

/// CM's code for a client ID it does not know or that is not this account's (401, code 102).
const INVALID_CLIENT_ID: i64 = 102;

/// The campaign as Campaign Monitor has it now, looked up in its client's own listings, or
/// `None` if that client has no such campaign. Auto-creation builds the SF Campaign from this,
/// never from an event's copy: an event on the bus names a campaign, CM says what it is. The
/// listing of the state the event claims is read first (one call, usually the only one); a
/// campaign that moved on (a draft since scheduled or sent) is found in the others. Sent
/// campaigns are read from a day before the claimed date (time zones), or all of them.
pub async fn confirm(cm: &CmClient, claimed: &DiscoveredCampaign) -> Result<Option<DiscoveredCampaign>, EngineError> {
    let client = claimed.cm_client_id.as_str();
    let since = claimed
        .created_or_sent()
        .map(|at| (at - chrono::Duration::days(1)).date_naive());
    let mut order = vec![
        CmCampaignState::Draft,
        CmCampaignState::Scheduled,
        CmCampaignState::Sent,
    ];
    order.sort_by_key(|state| *state != claimed.state);
    for state in order {
        let listing = match state {
            CmCampaignState::Sent => {
                sent(
                    cm,
                    client,
                    &SentFilter {
                        sent_from: since,
                        ..SentFilter::default()
                    },
                )
                .await
            }
            unsent_state => unsent(cm, client, unsent_state).await,
        };
        let listed = match listing {
            // CM's answer for a client ID it does not know (or that is not this account's).
            Err(EngineError::Cm(error)) if error.code() == Some(INVALID_CLIENT_ID) => return Ok(None),
            other => other?,
        };
        if let Some(found) = listed
            .into_iter()
            .find(|c| c.cm_campaign_id.eq_ignore_ascii_case(&claimed.cm_campaign_id))
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
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
