//! Auto-creation of SF Campaigns for discovered CM campaigns (PRODUCT.md §3.2): eligibility
//! checked again, the Campaign upserted on the link field (a retry or a race never makes two),
//! its statuses prepared, the link stored, and "campaign linked" published.

use chrono::Utc;
use events::publisher::EventSink;
use events::{Event, LinkOrigin};
use mapping::autocreate::{DiscoveredCampaign, Eligibility, auto_create_eligibility, render_campaign};
use mapping::statuses::plan_statuses;
use salesforce::{Operation, RecordOutcome, SfError, WriteOptions};
use serde::Serialize;
use serde_json::{Map, json};
use state::{FailedRecord, LinkOutcome, LinkRecord, LinkStore, RetryQueue, Scope};

use crate::core::{Engine, EngineError, publish};
use crate::salesforce_io::{reads, writes};

/// What auto-creation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AutoCreateOutcome {
    /// Created (or found, on a retry) and linked.
    Linked {
        /// The SF Campaign.
        sf_campaign_id: String,
        /// Whether this call created it.
        created: bool,
    },
    /// Not eligible (any more).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Salesforce refused the Campaign for good (a validation rule, a required field, a
    /// permission): recorded, and not tried again by the schedule until an admin asks
    /// (`cm-sf-admin backfill` over its dates).
    Refused {
        /// Salesforce's reason.
        reason: String,
    },
}

/// Refused creations are kept in the retry queue under [`Scope::AutocreateRefused`] (one
/// record per CM campaign): the schedule leaves them alone; a backfill (an admin asking) tries
/// again and clears the record on success.
fn refused_scope() -> String {
    Scope::AutocreateRefused.key()
}

