//! Cold-start plumbing shared by the functions: configuration from the environment, secrets
//! from AWS Secrets Manager (fetched once per container), the engine's parts built once, and
//! engine errors mapped to Lambda diagnostics that say whether a retry can help.
//!
//! | variable | meaning |
//! |---|---|
//! | `STATE_TABLE` | DynamoDB table name |
//! | `EVENT_BUS` | EventBridge bus name |
//! | `CM_SECRET_ID` | Secrets Manager id of `{"api_key": "..."}` (or `{"access_token", "refresh_token"}`) |
//! | `SF_SECRET_ID` | Secrets Manager id of the Salesforce credentials (the JSON form of [`salesforce::Auth`]) |
//! | `CM_BASE_URL` | optional; defaults to `https://api.createsend.com` |
//! | `SF_API_VERSION` | optional; defaults to `66.0` |
//! | `LOG_LEVEL` / `RUST_LOG` | optional log filter |
//!
//! The AWS SDK reads its endpoint from the standard variables (`AWS_ENDPOINT_URL`), which is how
//! the local stack points it at the emulator without any test branch here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use campaign_monitor::{CmClient, Credentials, OAuthTokens};
use engine::{Deadline, Engine, EngineError, EngineOptions};
use events::publisher::{EventBridgeSink, Publisher};
use lambda_runtime::Diagnostic;
use salesforce::{Auth, SfClient, SfConfig};
use serde::Deserialize;
use state::dynamo::DynamoStore;

/// A configuration problem at start-up, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A required variable is missing or empty.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A secret could not be read or parsed.
    #[error("secret {id}: {reason}")]
    Secret {
        /// Secret id.
        id: String,
        /// What failed (never the value).
        reason: String,
    },
    /// A client could not be built.
    #[error("{0}")]
    Client(String),
}

/// The configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `STATE_TABLE`.
    pub table: String,
    /// `EVENT_BUS`.
    pub bus: String,
    /// `CM_SECRET_ID`.
    pub cm_secret_id: String,
    /// `SF_SECRET_ID`.
    pub sf_secret_id: String,
    /// `CM_BASE_URL`.
    pub cm_base_url: String,
    /// `SF_API_VERSION`.
    pub sf_api_version: String,
}

fn required(name: &'static str) -> Result<String, StartupError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(StartupError::Missing(name))
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Config, StartupError> {
        Ok(Config {
            table: required("STATE_TABLE")?,
            bus: required("EVENT_BUS")?,
            cm_secret_id: required("CM_SECRET_ID")?,
            sf_secret_id: required("SF_SECRET_ID")?,
            cm_base_url: std::env::var("CM_BASE_URL").unwrap_or_else(|_| campaign_monitor::DEFAULT_BASE_URL.to_owned()),
            sf_api_version: std::env::var("SF_API_VERSION").unwrap_or_else(|_| "66.0".to_owned()),
        })
    }
}

#[derive(Deserialize)]
struct CmSecret {
    api_key: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

async fn secret(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<String, StartupError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| StartupError::Secret {
            id: id.to_owned(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    output.secret_string.ok_or_else(|| StartupError::Secret {
        id: id.to_owned(),
        reason: "has no SecretString".into(),
    })
}

/// The webhook path token from its secret (`{"token": "<at least 16 characters>"}`), shared by
/// webhook-intake (which checks it) and the admin CLI (which registers the URL holding it).
pub async fn webhook_token(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<String, StartupError> {
    let text = secret(client, secret_id).await?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .filter(|t| t.len() >= 16)
        .ok_or_else(|| StartupError::Secret {
            id: secret_id.to_owned(),
            reason: "must be {\"token\": \"<at least 16 characters>\"}".into(),
        })
}

/// The parts built once per container.
pub struct Parts {
    /// Configuration.
    pub config: Config,
    /// The state store.
    pub store: Arc<DynamoStore>,
    /// The publisher.
    pub publisher: Arc<Publisher<EventBridgeSink>>,
    /// Salesforce.
    pub sf: Arc<SfClient>,
    /// CM credentials (the client is built per invocation with the settings' time zone).
    pub cm_credentials: Credentials,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("config", &self.config).finish()
    }
}

impl Parts {
    /// Reads the configuration and secrets and builds the clients. Fails fast, naming what is
    /// wrong, so a misconfigured deployment never starts working half-way.
    pub async fn from_env() -> Result<Parts, StartupError> {
        let config = Config::from_env()?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        let cm_secret: CmSecret =
            serde_json::from_str(&secret(&secrets, &config.cm_secret_id).await?).map_err(|e| StartupError::Secret {
                id: config.cm_secret_id.clone(),
                reason: format!("not the expected JSON: {e}"),
            })?;
        let cm_credentials = match cm_secret {
            CmSecret { api_key: Some(key), .. } => Credentials::api_key(key),
            CmSecret {
                access_token: Some(access_token),
                refresh_token: Some(refresh_token),
                ..
            } => Credentials::OAuth(OAuthTokens {
                access_token,
                refresh_token,
                expires_in: 0,
            }),
            _ => {
                return Err(StartupError::Secret {
                    id: config.cm_secret_id.clone(),
                    reason: "needs api_key, or access_token and refresh_token".into(),
                });
            }
        };
        let sf_auth: Auth =
            serde_json::from_str(&secret(&secrets, &config.sf_secret_id).await?).map_err(|e| StartupError::Secret {
                id: config.sf_secret_id.clone(),
                reason: format!("not the expected JSON: {e}"),
            })?;
        let mut sf_config = SfConfig::new(sf_auth);
        sf_config.api_version = config.sf_api_version.clone();
        let sf = SfClient::new(sf_config).map_err(|e| StartupError::Client(e.to_string()))?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table);
        let publisher = Publisher::new(EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(&aws),
            &config.bus,
        ));
        Ok(Parts {
            config,
            store: Arc::new(store),
            publisher: Arc::new(publisher),
            sf: Arc::new(sf),
            cm_credentials,
        })
    }

    /// The engine for one invocation: CM dates are read in the settings' zone.
    pub async fn engine(&self) -> Result<Engine<DynamoStore, EventBridgeSink>, EngineError> {
        use state::SettingsStore;
        let settings = self
            .store
            .load_settings()
            .await?
            .ok_or(EngineError::NoSettings)?
            .settings;
        let cm = CmClient::builder(self.cm_credentials.clone(), settings.zone())
            .base_url(&self.config.cm_base_url)
            .build()
            .map_err(EngineError::Cm)?;
        Ok(Engine {
            store: self.store.clone(),
            publisher: self.publisher.clone(),
            cm: Arc::new(cm),
            sf: self.sf.clone(),
            options: EngineOptions::default(),
        })
    }
}

/// Stop taking new work this long before the Lambda deadline.
pub fn deadline(context: &lambda_runtime::Context, margin: Duration) -> Deadline {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    match context.deadline.checked_sub(now_ms) {
        Some(left) => Deadline::at(Instant::now() + Duration::from_millis(left).saturating_sub(margin)),
        None => Deadline::none(),
    }
}

/// A handler error: `Retryable` lets Lambda and EventBridge retry; `NonRetryable` sends the event
/// to the dead-letter queue at once (retrying cannot help).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(#[from] pub EngineError);

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: if error.0.is_retryable() {
                "Retryable".into()
            } else {
                "NonRetryable".into()
            },
            error_message: error.0.to_string(),
        }
    }
}

/// JSON logs, level from `LOG_LEVEL`, Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's
/// application log level) or `RUST_LOG` (default info).
pub fn init_logging() {
    let filter = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}
