//! The Lambda edge of webhook-consumer: an EventBridge envelope naming a recorded batch in,
//! the batch applied through the sync's own rules and writer, a small summary out. The routed
//! detail-type has a fixture in `fixtures/` (usable with `cargo lambda invoke --data-file`).

use engine::EngineError;
use events::publisher::EventSink;
use events::{Event, EventBridgeEvent, Trigger};
use lambda_runtime::LambdaEvent;
use lambda_support::{Container, HandlerError, Invocation};
use serde_json::{Value, json};
use state::Store;

/// Handles one invocation.
pub(crate) async fn handle<S: Store, P: EventSink>(
    container: &Container<S, P>,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Value, HandlerError> {
    let (envelope, _context) = event.into_parts();
    let trigger = Trigger::try_from(envelope).map_err(|e| EngineError::UnexpectedEvent(e.to_string()))?;
    let received = match trigger {
        Trigger::Event(Event::WebhookBatchReceived(received)) => received,
        Trigger::Event(other) => return Err(EngineError::UnexpectedEvent(other.detail_type().to_owned()).into()),
        Trigger::Schedule | Trigger::HotSchedule => {
            return Err(EngineError::UnexpectedEvent("Scheduled Event".to_owned()).into());
        }
    };
    let Invocation { engine, settings } = container.invocation().await?;
    Ok(json!(engine.apply_webhook_batch(&settings, &received.batch).await?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;
    use events::publisher::MemorySink;
    use lambda_runtime::Diagnostic;
    use sandbox::generate::{Shape, generate};
    use state::memory::MemoryStore;
    use state::{EventState, WebhookBatchRecord, WebhookEventRecord, WebhookEventStore};

    struct Setup {
        running: sandbox::Running,
        container: Container<MemoryStore, MemorySink>,
        scenario: sandbox::scenario::Scenario,
    }

    async fn setup() -> Setup {
        let scenario = generate(&Shape {
            recipients: 200,
            ..Shape::default()
        });
        let (running, container) = harness::sandboxed_container(&scenario, |_| {}).await.unwrap();
        Setup {
            running,
            container,
            scenario,
        }
    }

    impl Setup {
        async fn invoke(&self, text: &str) -> Result<Value, HandlerError> {
            let event = LambdaEvent::new(serde_json::from_str(text).unwrap(), lambda_runtime::Context::default());
            handle(&self.container, event).await
        }
    }

    #[tokio::test]
    async fn a_recorded_webhook_batch_is_applied() {
        let s = setup().await;
        let email = s.scenario.sf.records["Contact"][0]["Email"]
            .as_str()
            .unwrap()
            .to_owned();
        let zone = harness::zone_of(&s.scenario).unwrap();
        let payload = json!({"Type": "Deactivate", "Date": harness::cm_date_ago(zone, 60), "EmailAddress": email,
            "Name": "", "State": "Bounced", "CustomFields": []});
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/webhook-batch-received.v1.json")).unwrap();
        let batch = fixture["detail"]["batch"].as_str().unwrap().to_owned();
        let now = chrono::Utc::now();
        let event = WebhookEventRecord {
            dedupe_key: "webhook-event-key".into(),
            list_id: s.scenario.cm.lists[0].id.clone(),
            payload,
            person: None,
            received_at: now,
            expires_at: now + chrono::Duration::days(1),
            state: EventState::Received,
            attempts: 0,
        };
        // CM's list shows the bounce the batch reports.
        harness::Control::of(&s.running)
            .deliver(&event.list_id, json!([event.payload.clone()]))
            .await
            .unwrap();
        s.container
            .store()
            .record_webhook_batch(&WebhookBatchRecord {
                batch: batch.clone(),
                list_id: event.list_id.clone(),
                received_at: now,
                expires_at: event.expires_at,
                events: vec![event],
                refused: Vec::new(),
            })
            .await
            .unwrap();
        let outcome = s
            .invoke(include_str!("../fixtures/webhook-batch-received.v1.json"))
            .await
            .unwrap();
        assert_eq!(
            (outcome["applied"].as_u64(), outcome["people_updated"].as_u64()),
            (Some(1), Some(1)),
            "{outcome}"
        );
        let stored = s
            .container
            .store()
            .webhook_event("webhook-event-key")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(stored.state, EventState::Applied { .. }), "{stored:?}");
        assert!(
            s.container
                .store()
                .pending_webhook_batch(&batch)
                .await
                .unwrap()
                .is_none(),
            "finished"
        );
    }

    #[tokio::test]
    async fn a_sync_request_is_refused_as_not_retryable_and_runs_nothing() {
        let s = setup().await;
        let request = include_str!("../../scheduled-sync/fixtures/campaign-sync-requested.v1.json");
        let diagnostic = Diagnostic::from(s.invoke(request).await.unwrap_err());
        assert_eq!(diagnostic.error_type, "NonRetryable");
        assert!(
            diagnostic.error_message.contains("campaign-sync-requested.v1"),
            "{}",
            diagnostic.error_message
        );
        assert!(s.container.publisher().sink().events().is_empty(), "nothing handed on");
        assert_eq!(s.container.engines_built(), 0, "refused before any client is built");
    }
}
