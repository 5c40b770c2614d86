//! Stage `reconcile`: links an admin made by filling in the link field on an SF Campaign.

use std::collections::BTreeSet;

use chrono::Utc;
use events::LinkOrigin;
use mapping::autocreate::DiscoveredCampaign;
use state::{LinkRecord, LinkStore};

use super::Tick;
use crate::campaign::Mode;
use crate::core::EngineError;

impl<S: LinkStore, P> Tick<'_, S, P> {
    /// Links an admin made by filling in the link field on an SF Campaign. Stored if new, unless
    /// a dry run; returned either way so a dry run plans them too. A value that is not the id of
    /// one of `discovered` (the configured clients' campaigns) is reported and left unused.
    /// Returns the links found and how many values were refused.
    pub(super) async fn reconcile_links(
        &self,
        settings: &mapping::Settings,
        discovered: &[DiscoveredCampaign],
        mode: Mode,
    ) -> Result<(Vec<LinkRecord>, usize), EngineError> {
        let campaigns: BTreeSet<String> = discovered
            .iter()
            .map(|c| c.cm_campaign_id.to_ascii_lowercase())
            .collect();
        let mut refused = 0;
        let field = &settings.campaign_link_field;
        let rows = self
            .engine
            .sf
            .query_all(&format!("SELECT Id, {field} FROM Campaign WHERE {field} != null"))
            .await?;
        // One Query for the links already stored, not a read per Campaign found.
        let linked: BTreeSet<String> = self
            .engine
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
            if mode.is_dry_run() {
                found.push(link);
                continue;
            }
            match self.engine.store.put_link(&link).await {
                Ok(_) => found.push(link),
                Err(state::StoreError::LinkConflict { existing, .. }) => {
                    tracing::warn!(cm_campaign = cm_id, sf_campaign = sf_id, %existing, "link field conflicts with a stored link; left as is");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok((found, refused))
    }
}
