//! The Lambda edge of campaign-autocreate: "campaign discovered" in, the SF Campaign created and
//! linked. The fixture in `fixtures/` works with `cargo lambda invoke --data-file`.

use engine::EngineError;
use engine::autocreate::AutoCreateOutcome;
use events::publisher::EventSink;
use events::{Event, EventBridgeEvent, LinkOrigin};
use lambda_runtime::LambdaEvent;
use lambda_support::{Container, HandlerError, Invocation};
use state::Store;

/// Handles one invocation.
pub(crate) async fn handle<S: Store, P: EventSink>(
    container: &Container<S, P>,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<AutoCreateOutcome, HandlerError> {
    let event = Event::try_from(event.payload).map_err(|e| EngineError::UnexpectedEvent(e.to_string()))?;
    let Event::CampaignDiscovered(discovered) = event else {
        return Err(EngineError::UnexpectedEvent(event.detail_type().to_owned()).into());
    };
    let Invocation { engine, settings } = container.invocation().await?;
    Ok(engine
        .auto_create(&settings, &discovered.campaign, LinkOrigin::AutoCreated)
        .await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;
    use lambda_runtime::Diagnostic;
    use sandbox::generate::{Shape, generate};
    use state::LinkStore;

    const DISCOVERED: &str = include_str!("../fixtures/campaign-discovered.v1.json");

    fn event(text: &str, client: &str) -> LambdaEvent<EventBridgeEvent> {
        let text = text.replace("00000000000000000000000000000001", client);
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), lambda_runtime::Context::default())
    }

    #[tokio::test]
    async fn a_discovered_campaign_is_created_and_linked_once_however_often_it_arrives() {
        let mut scenario = generate(&Shape::default());
        // The draft the fixture names, as CM lists it (auto-creation confirms it there).
        let mut draft = scenario.cm.campaigns[0].clone();
        let zone = harness::zone_of(&scenario).unwrap();
        let created: chrono::DateTime<chrono::Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
        draft.id = "0123456789abcdef0123456789abcdef".into();
        draft.name = "December newsletter".into();
        draft.state = "draft".into();
        draft.sent_date = None;
        draft.date_created = Some(created.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S").to_string());
        draft.recipients.clear();
        draft.activity.clear();
        scenario.cm.campaigns.push(draft);
        let (running, container) = harness::sandboxed_container(&scenario, |settings| {
            settings.auto_create_campaigns = true;
            settings.auto_create_enabled_at = Some("2026-01-01T00:00:00Z".parse().unwrap());
        })
        .await
        .unwrap();
        let client = &scenario.cm.clients[0].id;

        let first = handle(&container, event(DISCOVERED, client)).await.unwrap();
        let AutoCreateOutcome::Linked {
            sf_campaign_id,
            created: true,
        } = first
        else {
            panic!("{first:?}")
        };
        let link = container
            .store()
            .link("0123456789abcdef0123456789abcdef")
            .await
            .unwrap();
        assert_eq!(
            link.map(|l| l.sf_campaign_id),
            Some(sf_campaign_id),
            "linked in the state table"
        );
        let again = handle(&container, event(DISCOVERED, client)).await.unwrap();
        assert!(matches!(again, AutoCreateOutcome::Skipped { .. }), "{again:?}");
        let campaigns = harness::Control::of(&running).sf_records("Campaign").await.unwrap();
        let named = campaigns.iter().filter(|c| c["Name"] == "December newsletter").count();
        assert_eq!(named, 1, "one SF Campaign however often the event arrives");
        assert_eq!(container.engines_built(), 1);
    }

    #[tokio::test]
    async fn an_event_of_another_function_is_refused_before_any_work() {
        let (_running, container) = harness::sandboxed_container(&generate(&Shape::default()), |_| {})
            .await
            .unwrap();
        let linked = include_str!("../../scheduled-sync/fixtures/campaign-linked.v1.json");
        let error = handle(&container, event(linked, "")).await.unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "NonRetryable");
        assert_eq!(container.engines_built(), 0, "refused before the settings were read");
    }
}
