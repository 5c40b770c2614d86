//! Manual links and unlinks (`cm-sf-admin link` / `unlink`).

use chrono::Utc;
use events::publisher::EventSink;
use events::{Event, LinkOrigin};
use mapping::settings::{is_cm_id, is_salesforce_id};
use salesforce::{Operation, RecordOutcome, SfError, WriteOptions};
use serde_json::{Map, Value, json};
use state::{AuditStore, LinkOutcome, LinkRecord, LinkStore, Scope, SettingsStore, WatermarkStore};

use super::audit;

use crate::core::{Engine, EngineError, load_settings, publish};

/// Links made and removed by an admin.
#[derive(Debug)]
pub struct LinkAdmin<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: SettingsStore + LinkStore + WatermarkStore + AuditStore, P: EventSink> LinkAdmin<'e, S, P> {
    /// The links of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        LinkAdmin { engine }
    }

    /// Links a CM campaign to an SF Campaign by hand: writes the link field on the SF Campaign,
    /// stores the link and publishes "campaign linked" so the campaign is synced at once.
    /// Refuses (changing nothing) bad ids and either side already linked elsewhere.
    /// `actor` (a Salesforce user id, or [`audit::CLI_ACTOR`]) goes into the audit.
    pub async fn link(
        &self,
        cm_campaign_id: &str,
        sf_campaign_id: &str,
        actor: &str,
    ) -> Result<LinkOutcome, EngineError> {
        if !is_cm_id(cm_campaign_id) {
            return Err(EngineError::Invalid(format!(
                "`{cm_campaign_id}` is not a CM CampaignID (32 hex characters)"
            )));
        }
        if !is_salesforce_id(sf_campaign_id, "701") {
            return Err(EngineError::Invalid(format!(
                "`{sf_campaign_id}` is not an SF Campaign Id (15 or 18 characters starting 701)"
            )));
        }
        let settings = load_settings(self.engine.store.as_ref()).await?;
        if let Some(existing) = self.engine.store.link(cm_campaign_id).await? {
            if existing.sf_campaign_id == sf_campaign_id {
                return Ok(LinkOutcome::AlreadyLinked);
            }
            return Err(EngineError::Invalid(format!(
                "CM campaign {cm_campaign_id} is already linked to SF Campaign {}; unlink it first",
                existing.sf_campaign_id
            )));
        }
        if let Some(other) = self.engine.store.cm_campaign_for(sf_campaign_id).await? {
            return Err(EngineError::Invalid(format!(
                "SF Campaign {sf_campaign_id} is already linked to CM campaign {other}; unlink that first"
            )));
        }
        self.set_link_field(&settings, sf_campaign_id, json!(cm_campaign_id))
            .await?;
        let link = LinkRecord {
            cm_campaign_id: cm_campaign_id.to_owned(),
            sf_campaign_id: sf_campaign_id.to_owned(),
            origin: LinkOrigin::Manual,
            linked_at: Utc::now(),
        };
        let outcome = self.engine.store.put_link(&link).await?;
        if outcome == LinkOutcome::Created {
            audit::record(
                self.engine.store.as_ref(),
                Some(&settings),
                actor,
                format!("link of CM campaign {cm_campaign_id} to SF Campaign {sf_campaign_id}"),
                None,
            )
            .await;
            publish(
                &self.engine.publisher,
                &[Event::campaign_linked(
                    cm_campaign_id,
                    sf_campaign_id,
                    LinkOrigin::Manual,
                )],
            )
            .await?;
        }
        Ok(outcome)
    }

    /// Removes a link: clears the link field on the SF Campaign (a Campaign deleted in
    /// Salesforce is fine), forgets the link and the campaign's watermarks, so a later link
    /// reads everything again. `None` if it was not linked.
    /// `actor` goes into the audit.
    pub async fn unlink(&self, cm_campaign_id: &str, actor: &str) -> Result<Option<LinkRecord>, EngineError> {
        let Some(link) = self.engine.store.link(cm_campaign_id).await? else {
            return Ok(None);
        };
        let settings = load_settings(self.engine.store.as_ref()).await?;
        match self.set_link_field(&settings, &link.sf_campaign_id, Value::Null).await {
            Ok(()) => {}
            Err(EngineError::Sf(SfError::Api { code, .. }))
                if matches!(
                    code.as_str(),
                    "ENTITY_IS_DELETED" | "NOT_FOUND" | "INVALID_CROSS_REFERENCE_KEY"
                ) => {}
            Err(error) => return Err(error),
        }
        self.engine.store.delete_link(cm_campaign_id).await?;
        self.engine
            .store
            .reset_watermarks(&Scope::Campaign(cm_campaign_id).key())
            .await?;
        audit::record(
            self.engine.store.as_ref(),
            Some(&settings),
            actor,
            format!(
                "unlink of CM campaign {cm_campaign_id} from SF Campaign {}",
                link.sf_campaign_id
            ),
            None,
        )
        .await;
        Ok(Some(link))
    }

    async fn set_link_field(
        &self,
        settings: &mapping::Settings,
        sf_campaign_id: &str,
        value: Value,
    ) -> Result<(), EngineError> {
        let mut record = Map::new();
        record.insert("Id".into(), json!(sf_campaign_id));
        record.insert(settings.campaign_link_field.clone(), value);
        let results = self
            .engine
            .sf
            .write("Campaign", &Operation::Update, &[record], &WriteOptions::default())
            .await?;
        match results.into_iter().next().map(|r| r.outcome) {
            Some(RecordOutcome::Failed(error)) => Err(SfError::Api {
                status: 400,
                code: error.code,
                message: format!("updating SF Campaign {sf_campaign_id}: {}", error.message),
            }
            .into()),
            Some(_) => Ok(()),
            None => Err(SfError::Decode("no result for the Campaign update".into()).into()),
        }
    }
}
