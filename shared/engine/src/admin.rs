//! What an administrator asks of the engine besides a sync (`cm-sf-admin`): manual links and
//! unlinks, the bounded backfill, retrying a run's failed records, and webhook registration.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use events::publisher::EventSink;
use events::{Event, LinkOrigin};
use mapping::autocreate::{DiscoveredCampaign, Eligibility, backfill_eligibility};
use mapping::settings::{is_cm_id, is_salesforce_id};
use salesforce::{Operation, RecordOutcome, SfError, WriteOptions};
use serde::Serialize;
use serde_json::{Map, Value, json};
use state::{FailedRecord, LinkOutcome, LinkRecord, Store};

use crate::autocreate::AutoCreateOutcome;
use crate::{Engine, EngineError};

/// The CM webhook events the product consumes: `Deactivate` carries unsubscribes and bounces.
pub const WEBHOOK_EVENTS: [campaign_monitor::webhook::WebhookEventType; 1] =
    [campaign_monitor::webhook::WebhookEventType::Deactivate];

/// One backfilled campaign.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillResult {
    /// The CM campaign.
    pub campaign: DiscoveredCampaign,
    /// What happened to it (`None` on a dry run).
    pub outcome: Option<AutoCreateOutcome>,
}

/// What `retry` queued.
#[derive(Debug, Clone, Serialize)]
pub struct RetryQueued {
    /// The CM campaign the run synced.
    pub cm_campaign_id: String,
    /// People (emails) queued for another attempt.
    pub queued: usize,
    /// Failures that are not about a person (e.g. a statistics field): the next sync writes
    /// those again anyway.
    pub not_queued: usize,
    /// The sync run requested to retry them.
    pub run_id: String,
}

/// A webhook of ours on a list, the URL's secret part hidden.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    /// The CM list.
    pub list_id: String,
    /// WebhookID.
    pub webhook_id: String,
    /// URL with the token replaced by `****`.
    pub url: String,
    /// Events.
    pub events: Vec<String>,
    /// CM's status of it.
    pub status: String,
    /// Whether the URL is this deployment's intake URL.
    pub ours: bool,
}

/// What registering did on one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum WebhookChange {
    /// Registered now.
    Created {
        /// The CM list.
        list_id: String,
        /// The new WebhookID.
        webhook_id: String,
    },
    /// There, but deactivated by CM (its URL kept failing): activated again.
    Reactivated {
        /// The CM list.
        list_id: String,
        /// The WebhookID.
        webhook_id: String,
    },
    /// Already there: nothing done.
    AlreadyRegistered {
        /// The CM list.
        list_id: String,
        /// The existing WebhookID.
        webhook_id: String,
    },
    /// Removed.
    Removed {
        /// The CM list.
        list_id: String,
        /// The removed WebhookID.
        webhook_id: String,
    },
}

