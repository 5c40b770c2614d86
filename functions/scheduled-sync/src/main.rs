//! scheduled-sync: the EventBridge schedule, "campaign sync requested", "campaign linked", its
//! own continuation events, and "subscriber event received" (webhook events recorded by
//! webhook-intake: unsubscribes and bounces applied to the Lead/Contact). `main` builds everything once; the handler maps the event to a
//! call on the engine.

use std::sync::Arc;
use std::time::Duration;

use events::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use lambda_support::{HandlerError, Parts, deadline, init_logging};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let parts = Arc::new(Parts::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let parts = parts.clone();
        async move { handle(&parts, event).await }
    }))
    .await
}

async fn handle(parts: &Parts, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let (payload, context) = event.into_parts();
    let engine = parts.engine().await?;
    let source = payload["source"].as_str().unwrap_or_default();
    let detail_type = payload["detail-type"].as_str().unwrap_or_default();
    let stop = deadline(&context, Duration::from_secs(30));
    if events::is_schedule_trigger(source, detail_type) {
        let outcome = engine.run_scheduled(&engine::new_run_id(), false).await?;
        return Ok(json!(outcome));
    }
    let event = Event::from_parts(source, detail_type, payload["detail"].clone())
        .map_err(|e| engine::EngineError::UnexpectedEvent(e.to_string()))?;
    let outcome = match event {
        Event::CampaignSyncRequested(request) => match request.cm_campaign_id {
            Some(cm_id) => json!(
                engine
                    .sync_campaign(&cm_id, &request.run_id, request.dry_run, 0, stop)
                    .await?
            ),
            None => json!(engine.run_scheduled(&request.run_id, request.dry_run).await?),
        },
        Event::CampaignLinked(linked) => json!(
            engine
                .sync_campaign(&linked.cm_campaign_id, &engine::new_run_id(), false, 0, stop)
                .await?
        ),
        Event::SyncContinuation(next) => json!(
            engine
                .sync_campaign(&next.cm_campaign_id, &next.run_id, false, next.sequence, stop)
                .await?
        ),
        Event::SubscriberEventReceived(received) => {
            json!(engine.apply_subscriber_event(&received.idempotency_key).await?)
        }
        other => return Err(engine::EngineError::UnexpectedEvent(other.detail_type().to_owned()).into()),
    };
    Ok(outcome)
}
