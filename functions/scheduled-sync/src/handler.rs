//! The Lambda edge of scheduled-sync: an EventBridge envelope in, one engine call, its outcome
//! out. Every routed detail-type has a fixture in `fixtures/` (usable with
//! `cargo lambda invoke --data-file`) and a test below.

use engine::EngineError;
use engine::campaign::Mode;
use events::publisher::EventSink;
use events::{Event, EventBridgeEvent, Trigger};
use lambda_runtime::LambdaEvent;
use lambda_support::{Container, HandlerError, Invocation, deadline};
use serde_json::Value;
use state::Store;

/// Handles one invocation.
pub(crate) async fn handle<S: Store, P: EventSink>(
    container: &Container<S, P>,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Value, HandlerError> {
    let (envelope, context) = event.into_parts();
    let trigger = Trigger::try_from(envelope).map_err(|e| EngineError::UnexpectedEvent(e.to_string()))?;
    let Invocation { engine, settings } = container.invocation().await?;
    let stop = deadline(&context, engine::work_margin(&engine));
    // Each arm returns a small summary (Lambda caps a response at 6 MB; plans carry addresses).
    let outcome = match trigger {
        Trigger::Schedule => scheduled(engine.run_scheduled(&settings, &engine::new_run_id()).await?)?,
        Trigger::HotSchedule => serde_json::to_value(engine.run_hot(&settings, &engine::new_run_id()).await?)
            .map_err(|e| EngineError::Invalid(format!("hot run outcome: {e}")))?,
        Trigger::Event(Event::CampaignSyncRequested(request)) => match request.cm_campaign_id {
            Some(cm_id) => {
                let mode = if request.dry_run { Mode::DryRun } else { Mode::APPLY };
                let synced = engine.sync_campaign(&settings, &cm_id, &request.run_id, mode, stop);
                synced.await?.summary()
            }
            None if request.dry_run => engine.plan_scheduled(&settings, &request.run_id).await?.summary(),
            None => scheduled(engine.run_scheduled(&settings, &request.run_id).await?)?,
        },
        Trigger::Event(Event::CampaignLinked(linked)) => {
            let run_id = engine::new_run_id();
            let synced = engine.sync_campaign(&settings, &linked.cm_campaign_id, &run_id, Mode::APPLY, stop);
            synced.await?.summary()
        }
        Trigger::Event(Event::SyncContinuation(next)) => {
            let mode = Mode::Apply {
                continuation: next.sequence,
            };
            let synced = engine.sync_campaign(&settings, &next.cm_campaign_id, &next.run_id, mode, stop);
            synced.await?.summary()
        }
        Trigger::Event(Event::SettingsPreviewRequested(asked)) => {
            let preview = engine::admin::preview::SettingsPreview::new(&engine);
            let impacts = preview.answer(&settings, &asked.preview_id).await?;
            serde_json::json!({"preview_id": asked.preview_id, "campaigns": impacts.len()})
        }
        Trigger::Event(Event::CatalogRefreshRequested(asked)) => {
            let catalog = engine.refresh_catalog(&settings).await?;
            serde_json::json!({"campaigns": catalog.campaigns.len(), "requested_by": asked.requested_by})
        }
        Trigger::Event(Event::BackfillRequested(asked)) => {
            let request = engine::admin::backfill::BackfillRequest {
                from: asked.from,
                to: asked.to,
                max: asked.max,
                dry_run: false,
                max_named: "the most one backfill creates,",
            };
            let results = engine
                .backfill(&settings, request, &asked.requested_by, |_, _, _| {})
                .await?;
            serde_json::json!({"from": asked.from, "to": asked.to, "campaigns": results.len()})
        }
        Trigger::Event(other) => return Err(EngineError::UnexpectedEvent(other.detail_type().to_owned()).into()),
    };
    Ok(outcome)
}

/// A scheduled run's summary; one skipped because another held the lease fails retryable, so
/// Lambda runs it again (and, past its retries, the failed-invocations alarm says so).
fn scheduled(outcome: engine::tick::DiscoveryOutcome) -> Result<Value, EngineError> {
    if outcome.busy {
        return Err(EngineError::RetryLater {
            reason: "another scheduled run holds the lease".into(),
        });
    }
    Ok(outcome.summary())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;
    use events::LinkOrigin;
    use events::publisher::MemorySink;
    use lambda_runtime::Diagnostic;
    use sandbox::generate::{Shape, generate};
    use state::memory::MemoryStore;
    use state::{AuditStore, CatalogStore, LinkRecord, LinkStore, PreviewStore, SettingsStore};

    const SF_CAMPAIGN: &str = "701000SB0000000001";

    struct Setup {
        /// Serves CM and SF while the test runs.
        _running: sandbox::Running,
        container: Container<MemoryStore, MemorySink>,
        cm_campaign: String,
    }

    async fn setup() -> Setup {
        setup_with(Shape {
            recipients: 200,
            ..Shape::default()
        })
        .await
    }

    async fn setup_with(shape: Shape) -> Setup {
        let scenario = generate(&shape);
        let (running, container) = harness::sandboxed_container(&scenario, |_| {}).await.unwrap();
        let cm_campaign = harness::campaign_named(&scenario, "November newsletter").unwrap();
        Setup {
            _running: running,
            container,
            cm_campaign,
        }
    }

    impl Setup {
        async fn link(&self) {
            self.container
                .store()
                .put_link(&LinkRecord {
                    cm_campaign_id: self.cm_campaign.clone(),
                    sf_campaign_id: SF_CAMPAIGN.into(),
                    origin: LinkOrigin::Manual,
                    linked_at: chrono::Utc::now(),
                })
                .await
                .unwrap();
        }

        /// A fixture, with its CM campaign id replaced by the scenario's.
        fn fixture(&self, text: &str) -> LambdaEvent<EventBridgeEvent> {
            let text = text.replace("0123456789abcdef0123456789abcdef", &self.cm_campaign);
            LambdaEvent::new(serde_json::from_str(&text).unwrap(), lambda_runtime::Context::default())
        }

        async fn invoke(&self, text: &str) -> Result<Value, HandlerError> {
            handle(&self.container, self.fixture(text)).await
        }

        fn published(&self) -> Vec<String> {
            let events = self.container.publisher().sink().events();
            events.iter().map(|e| e.detail_type().to_owned()).collect()
        }
    }

    #[tokio::test]
    async fn the_schedule_discovers_campaigns_and_requests_a_sync_per_linked_campaign() {
        let s = setup().await;
        s.link().await;
        let outcome = s.invoke(include_str!("../fixtures/schedule.json")).await.unwrap();
        assert_eq!(outcome["syncs_requested"], 1, "{outcome}");
        assert!(outcome["discovered"].as_u64().unwrap() >= 1, "{outcome}");
        assert_eq!(s.published(), ["campaign-sync-requested.v1"]);
        // The console's names and picker: kept by the run from what it discovered anyway.
        let catalog = s.container.store().catalog().await.unwrap().expect("kept by the run");
        assert!(catalog.campaign(&s.cm_campaign).is_some());
    }

    #[tokio::test]
    async fn the_hot_schedule_requests_syncs_of_young_campaigns_only() {
        let s = setup().await;
        s.link().await;
        let control = harness::Control::of(&s._running);
        // Sent 2026-11-02 09:00 (CM's time): an hour old, then three days.
        control.set_cm_now("2026-11-02 10:00:00").await.unwrap();
        s.invoke(include_str!("../fixtures/campaign-sync-requested.v1.json"))
            .await
            .unwrap();
        let hot = include_str!("../fixtures/hot-schedule.json");
        let outcome = s.invoke(hot).await.unwrap();
        assert_eq!(outcome["syncs_requested"], 1, "{outcome}");
        assert_eq!(s.published(), ["campaign-sync-requested.v1"]);
        assert_eq!(outcome.get("discovered"), None, "no discovery: {outcome}");

        control.set_cm_now("2026-11-05 10:00:00").await.unwrap();
        s.invoke(include_str!("../fixtures/campaign-sync-requested.v1.json"))
            .await
            .unwrap();
        let outcome = s.invoke(hot).await.unwrap();
        assert_eq!(outcome["syncs_requested"], 0, "past its first 48 hours: {outcome}");
    }

    #[tokio::test]
    async fn a_sync_request_syncs_the_campaign_and_a_second_invocation_reuses_the_clients() {
        let fixture = include_str!("../fixtures/campaign-sync-requested.v1.json");
        let (s, _) = synced(fixture).await;
        let second = s.invoke(fixture).await.unwrap();
        assert_eq!(
            second["counts"]["members_added"], 0,
            "nothing new the second time: {second}"
        );
        assert_eq!(
            s.container.engines_built(),
            1,
            "two invocations, one engine and one CM client"
        );
    }

    #[tokio::test]
    async fn a_settings_preview_is_planned_and_kept_for_the_console() {
        let s = setup().await;
        s.link().await;
        let store = s.container.store();
        let proposed = store.load_settings().await.unwrap().unwrap().settings;
        let now = chrono::Utc::now();
        store
            .save_preview(&state::PreviewRecord {
                preview_id: "20261127T110055Z-0000abcd".into(),
                requested_by: "005SB00000000A1AAA".into(),
                requested_at: now,
                base_version: 1,
                proposed: Some(proposed.to_json()),
                campaigns: vec![s.cm_campaign.clone()],
                result: None,
                expires_at: now + chrono::Duration::hours(1),
            })
            .await
            .unwrap();
        let outcome = s
            .invoke(include_str!("../fixtures/settings-preview-requested.v1.json"))
            .await
            .unwrap();
        assert_eq!(outcome["campaigns"], 1, "{outcome}");
        let kept = store.preview("20261127T110055Z-0000abcd").await.unwrap().unwrap();
        let result = kept.result.clone().expect("answered");
        assert!(result[0]["current"]["members_to_add"].as_u64().unwrap() > 0, "{result}");
        assert!(s.published().is_empty(), "a preview publishes nothing");

        // No proposal: the console's dry run of the campaign, under the stored settings only.
        let mut dry_run = kept.clone();
        dry_run.proposed = None;
        dry_run.result = None;
        store.save_preview(&dry_run).await.unwrap();
        s.invoke(include_str!("../fixtures/settings-preview-requested.v1.json"))
            .await
            .unwrap();
        let planned = store.preview("20261127T110055Z-0000abcd").await.unwrap().unwrap();
        let result = planned.result.expect("answered");
        assert!(result[0]["current"]["members_to_add"].as_u64().unwrap() > 0, "{result}");
        assert!(result[0]["proposed"].is_null(), "{result}");
    }

    #[tokio::test]
    async fn a_catalog_refresh_keeps_the_campaigns_for_the_console() {
        let s = setup().await;
        let outcome = s
            .invoke(include_str!("../fixtures/catalog-refresh-requested.v1.json"))
            .await
            .unwrap();
        let catalog = s.container.store().catalog().await.unwrap().expect("kept");
        assert_eq!(outcome["campaigns"], catalog.campaigns.len(), "{outcome}");
        let november = catalog.campaign(&s.cm_campaign).expect("the newsletter is listed");
        assert_eq!(november.name, "November newsletter");
        assert!(november.sent_at.is_some());
        assert!(s.published().is_empty(), "a refresh publishes nothing");
    }

    #[tokio::test]
    async fn a_backfill_from_the_console_links_the_window_once_and_is_audited() {
        let s = setup().await;
        let fixture = include_str!("../fixtures/backfill-requested.v1.json");
        let outcome = s.invoke(fixture).await.unwrap();
        assert!(outcome["campaigns"].as_u64().unwrap() >= 1, "{outcome}");
        let store = s.container.store();
        let link = store
            .link(&s.cm_campaign)
            .await
            .unwrap()
            .expect("the November send is linked");
        assert_eq!(link.origin, LinkOrigin::Backfill);
        let audit = store.recent_changes(10).await.unwrap();
        assert!(
            audit.iter().any(
                |e| e.actor == "005SB00000000A1AAA" && e.action.starts_with("backfill of 2026-11-01 to 2026-11-30")
            ),
            "{audit:?}"
        );
        // EventBridge delivers at least once: the same request again creates nothing.
        let again = s.invoke(fixture).await.unwrap();
        assert_eq!(again["campaigns"], 0, "{again}");
        assert_eq!(
            store.links().await.unwrap().len(),
            outcome["campaigns"].as_u64().unwrap() as usize
        );
    }

    /// Links the campaign, invokes with the fixture, and returns the finished sync's outcome.
    async fn synced(fixture: &str) -> (Setup, Value) {
        let s = setup().await;
        s.link().await;
        let outcome = s.invoke(fixture).await.unwrap();
        assert_eq!(outcome["outcome"], "done", "{outcome}");
        assert!(outcome["counts"]["members_added"].as_u64().unwrap() > 0, "{outcome}");
        (s, outcome)
    }

    #[tokio::test]
    async fn a_first_sync_of_30_000_recipients_answers_with_a_small_summary() {
        let s = setup_with(Shape {
            recipients: 30_000,
            activities: 3_000,
            ..Shape::default()
        })
        .await;
        s.link().await;
        let outcome = s
            .invoke(include_str!("../fixtures/campaign-sync-requested.v1.json"))
            .await
            .unwrap();
        let members_added = outcome["counts"]["members_added"].as_u64().unwrap();
        assert!(members_added > 10_000, "{outcome}");
        let size = serde_json::to_vec(&outcome).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes for {members_added} members added");
        assert!(
            !outcome.to_string().contains("@example.com"),
            "no address in a response"
        );
    }

    #[tokio::test]
    async fn a_linked_campaign_is_synced_at_once() {
        synced(include_str!("../fixtures/campaign-linked.v1.json")).await;
    }

    #[tokio::test]
    async fn a_continuation_carries_on_the_run_it_names() {
        let (s, outcome) = synced(include_str!("../fixtures/sync-continuation.v1.json")).await;
        assert_eq!(
            outcome["run_id"],
            format!("20261127T110055Z-1a2b3c4d:{}", s.cm_campaign),
            "the run of the event, not a new one"
        );
    }

    #[tokio::test]
    async fn an_event_of_another_function_is_refused_as_not_retryable() {
        let s = setup().await;
        let discovered = include_str!("../../campaign-autocreate/fixtures/campaign-discovered.v1.json");
        let error = s.invoke(discovered).await.unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "NonRetryable");
        assert!(
            diagnostic.error_message.contains("campaign-discovered.v1"),
            "{}",
            diagnostic.error_message
        );
        assert!(s.published().is_empty(), "nothing handed on");
    }
}
