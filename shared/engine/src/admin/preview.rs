//! A settings change previewed on recent campaigns (the console's "what would this do"): the
//! sync function plans each campaign under the stored settings and under the proposed ones,
//! as a dry run (nothing written to CM or Salesforce), and keeps the two summaries beside each
//! other in the preview's record. A preview with no proposal is the console's dry run of one
//! linked campaign: the stored settings only. It runs here, not in the console, because planning needs
//! the integration's CM and SF credentials, which the console never holds.

use events::publisher::EventSink;
use mapping::Settings;
use mapping::plan::impact::PlanImpact;
use serde::{Deserialize, Serialize};
use state::Store;

use crate::campaign::{CampaignOutcome, Mode};
use crate::core::{Deadline, Engine, EngineError};
use crate::report::new_run_id;

/// Campaigns one preview plans at most.
pub const PREVIEW_CAMPAIGNS: usize = 5;

/// One campaign under both settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignImpact {
    /// The CM campaign.
    pub cm_campaign_id: String,
    /// Under the stored settings.
    pub current: Option<PlanImpact>,
    /// Under the proposed ones.
    pub proposed: Option<PlanImpact>,
    /// Why it could not be planned, if it could not.
    pub problem: Option<String>,
}

/// Plans and records one preview.
#[derive(Debug)]
pub struct SettingsPreview<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: Store, P: EventSink> SettingsPreview<'e, S, P> {
    /// Previews of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        SettingsPreview { engine }
    }

    /// Plans the preview `preview_id` asks for and stores the comparison in it. A preview
    /// expired or already answered is left as it is.
    pub async fn answer(&self, current: &Settings, preview_id: &str) -> Result<Vec<CampaignImpact>, EngineError> {
        let Some(mut preview) = self.engine.store.preview(preview_id).await? else {
            return Ok(Vec::new());
        };
        if let Some(done) = &preview.result {
            return Ok(serde_json::from_value(done.clone()).unwrap_or_default());
        }
        // No proposal: a dry run of the stored settings.
        let proposed = match &preview.proposed {
            Some(document) => Some(Settings::from_json(document).map_err(|e| EngineError::Invalid(e.to_string()))?),
            None => None,
        };
        let mut impacts = Vec::new();
        for cm in preview.campaigns.iter().take(PREVIEW_CAMPAIGNS) {
            let mut impact = CampaignImpact {
                cm_campaign_id: cm.clone(),
                current: None,
                proposed: None,
                problem: None,
            };
            let mut asked = vec![(current, &mut impact.current)];
            if let Some(proposed) = &proposed {
                asked.push((proposed, &mut impact.proposed));
            }
            for (settings, slot) in asked {
                match self.plan(settings, cm).await {
                    Ok(plan) => *slot = Some(plan),
                    Err(problem) => impact.problem = Some(problem),
                }
            }
            impacts.push(impact);
        }
        preview.result = Some(serde_json::to_value(&impacts).map_err(|e| EngineError::Invalid(e.to_string()))?);
        self.engine.store.save_preview(&preview).await?;
        Ok(impacts)
    }

    async fn plan(&self, settings: &Settings, cm: &str) -> Result<PlanImpact, String> {
        let outcome = self
            .engine
            .sync_campaign(settings, cm, &new_run_id(), Mode::DryRun, Deadline::none())
            .await
            .map_err(|e| mapping::email::redact_emails_in(&e.to_string()))?;
        match outcome {
            CampaignOutcome::Done { plan, .. } => Ok(PlanImpact::of(&plan)),
            CampaignOutcome::NotLinked => Err("not linked".to_owned()),
            other => Err(format!("not planned: {other:?}")),
        }
    }
}
