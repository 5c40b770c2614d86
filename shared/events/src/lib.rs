//! The events the functions hand each other through EventBridge, defined once here and used by
//! publishers and consumers alike (PRODUCT.md §4), and a [`publisher::Publisher`] that reads
//! `FailedEntryCount` and retries exactly the failed entries.
//!
//! Every event has:
//! - `source` = [`SOURCE`];
//! - a versioned `detail-type` (e.g. `campaign-discovered.v1`): a breaking change of a detail
//!   schema gets a new version, so old and new consumers can run side by side;
//! - an `idempotency_key` in the detail, derived from what the event is about, so a consumer can
//!   recognise a redelivery (EventBridge and Lambda deliver at least once).
//!
//! Details carry ids, not personal data: a webhook batch event carries the key of the batch
//! recorded in the state table, never an email address.

pub mod publisher;

use chrono::{DateTime, Utc};
use mapping::autocreate::DiscoveredCampaign;
pub use mapping::autocreate::LinkOrigin;
use serde::{Deserialize, Serialize};

/// The `source` of every event this product emits.
pub const SOURCE: &str = "cm-sf-sync";

/// A CM campaign found by discovery that qualifies for auto-creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDiscovered {
    /// `discovered:<cm campaign id>`: one SF Campaign per CM campaign, however often found.
    pub idempotency_key: String,
    /// The run that found it.
    pub run_id: String,
    /// The campaign.
    pub campaign: DiscoveredCampaign,
}

/// A CM campaign was linked to an SF Campaign; sync it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignLinked {
    /// `linked:<cm id>:<sf id>`.
    pub idempotency_key: String,
    /// CM CampaignID.
    pub cm_campaign_id: String,
    /// SF Campaign Id.
    pub sf_campaign_id: String,
    /// How.
    pub origin: LinkOrigin,
}

/// Sync one linked campaign (the fan-out of a scheduled run), or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSyncRequested {
    /// `sync:<run id>:<cm id or "all">`.
    pub idempotency_key: String,
    /// The run this request belongs to.
    pub run_id: String,
    /// The campaign, or `None` for every linked campaign.
    pub cm_campaign_id: Option<String>,
    /// Compute and report the plan; write nothing.
    pub dry_run: bool,
    /// Who asked: `schedule`, `admin`, ...
    pub requested_by: String,
}

/// A sync stopped early (Lambda deadline near) and continues in a new invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncContinuation {
    /// `continue:<run id>:<cm id>:<sequence>`.
    pub idempotency_key: String,
    /// The run.
    pub run_id: String,
    /// The campaign.
    pub cm_campaign_id: String,
    /// How many continuations came before (guards against a loop that never progresses).
    pub sequence: u32,
}

/// A CM webhook event was recorded in the state table; apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBatchReceived {
    /// `webhook-batch:<batch>`.
    pub idempotency_key: String,
    /// The recorded batch (its key in the state table): the events themselves stay there, so
    /// the event stays small whatever the delivery's size.
    pub batch: String,
    /// The CM list.
    pub list_id: String,
    /// Events of the batch to apply.
    pub events: usize,
    /// When the intake recorded it.
    pub received_at: DateTime<Utc>,
}

/// An admin asked what a settings change would do on recent campaigns (the console's
/// preview). The proposed settings and the campaigns wait in the state table under
/// `preview_id`; the sync function plans each campaign under both settings (writing nothing
/// to CM or SF) and stores the comparison there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPreviewRequested {
    /// `preview:<preview id>`.
    pub idempotency_key: String,
    /// The preview's id in the state table.
    pub preview_id: String,
}

/// An admin asked for the catalog of CM campaigns to be read again (the console's campaign
/// picker and backfill preview read it; the console holds no CM credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRefreshRequested {
    /// `catalog:<request id>`.
    pub idempotency_key: String,
    /// Who asked (a Salesforce user id).
    pub requested_by: String,
}

