//! webhook-consumer: "webhook batch received" (a delivery's unsubscribes and bounces, recorded
//! by webhook-intake) applied to Leads and Contacts. A function of its own, with its own
//! reserved concurrency, so webhook events never wait behind campaign syncs. `main` builds the
//! container once; [`handler`] turns each event into an engine call.

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
