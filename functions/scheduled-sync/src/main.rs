//! scheduled-sync: the EventBridge schedule, "campaign sync requested", "campaign linked" and
//! its own continuation events (webhook batches have a function of their own,
//! webhook-consumer). `main` builds the container once
//! (configuration, secrets, clients, engine); [`handler`] turns each event into an engine call.

mod handler;

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let container = lambda_support::start().await?;
    let container = &container;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<events::EventBridgeEvent>| {
        handler::handle(container, event)
    }))
    .await
}
