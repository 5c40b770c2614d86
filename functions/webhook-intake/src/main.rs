//! webhook-intake: the URL Campaign Monitor posts list events to (a Lambda Function URL).
//! `main` builds the store, the publisher and the token once; [`handler`] answers each request.

mod handler;

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use lambda_support::{Config, aws, bus_publisher, dynamo_store, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env();
    init_logging(&config);
    let aws = aws().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    // The pepper events' dedupe keys are made with.
    lambda_support::keys::install(&secrets, config.keys_secret_id()?).await?;
    let tokens = handler::Tokens::from_secret(secrets, config.webhook_secret_id()?.to_owned()).await?;
    let intake = handler::Intake {
        store: Arc::new(dynamo_store(&aws, &config)?),
        publisher: Arc::new(bus_publisher(&aws, &config)?),
        tokens,
    };
    let intake = &intake;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handler::handle(intake, request).await)
    }))
    .await
}
