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