/// An admin confirmed a backfill from the console: the sync function finds the unlinked CM
/// campaigns of the window again (CM is the truth, not the preview) and creates their SF
/// Campaigns, as `cm-sf-admin backfill` does. A redelivery creates nothing twice: a campaign
/// linked by the first delivery is no longer a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequested {
    /// `backfill:<request id>`.
    pub idempotency_key: String,
    /// First day, in the settings' CM time zone.
    pub from: chrono::NaiveDate,
    /// Last day (inclusive).
    pub to: chrono::NaiveDate,
    /// Refuse, creating nothing, when more campaigns than this are in the window.
    pub max: usize,
    /// Who asked (a Salesforce user id), for the audit.
    pub requested_by: String,
}

/// Every event the product emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `campaign-discovered.v1`
    CampaignDiscovered(CampaignDiscovered),
    /// `campaign-linked.v1`
    CampaignLinked(CampaignLinked),
    /// `campaign-sync-requested.v1`
    CampaignSyncRequested(CampaignSyncRequested),
    /// `sync-continuation.v1`
    SyncContinuation(SyncContinuation),
    /// `webhook-batch-received.v1`
    WebhookBatchReceived(WebhookBatchReceived),
    /// `settings-preview-requested.v1`
    SettingsPreviewRequested(SettingsPreviewRequested),
    /// `catalog-refresh-requested.v1`
    CatalogRefreshRequested(CatalogRefreshRequested),
    /// `backfill-requested.v1`
    BackfillRequested(BackfillRequested),
}

/// An EventBridge event this crate cannot read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not one of ours.
    #[error("unknown event: source `{event_source}`, detail-type `{detail_type}`")]
    Unknown {
        /// The source.
        event_source: String,
        /// The detail-type.
        detail_type: String,
    },
    /// Ours, but the detail does not fit its schema.
    #[error("malformed `{detail_type}` detail: {error}")]
    Malformed {
        /// The detail-type.
        detail_type: String,
        /// What serde said.
        error: serde_json::Error,
    },
}

impl Event {
    /// The detail-types, as the infrastructure's rules must match them.
    pub const DETAIL_TYPES: [&'static str; 8] = [
        "campaign-discovered.v1",
        "campaign-linked.v1",
        "campaign-sync-requested.v1",
        "sync-continuation.v1",
        "webhook-batch-received.v1",
        "settings-preview-requested.v1",
        "catalog-refresh-requested.v1",
        "backfill-requested.v1",
    ];

