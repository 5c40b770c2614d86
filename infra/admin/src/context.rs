//! What every command works with: the configuration (the functions' own reader), the state
//! table, the engine, and the report a command returns (a text and a JSON form).

use std::process::ExitCode;
use std::sync::Arc;

use engine::Engine;
use events::publisher::{EventBridgeSink, Publisher};
use lambda_support::{Config, Invocation};
use serde_json::Value;
use state::dynamo::DynamoStore;

/// A command's failure: what to tell the admin.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

/// What a command reports: readable text, the same as JSON, and the exit status.
#[derive(Debug)]
pub struct Report {
    /// For a terminal.
    pub text: String,
    /// For `--json`.
    pub json: Value,
    /// Exit status 1 without an error (doctor found a problem).
    pub problem: bool,
}

impl Report {
    /// A report of a successful command.
    pub fn new(text: impl Into<String>, json: Value) -> Report {
        Report {
            text: text.into(),
            json,
            problem: false,
        }
    }

    /// Prints it in the form asked for; returns the exit status.
    pub fn print(&self, json: bool) -> ExitCode {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.json).unwrap_or_default());
        } else if self.text.ends_with('\n') {
            print!("{}", self.text);
        } else {
            println!("{}", self.text);
        }
        if self.problem {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The engine against a deployment.
pub type AdminEngine = Engine<DynamoStore, EventBridgeSink>;

/// The configuration, and the clients built from it when a command needs them.
#[derive(Debug)]
pub struct Context {
    config: Config,
}

impl Context {
    /// From the environment.
    pub fn from_env() -> Context {
        Context {
            config: Config::from_env(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Progress of a long operation: stderr, so stdout stays the result.
    pub fn progress(&self, line: &str) {
        eprintln!("{line}");
    }

    /// The state table, with the deployment's peppers installed (the person keys it is
    /// searched and erased by).
    pub async fn store(&self) -> Result<DynamoStore, Failure> {
        let aws = lambda_support::aws().await;
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        lambda_support::keys::install(&secrets, self.config.keys_secret_id()?).await?;
        Ok(lambda_support::dynamo_store(&aws, &self.config)?)
    }

    /// The deployment's bus, as the functions publish to it.
    pub async fn publisher(&self) -> Result<Publisher<EventBridgeSink>, Failure> {
        Ok(lambda_support::bus_publisher(
            &lambda_support::aws().await,
            &self.config,
        )?)
    }

    /// The engine, built as the functions build theirs, and the stored settings.
    pub async fn invocation(&self) -> Result<Invocation<DynamoStore, EventBridgeSink>, Failure> {
        let container = lambda_support::deployed_container(&self.config).await?;
        Ok(container.invocation().await?)
    }

    /// The engine, built as the functions build theirs.
    pub async fn engine(&self) -> Result<Arc<AdminEngine>, Failure> {
        Ok(self.invocation().await?.engine)
    }

    /// The full intake URL: the stack's `WebhookUrl` plus the token from `WEBHOOK_SECRET_ID`.
    pub async fn intake_url(&self, base: &str) -> Result<String, Failure> {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Failure(format!("--url `{base}` is not an http(s) URL")));
        }
        let secret_id = self
            .config
            .webhook_secret_id()
            .map_err(|e| Failure(format!("{e} (the webhook token's secret)")))?;
        let secrets = aws_sdk_secretsmanager::Client::new(&lambda_support::aws().await);
        let token = lambda_support::webhook_token(&secrets, secret_id).await?;
        Ok(format!("{}/{token}", base.trim_end_matches('/')))
    }
}