/// Auto-creation: an SF Campaign for a discovered CM campaign, and the link.
#[derive(Debug)]
pub struct AutoCreate<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: LinkStore + RetryQueue, P: EventSink> AutoCreate<'e, S, P> {
    /// Auto-creation for `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        AutoCreate { engine }
    }

    /// Creates and links the SF Campaign for a discovered CM campaign.
    pub async fn create(
        &self,
        settings: &mapping::Settings,
        campaign: &DiscoveredCampaign,
        origin: LinkOrigin,
    ) -> Result<AutoCreateOutcome, EngineError> {
        let linked = self.engine.store.link(&campaign.cm_campaign_id).await?;
        if origin == LinkOrigin::AutoCreated
            && let Eligibility::Ineligible { why } =
                auto_create_eligibility(campaign, settings, linked.as_ref().map(|l| l.sf_campaign_id.as_str()))
        {
            return Ok(AutoCreateOutcome::Skipped {
                reason: format!("{why:?}"),
            });
        }
        // An event names the campaign; Campaign Monitor says what it is (its name, state and
        // dates), and whether it exists at all for that client. Checked again on CM's version.
        let confirmed;
        let campaign = if origin == LinkOrigin::AutoCreated && linked.is_none() {
            let Some(found) = crate::discovery::confirm(&self.engine.cm, campaign).await? else {
                tracing::warn!(cm_campaign = %campaign.cm_campaign_id, "a discovered campaign is not in Campaign Monitor for its client; nothing created");
                return Ok(AutoCreateOutcome::Skipped {
                    reason: "not found in Campaign Monitor for its client".into(),
                });
            };
            if let Eligibility::Ineligible { why } = auto_create_eligibility(&found, settings, None) {
                return Ok(AutoCreateOutcome::Skipped {
                    reason: format!("{why:?}"),
                });
            }
            confirmed = found;
            &confirmed
        } else {
            campaign
        };
        if let Some(link) = linked {
            return Ok(AutoCreateOutcome::Skipped {
                reason: format!("already linked to {}", link.sf_campaign_id),
            });
        }
        let (sf_campaign_id, created) = match self.upsert_campaign(settings, campaign).await {
            Ok(done) => done,
            Err(error) if !error.is_retryable() => return self.record_refusal(campaign, &error).await,
            Err(error) => return Err(error),
        };

        // The new campaign's statuses, per the mapping.
        let existing = reads::read_statuses(&self.engine.sf, &sf_campaign_id).await?;
        let statuses = plan_statuses(&existing, settings);
        if !statuses.create.is_empty() {
            writes::create_statuses(&self.engine.sf, &sf_campaign_id, &statuses.create).await?;
        }

        let link = LinkRecord {
            cm_campaign_id: campaign.cm_campaign_id.clone(),
            sf_campaign_id: sf_campaign_id.clone(),
            origin,
            linked_at: Utc::now(),
        };
        self.engine
            .store
            .remove_failed(&refused_scope(), std::slice::from_ref(&campaign.cm_campaign_id))
            .await?;
        if self.engine.store.put_link(&link).await? == LinkOutcome::Created {
            publish(
                &self.engine.publisher,
                &[Event::campaign_linked(
                    &campaign.cm_campaign_id,
                    &sf_campaign_id,
                    origin,
                )],
            )
            .await?;
        }
        tracing::info!(cm_campaign = %campaign.cm_campaign_id, sf_campaign = %sf_campaign_id, created, "campaign linked");
        Ok(AutoCreateOutcome::Linked {
            sf_campaign_id,
            created,
        })
    }

    /// A creation Salesforce refused for good: kept with its reason (and logged once at ERROR),
    /// so the schedule stops asking every run and an admin sees why.
    async fn record_refusal(
        &self,
        campaign: &DiscoveredCampaign,
        error: &EngineError,
    ) -> Result<AutoCreateOutcome, EngineError> {
        tracing::error!(cm_campaign = %campaign.cm_campaign_id, error = %crate::core::redacted(&error), "Salesforce refused to create the campaign; not retried until an admin asks");
        let earlier = self
            .engine
            .store
            .failed_records(&refused_scope(), 10_000)
            .await?
            .into_iter()
            .find(|r| r.key == campaign.cm_campaign_id);
        self.engine
            .store
            .enqueue_failed(&[FailedRecord {
                scope: refused_scope(),
                key: campaign.cm_campaign_id.clone(),
                payload: json!({"name": campaign.name}),
                reason: error.to_string(),
                attempts: earlier.as_ref().map_or(1, |r| r.attempts + 1),
                first_failed_at: earlier.map_or_else(Utc::now, |r| r.first_failed_at),
            }])
            .await?;
        Ok(AutoCreateOutcome::Refused {
            reason: error.to_string(),
        })
    }

    /// The SF Campaign, upserted on the link field: a retry or a race finds the one made first.
    async fn upsert_campaign(
        &self,
        settings: &mapping::Settings,
        campaign: &DiscoveredCampaign,
    ) -> Result<(String, bool), EngineError> {
        let new = render_campaign(campaign, &settings.campaign_template, &settings.campaign_link_field);
        let mut record = Map::new();
        record.insert(new.link_field.clone(), json!(new.cm_campaign_id));
        record.insert("Name".into(), json!(new.name));
        record.insert("IsActive".into(), json!(new.is_active));
        for (field, value) in [
            ("Type", &new.campaign_type),
            ("Status", &new.status),
            ("ParentId", &new.parent_id),
            ("StartDate", &new.start_date),
        ] {
            if let Some(value) = value {
                record.insert(field.into(), json!(value));
            }
        }
        let upsert = Operation::Upsert {
            external_id_field: settings.campaign_link_field.clone(),
        };
        let results = self
            .engine
            .sf
            .write("Campaign", &upsert, &[record], &WriteOptions::default())
            .await?;
        match results.into_iter().next().map(|r| r.outcome) {
            Some(RecordOutcome::Created(id)) => Ok((id, true)),
            Some(RecordOutcome::Updated(id)) => Ok((id, false)),
            Some(RecordOutcome::Failed(error)) => Err(SfError::Api {
                status: 400,
                code: error.code,
                message: format!("creating the SF Campaign: {}", error.message),
            }
            .into()),
            _ => Err(SfError::Decode("no result for the campaign upsert".into()).into()),
        }
    }
}
