//! admin-console: the admin console (PRODUCT.md §9) behind its own Function URL. `main` reads
//! the configuration and the console's own secret and builds the store and the publisher once;
//! [`handler`] answers each request with the console's router.

mod handler;

use std::sync::Arc;

use console::config::ConsoleSecret;
use lambda_http::{Error, Request, service_fn};
use lambda_support::{Config, StartupError, aws, bus_publisher, dynamo_store, init_logging, secret};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env();
    init_logging(&config);
    let site = handler::SiteSettings::from_config(&config)?;
    let aws = aws().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    // The pepper its person search keys addresses with.
    lambda_support::keys::install(&secrets, config.keys_secret_id()?).await?;
    let secret_id = config.console_secret_id()?;
    let console_secret =
        ConsoleSecret::parse(&secret(&secrets, secret_id).await?).map_err(|e| StartupError::Secret {
            id: secret_id.to_owned(),
            reason: e.to_string(),
        })?;
    let site = handler::Site::new(
        site,
        console_secret,
        Arc::new(dynamo_store(&aws, &config)?),
        Arc::new(bus_publisher(&aws, &config)?),
    )?;
    let site = &site;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(site.handle(request).await)
    }))
    .await
}
