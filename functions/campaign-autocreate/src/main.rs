//! campaign-autocreate: consumes "campaign discovered", creates and links the SF Campaign.

use std::sync::Arc;

use events::{Event, LinkOrigin};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use lambda_support::{HandlerError, Parts, init_logging};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let parts = Arc::new(Parts::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let parts = parts.clone();
        async move { handle(&parts, event.payload).await }
    }))
    .await
}

async fn handle(parts: &Parts, payload: Value) -> Result<Value, HandlerError> {
    let engine = parts.engine().await?;
    let event = Event::from_parts(
        payload["source"].as_str().unwrap_or_default(),
        payload["detail-type"].as_str().unwrap_or_default(),
        payload["detail"].clone(),
    )
    .map_err(|e| engine::EngineError::UnexpectedEvent(e.to_string()))?;
    let Event::CampaignDiscovered(discovered) = event else {
        return Err(engine::EngineError::UnexpectedEvent(event.detail_type().to_owned()).into());
    };
    Ok(json!(
        engine
            .auto_create(&discovered.campaign, LinkOrigin::AutoCreated)
            .await?
    ))
}