    /// This event's detail-type.
    pub fn detail_type(&self) -> &'static str {
        let index = match self {
            Event::CampaignDiscovered(_) => 0,
            Event::CampaignLinked(_) => 1,
            Event::CampaignSyncRequested(_) => 2,
            Event::SyncContinuation(_) => 3,
            Event::WebhookBatchReceived(_) => 4,
            Event::SettingsPreviewRequested(_) => 5,
            Event::CatalogRefreshRequested(_) => 6,
            Event::BackfillRequested(_) => 7,
        };
        Self::DETAIL_TYPES[index]
    }

    /// The idempotency key in the detail.
    pub fn idempotency_key(&self) -> &str {
        match self {
            Event::CampaignDiscovered(e) => &e.idempotency_key,
            Event::CampaignLinked(e) => &e.idempotency_key,
            Event::CampaignSyncRequested(e) => &e.idempotency_key,
            Event::SyncContinuation(e) => &e.idempotency_key,
            Event::WebhookBatchReceived(e) => &e.idempotency_key,
            Event::SettingsPreviewRequested(e) => &e.idempotency_key,
            Event::CatalogRefreshRequested(e) => &e.idempotency_key,
            Event::BackfillRequested(e) => &e.idempotency_key,
        }
    }

    /// The detail as JSON.
    pub fn detail(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Event::CampaignDiscovered(e) => serde_json::to_value(e),
            Event::CampaignLinked(e) => serde_json::to_value(e),
            Event::CampaignSyncRequested(e) => serde_json::to_value(e),
            Event::SyncContinuation(e) => serde_json::to_value(e),
            Event::WebhookBatchReceived(e) => serde_json::to_value(e),
            Event::SettingsPreviewRequested(e) => serde_json::to_value(e),
            Event::CatalogRefreshRequested(e) => serde_json::to_value(e),
            Event::BackfillRequested(e) => serde_json::to_value(e),
        }
    }

    /// Reads an event from the parts EventBridge delivers (`source`, `detail-type`, `detail`).
    pub fn from_parts(source: &str, detail_type: &str, detail: serde_json::Value) -> Result<Event, EventError> {
        fn parse<T: serde::de::DeserializeOwned>(
            detail_type: &str,
            detail: serde_json::Value,
        ) -> Result<T, EventError> {
            serde_json::from_value(detail).map_err(|error| EventError::Malformed {
                detail_type: detail_type.to_owned(),
                error,
            })
        }
        let unknown = || EventError::Unknown {
            event_source: source.to_owned(),
            detail_type: detail_type.to_owned(),
        };
        if source != SOURCE {
            return Err(unknown());
        }
        Ok(match detail_type {
            "campaign-discovered.v1" => Event::CampaignDiscovered(parse(detail_type, detail)?),
            "campaign-linked.v1" => Event::CampaignLinked(parse(detail_type, detail)?),
            "campaign-sync-requested.v1" => Event::CampaignSyncRequested(parse(detail_type, detail)?),
            "sync-continuation.v1" => Event::SyncContinuation(parse(detail_type, detail)?),
            "webhook-batch-received.v1" => Event::WebhookBatchReceived(parse(detail_type, detail)?),
            "settings-preview-requested.v1" => Event::SettingsPreviewRequested(parse(detail_type, detail)?),
            "catalog-refresh-requested.v1" => Event::CatalogRefreshRequested(parse(detail_type, detail)?),
            "backfill-requested.v1" => Event::BackfillRequested(parse(detail_type, detail)?),
            _ => return Err(unknown()),
        })
    }

    /// `campaign-discovered.v1` for a campaign.
    pub fn campaign_discovered(run_id: &str, campaign: DiscoveredCampaign) -> Event {
        Event::CampaignDiscovered(CampaignDiscovered {
            idempotency_key: format!("discovered:{}", campaign.cm_campaign_id),
            run_id: run_id.to_owned(),
            campaign,
        })
    }

    /// `campaign-linked.v1`.
    pub fn campaign_linked(cm_campaign_id: &str, sf_campaign_id: &str, origin: LinkOrigin) -> Event {
        Event::CampaignLinked(CampaignLinked {
            idempotency_key: format!("linked:{cm_campaign_id}:{sf_campaign_id}"),
            cm_campaign_id: cm_campaign_id.to_owned(),
            sf_campaign_id: sf_campaign_id.to_owned(),
            origin,
        })
    }

    /// `campaign-sync-requested.v1`.
    pub fn sync_requested(run_id: &str, cm_campaign_id: Option<&str>, dry_run: bool, requested_by: &str) -> Event {
        Event::CampaignSyncRequested(CampaignSyncRequested {
            idempotency_key: format!("sync:{run_id}:{}", cm_campaign_id.unwrap_or("all")),
            run_id: run_id.to_owned(),
            cm_campaign_id: cm_campaign_id.map(str::to_owned),
            dry_run,
            requested_by: requested_by.to_owned(),
        })
    }

    /// `sync-continuation.v1`.
    pub fn sync_continuation(run_id: &str, cm_campaign_id: &str, sequence: u32) -> Event {
        Event::SyncContinuation(SyncContinuation {
            idempotency_key: format!("continue:{run_id}:{cm_campaign_id}:{sequence}"),
            run_id: run_id.to_owned(),
            cm_campaign_id: cm_campaign_id.to_owned(),
            sequence,
        })
    }

    /// `settings-preview-requested.v1` for the preview stored under `preview_id`.
    pub fn settings_preview_requested(preview_id: &str) -> Event {
        Event::SettingsPreviewRequested(SettingsPreviewRequested {
            idempotency_key: format!("preview:{preview_id}"),
            preview_id: preview_id.to_owned(),
        })
    }

    /// `catalog-refresh-requested.v1`, asked by `requested_by` (request `request_id`).
    pub fn catalog_refresh_requested(request_id: &str, requested_by: &str) -> Event {
        Event::CatalogRefreshRequested(CatalogRefreshRequested {
            idempotency_key: format!("catalog:{request_id}"),
            requested_by: requested_by.to_owned(),
        })
    }

    /// `backfill-requested.v1` of the days `[from, to]`, asked by `requested_by`.
    pub fn backfill_requested(
        request_id: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        max: usize,
        requested_by: &str,
    ) -> Event {
        Event::BackfillRequested(BackfillRequested {
            idempotency_key: format!("backfill:{request_id}"),
            from,
            to,
            max,
            requested_by: requested_by.to_owned(),
        })
    }

    /// `webhook-batch-received.v1` for a batch of webhook events recorded under `batch`.
    pub fn webhook_batch_received(batch: &str, list_id: &str, events: usize, received_at: DateTime<Utc>) -> Event {
        Event::WebhookBatchReceived(WebhookBatchReceived {
            idempotency_key: format!("webhook-batch:{batch}"),
            batch: batch.to_owned(),
            list_id: list_id.to_owned(),
            events,
            received_at,
        })
    }
}

