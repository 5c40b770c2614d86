//! The campaign's sent date: where its recipients are read from, and what its cadence counts
//! from. CM gives it only in the paged listing of a client's sent campaigns, so it is looked
//! up at most once per run and kept with the campaign's progress.

use chrono::{DateTime, Utc};
use events::publisher::EventSink;

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::EngineError;

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// The campaign's sent date for its cadence: as stored by an earlier sync, else looked up
    /// once (a paged listing of sent campaigns) and kept. Not looked up with the cadence off.
    pub(super) async fn sent_at_for_cadence(
        &self,
        run: &mut CampaignRun<'_>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(known) = run.progress.sent_at {
            return Ok(Some(known));
        }
        if !run.settings.sync_cadence.enabled && run.sent_at.is_none() {
            return Ok(None);
        }
        let found = self.sent_at_once(run).await?;
        run.next_progress.sent_at = found;
        Ok(found)
    }

    /// The campaign's sent date, looked up once per run.
    pub(super) async fn sent_at_once(&self, run: &mut CampaignRun<'_>) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(known) = run.sent_at {
            return Ok(known);
        }
        let found = self.sent_at(run.settings, run.cm_id()).await?;
        run.sent_at = Some(found);
        Ok(found)
    }

    /// The campaign's sent date, from the sent-campaign lists of the configured clients.
    async fn sent_at(&self, settings: &mapping::Settings, cm_id: &str) -> Result<Option<DateTime<Utc>>, EngineError> {
        for client in &settings.cm_clients {
            let sent = self.engine.cm.sent_campaigns(client, &Default::default()).await?;
            if let Some(campaign) = sent.iter().find(|c| c.campaign_id == cm_id) {
                return Ok(Some(self.engine.cm.to_utc(&campaign.sent_date)?));
            }
        }
        Ok(None)
    }
}
