//! Manual links and unlinks (`cm-sf-admin link` / `unlink`).

use chrono::Utc;
use events::publisher::EventSink;
use events::publisher::Publisher;
use events::{Event, LinkOrigin};
use mapping::settings::{is_cm_id, is_salesforce_id};
use salesforce::{Operation, RecordOutcome, SfClient, SfError, WriteOptions};
use serde_json::{Map, Value, json};
use state::{AuditStore, LeaseStore, LinkOutcome, LinkRecord, LinkStore, Scope, SettingsStore, WatermarkStore};

use super::audit;

use crate::core::{EngineError, load_settings, publish};

/// Links made and removed by an admin. The link field is written with `sf`: the integration's
/// client from the CLI, the signed-in admin's own from the console (their sharing applies and
/// the Campaign's history names them).
pub struct LinkAdmin<'a, S, P> {
    store: &'a S,
    sf: &'a SfClient,
    publisher: &'a Publisher<P>,
}

impl<S, P> std::fmt::Debug for LinkAdmin<'_, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAdmin").finish_non_exhaustive()
    }
}

/// How long an unlink holds the campaign's lease at most (it releases it when done).
const UNLINK_LEASE: chrono::Duration = chrono::Duration::minutes(5);

impl<'a, S: SettingsStore + LinkStore + WatermarkStore + AuditStore + LeaseStore, P: EventSink> LinkAdmin<'a, S, P> {
    /// Links kept in `store`, their field written with `sf`, their syncs asked through
    /// `publisher`.
    pub fn new(store: &'a S, sf: &'a SfClient, publisher: &'a Publisher<P>) -> Self {
        LinkAdmin { store, sf, publisher }
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
        let settings = load_settings(self.store).await?;
        if let Some(existing) = self.store.link(cm_campaign_id).await? {
            if existing.sf_campaign_id == sf_campaign_id {
                return Ok(LinkOutcome::AlreadyLinked);
            }
            return Err(EngineError::Invalid(format!(
                "CM campaign {cm_campaign_id} is already linked to SF Campaign {}; unlink it first",
                existing.sf_campaign_id
            )));
        }
        if let Some(other) = self.store.cm_campaign_for(sf_campaign_id).await? {
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
        let outcome = self.store.put_link(&link).await?;
        if outcome == LinkOutcome::Created {
            audit::record(
                self.store,
                Some(&settings),
                actor,
                format!("link of CM campaign {cm_campaign_id} to SF Campaign {sf_campaign_id}"),
                None,
            )
            .await;
            publish(
                self.publisher,
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
    /// The campaign's lease is held meanwhile: a sync running now would otherwise commit its
    /// watermarks after the reset, and a later link would not read everything again.
    pub async fn unlink(&self, cm_campaign_id: &str, actor: &str) -> Result<Option<LinkRecord>, EngineError> {
        let scope = Scope::CampaignLease(cm_campaign_id).key();
        let owner = format!("unlink#{}", uuid::Uuid::new_v4().simple());
        let now = Utc::now();
        if self
            .store
            .acquire_lease(&scope, &owner, now, now + UNLINK_LEASE)
            .await?
            .is_none()
        {
            return Err(EngineError::RetryLater {
                reason: format!(
                    "a sync of CM campaign {cm_campaign_id} is running; nothing was unlinked: try again when it ends"
                ),
            });
        }
        let unlinked = self.unlink_held(cm_campaign_id, actor).await;
        if let Err(error) = self.store.release_lease(&scope, &owner).await {
            tracing::warn!(%error, "the unlink's campaign lease was not released; it expires on its own");
        }
        unlinked
    }

    async fn unlink_held(&self, cm_campaign_id: &str, actor: &str) -> Result<Option<LinkRecord>, EngineError> {
        let Some(link) = self.store.link(cm_campaign_id).await? else {
            return Ok(None);
        };
        let settings = load_settings(self.store).await?;
        match self.set_link_field(&settings, &link.sf_campaign_id, Value::Null).await {
            Ok(()) => {}
            Err(EngineError::Sf(SfError::Api { code, .. }))
                if matches!(
                    code.as_str(),
                    "ENTITY_IS_DELETED" | "NOT_FOUND" | "INVALID_CROSS_REFERENCE_KEY"
                ) => {}
            Err(error) => return Err(error),
        }
        self.store.delete_link(cm_campaign_id).await?;
        self.store
            .reset_watermarks(&Scope::Campaign(cm_campaign_id).key())
            .await?;
        audit::record(
            self.store,
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