impl Event {
    /// The function (crate under `functions/`) that consumes each detail-type; the
    /// infrastructure's rules route by this (`tests/template_routing.rs` checks the template).
    pub fn consumer_of(detail_type: &str) -> Option<&'static str> {
        match detail_type {
            "campaign-discovered.v1" => Some("campaign-autocreate"),
            "campaign-linked.v1"
            | "campaign-sync-requested.v1"
            | "sync-continuation.v1"
            | "settings-preview-requested.v1"
            | "catalog-refresh-requested.v1"
            | "backfill-requested.v1" => Some("scheduled-sync"),
            "webhook-batch-received.v1" => Some("webhook-consumer"),
            _ => None,
        }
    }

    /// One event of each kind, in the order of [`Event::DETAIL_TYPES`]: for tests that must
    /// cover every kind the code emits.
    pub fn examples() -> Vec<Event> {
        let now = Utc::now();
        vec![
            Event::campaign_discovered(
                "run-1",
                DiscoveredCampaign {
                    cm_campaign_id: "c1".into(),
                    cm_client_id: "client".into(),
                    name: "News".into(),
                    subject: "Hi".into(),
                    state: mapping::autocreate::CmCampaignState::Sent,
                    created_at: None,
                    sent_at: Some(now),
                },
            ),
            Event::campaign_linked("c1", "701A", LinkOrigin::AutoCreated),
            Event::sync_requested("run-1", Some("c1"), false, "schedule"),
            Event::sync_continuation("run-1", "c1", 2),
            Event::webhook_batch_received("2026-11-27T10:00:00Z#b1", "list-1", 1000, now),
            Event::settings_preview_requested("20261127T100000Z-0000abcd"),
            Event::catalog_refresh_requested("20261127T100000Z-0000abce", "005SB00000000A1AAA"),
            Event::backfill_requested(
                "20261127T100000Z-0000abcf",
                chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
                chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap_or_default(),
                200,
                "005SB00000000A1AAA",
            ),
        ]
    }
}

/// The `schedule` of the hot schedule's input detail.
pub const HOT_SCHEDULE: &str = "hot";

/// Whether a payload is a scheduled trigger: a classic EventBridge schedule rule
/// (`aws.events`) or EventBridge Scheduler with the input the template gives it (`aws.scheduler`).
pub fn is_schedule_trigger(source: &str, detail_type: &str) -> bool {
    matches!(source, "aws.events" | "aws.scheduler") && detail_type == "Scheduled Event"
}

/// The EventBridge envelope a function receives (`aws_lambda_events`' type).
pub type EventBridgeEvent = aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>;

impl TryFrom<EventBridgeEvent> for Event {
    type Error = EventError;

    fn try_from(envelope: EventBridgeEvent) -> Result<Event, EventError> {
        Event::from_parts(&envelope.source, &envelope.detail_type, envelope.detail)
    }
}