/// Hides the secret path segment of an intake URL (`…/hooks/<token>` → `…/hooks/****`).
/// Everything after `/hooks/` is hidden, a trailing `/` or a query included; a URL of another
/// shape loses its last path segment.
pub fn redact_webhook_url(url: &str) -> String {
    if let Some((base, _)) = url.split_once("/hooks/") {
        return format!("{base}/hooks/****");
    }
    match url.trim_end_matches('/').rsplit_once('/') {
        Some((base, token)) if !token.is_empty() && !base.ends_with('/') => format!("{base}/****"),
        _ => url.to_owned(),
    }
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Links a CM campaign to an SF Campaign by hand: writes the link field on the SF Campaign,
    /// stores the link and publishes "campaign linked" so the campaign is synced at once.
    /// Refuses (changing nothing) bad ids and either side already linked elsewhere.
    pub async fn link_manually(&self, cm_campaign_id: &str, sf_campaign_id: &str) -> Result<LinkOutcome, EngineError> {
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
        let settings = self.settings().await?;
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
            self.publish(&[Event::campaign_linked(
                cm_campaign_id,
                sf_campaign_id,
                LinkOrigin::Manual,
            )])
            .await?;
        }
        Ok(outcome)
    }

    /// Removes a link: clears the link field on the SF Campaign (a Campaign deleted in
    /// Salesforce is fine), forgets the link and the campaign's watermarks, so a later link
    /// reads everything again. `None` if it was not linked.
    pub async fn unlink(&self, cm_campaign_id: &str) -> Result<Option<LinkRecord>, EngineError> {
        let Some(link) = self.store.link(cm_campaign_id).await? else {
            return Ok(None);
        };
        let settings = self.settings().await?;
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
        self.store.reset_watermarks(cm_campaign_id).await?;
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

    /// The unlinked CM campaigns created or sent within `[from, to]`, oldest first: what a
    /// backfill would create. Refuses an empty or reversed window.
    pub async fn backfill_candidates(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DiscoveredCampaign>, EngineError> {
        if from > to {
            return Err(EngineError::Invalid(format!("--from ({from}) is after --to ({to})")));
        }
        let settings = self.settings().await?;
        let links: BTreeMap<String, String> = self.link_map().await?;
        let mut candidates: Vec<DiscoveredCampaign> = self
            .discover(&settings)
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
    pub async fn backfill_one(
        &self,
        settings: &mapping::Settings,
        campaign: &DiscoveredCampaign,
    ) -> Result<AutoCreateOutcome, EngineError> {
        self.auto_create(settings, campaign, LinkOrigin::Backfill).await
    }

    /// Queues the people a run failed on for one more attempt and requests a sync of the
    /// campaign now. That sync reads those people's whole activity again (CM cannot filter a
    /// campaign's activity by subscriber), applies it, and empties the queue.
    pub async fn retry_run(&self, run_id: &str) -> Result<RetryQueued, EngineError> {
        let Some((run, failures)) = self.store.run(run_id).await? else {
            return Err(EngineError::Invalid(format!(
                "no run `{run_id}` (see `cm-sf-admin runs`)"
            )));
        };
        if self.store.link(&run.scope).await?.is_none() {
            return Err(EngineError::Invalid(format!(
                "run `{run_id}` is not a campaign sync (its scope `{}` is not a linked CM campaign)",
                run.scope
            )));
        }
        let people: BTreeSet<&str> = failures.iter().filter_map(|f| f.person.as_deref()).collect();
        let records: Vec<FailedRecord> = people
            .iter()
            .map(|person| {
                let failure = failures.iter().find(|f| f.person.as_deref() == Some(*person));
                FailedRecord {
                    scope: run.scope.clone(),
                    key: (*person).to_owned(),
                    payload: json!({"run_id": run_id, "code": failure.and_then(|f| f.code.clone())}),
                    reason: failure.map(|f| f.reason.clone()).unwrap_or_default(),
                    attempts: 1,
                    first_failed_at: run.started_at,
                }
            })
            .collect();
        self.store.enqueue_failed(&records).await?;
        let retry_run = crate::new_run_id();
        self.publish(&[Event::sync_requested(
            &retry_run,
            Some(&run.scope),
            false,
            "admin-retry",
        )])
        .await?;
        Ok(RetryQueued {
            cm_campaign_id: run.scope,
            queued: records.len(),
            not_queued: failures.iter().filter(|f| f.person.is_none()).count(),
            run_id: retry_run,
        })
    }

    /// Every webhook on the configured lists; `intake_url` (with its token) marks ours.
    pub async fn webhooks(&self, intake_url: Option<&str>) -> Result<Vec<WebhookView>, EngineError> {
        let settings = self.settings().await?;
        let mut views = Vec::new();
        for list_id in &settings.cm_lists {
            for hook in self.cm.webhooks(list_id).await? {
                views.push(WebhookView {
                    list_id: list_id.clone(),
                    ours: intake_url.is_some_and(|url| same_url(&hook.url, url)),
                    url: redact_webhook_url(&hook.url),
                    webhook_id: hook.webhook_id,
                    events: hook.events,
                    status: hook.status,
                });
            }
        }
        Ok(views)
    }

    /// Registers `intake_url` for [`WEBHOOK_EVENTS`] on every configured list that does not
    /// have it yet.
    pub async fn register_webhooks(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        let settings = self.settings().await?;
        if settings.cm_lists.is_empty() {
            return Err(EngineError::Invalid(
                "no lists configured: add their ids to `cm_lists` in the settings first".into(),
            ));
        }
        let mut changes = Vec::new();
        for list_id in &settings.cm_lists {
            let existing = self.cm.webhooks(list_id).await?;
            if let Some(hook) = existing.iter().find(|h| same_url(&h.url, intake_url)) {
                if hook.status.eq_ignore_ascii_case("Active") {
                    changes.push(WebhookChange::AlreadyRegistered {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id.clone(),
                    });
                } else {
                    self.cm.activate_webhook(list_id, &hook.webhook_id).await?;
                    changes.push(WebhookChange::Reactivated {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id.clone(),
                    });
                }
                continue;
            }
            let webhook_id = self.cm.create_webhook(list_id, intake_url, &WEBHOOK_EVENTS).await?;
            changes.push(WebhookChange::Created {
                list_id: list_id.clone(),
                webhook_id,
            });
        }
        Ok(changes)
    }

    /// Removes this deployment's webhooks (those posting to `intake_url`) from the configured
    /// lists; other webhooks are left alone.
    pub async fn remove_webhooks(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        let settings = self.settings().await?;
        let mut changes = Vec::new();
        for list_id in &settings.cm_lists {
            for hook in self.cm.webhooks(list_id).await? {
                if same_url(&hook.url, intake_url) {
                    self.cm.delete_webhook(list_id, &hook.webhook_id).await?;
                    changes.push(WebhookChange::Removed {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id,
                    });
                }
            }
        }
        Ok(changes)
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_in_an_intake_url_is_hidden() {
        assert_eq!(
            redact_webhook_url("https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken"),
            "https://x.lambda-url.eu-west-1.on.aws/hooks/****"
        );
        for leaky in [
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken/",
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken?x=1",
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken//",
        ] {
            assert_eq!(
                redact_webhook_url(leaky),
                "https://x.lambda-url.eu-west-1.on.aws/hooks/****",
                "{leaky}"
            );
        }
        assert_eq!(
            redact_webhook_url("https://proxy.example/in/s3cr3t/"),
            "https://proxy.example/in/****"
        );
        assert_eq!(redact_webhook_url("https://proxy.example"), "https://proxy.example");
        assert!(same_url("https://a/hooks/T/", "https://a/hooks/T"));
        assert!(!same_url("https://a/hooks/T", "https://a/hooks/U"));
    }
}