/// What can invoke a function through EventBridge: the schedule, or one of our events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule (EventBridge Scheduler with the template's input, or a classic rule).
    Schedule,
    /// The hot schedule: the same input with `"schedule": "hot"` in its detail (campaigns in
    /// their first hours, every few minutes).
    HotSchedule,
    /// One of the product's events.
    Event(Event),
}

impl TryFrom<EventBridgeEvent> for Trigger {
    type Error = EventError;

    fn try_from(envelope: EventBridgeEvent) -> Result<Trigger, EventError> {
        if is_schedule_trigger(&envelope.source, &envelope.detail_type) {
            return Ok(match envelope.detail.get("schedule").and_then(|s| s.as_str()) {
                Some(HOT_SCHEDULE) => Trigger::HotSchedule,
                _ => Trigger::Schedule,
            });
        }
        Event::try_from(envelope).map(Trigger::Event)
    }
}

impl Event {
    /// This event as EventBridge delivers it to a target (for fixtures and tests).
    pub fn to_envelope(&self) -> serde_json::Result<EventBridgeEvent> {
        let mut envelope = EventBridgeEvent::default();
        envelope.version = Some("0".into());
        envelope.source = SOURCE.into();
        envelope.detail_type = self.detail_type().into();
        envelope.detail = self.detail()?;
        Ok(envelope)
    }
}

/// The EventBridge rule pattern that routes one detail-type to its consumer. The infrastructure
/// template uses exactly these patterns (`tests/template_routing.rs` compares them).
pub fn rule_pattern(detail_types: &[&str]) -> serde_json::Value {
    serde_json::json!({ "source": [SOURCE], "detail-type": detail_types })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn every_event_round_trips_through_its_parts() {
        let events = Event::examples();
        let types: Vec<&str> = events.iter().map(Event::detail_type).collect();
        assert_eq!(types, Event::DETAIL_TYPES);
        for event in events {
            let detail = event.detail().unwrap();
            let back = Event::from_parts(SOURCE, event.detail_type(), detail).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn envelopes_read_as_events_or_the_schedule() {
        for event in Event::examples() {
            let envelope = event.to_envelope().unwrap();
            let json = serde_json::to_value(&envelope).unwrap();
            assert_eq!(json["detail-type"], event.detail_type());
            let back: EventBridgeEvent = serde_json::from_value(json).unwrap();
            assert_eq!(Trigger::try_from(back).unwrap(), Trigger::Event(event));
        }
        let schedule: EventBridgeEvent = serde_json::from_value(serde_json::json!(
            {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}
        ))
        .unwrap();
        assert_eq!(Trigger::try_from(schedule).unwrap(), Trigger::Schedule);
        let hot: EventBridgeEvent = serde_json::from_value(serde_json::json!(
            {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {"schedule": "hot"}}
        ))
        .unwrap();
        assert_eq!(Trigger::try_from(hot).unwrap(), Trigger::HotSchedule);
    }

    #[test]
    fn foreign_or_malformed_events_are_refused_clearly() {
        let detail = serde_json::json!({"idempotency_key": "x"});
        assert!(matches!(
            Event::from_parts("aws.events", "campaign-linked.v1", detail.clone()),
            Err(EventError::Unknown { .. })
        ));
        assert!(matches!(
            Event::from_parts(SOURCE, "campaign-linked.v9", detail.clone()),
            Err(EventError::Unknown { .. })
        ));
        let error = Event::from_parts(SOURCE, "campaign-linked.v1", detail).unwrap_err();
        assert!(error.to_string().contains("missing field `cm_campaign_id`"), "{error}");
    }

    #[test]
    fn idempotency_keys_name_what_the_event_is_about() {
        assert_eq!(
            Event::campaign_linked("c1", "701A", LinkOrigin::Manual).idempotency_key(),
            "linked:c1:701A"
        );
        assert_eq!(
            Event::sync_requested("r", None, true, "admin").idempotency_key(),
            "sync:r:all"
        );
    }
}
