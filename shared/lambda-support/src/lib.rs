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
//! | `WEBHOOK_SECRET_ID` | webhook-intake and the admin CLI: Secrets Manager id of `{"token": "..."}` |
//! | `CM_BASE_URL` | optional; defaults to `https://api.createsend.com` |
//! | `SF_API_VERSION` | optional; defaults to `66.0` |
//! | `LOG_LEVEL` / `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` | optional log filter |
//!
//! [`Config`] is the one place that reads them.
//!
//! The AWS SDK reads its endpoint from the standard variables (`AWS_ENDPOINT_URL`), which is how
//! the local stack points it at the emulator without any test branch here.

mod config;
mod container;
pub mod deployment;
pub mod keys;
pub mod vault;

/// Every function's allocator (this crate is in each one): a sync allocates and frees millions of
/// short strings and maps; glibc's malloc took about 40% of a large sync's CPU samples (`perf`,
/// 2026-12-07), mimalloc about 15% (BENCHMARKS.md). The template's `MIMALLOC_*` settings keep
/// its peak memory low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use campaign_monitor::{Credentials, OAuthTokens};
use engine::webhook::WebhookTokens;
use engine::{Deadline, EngineError, EngineOptions};
use events::publisher::{EventBridgeSink, Publisher};
use lambda_runtime::Diagnostic;
use salesforce::{Auth, SfClient, SfConfig};
use serde::Deserialize;
use state::dynamo::DynamoStore;

pub use config::{Config, ConsoleSettings, DEFAULT_SF_API_VERSION, VARIABLES};
pub use container::{Container, Invocation};
pub use vault::{Credential, SecretsManagerSlot, TokenKeeper};

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
    /// A CM or SF URL without TLS outside local use.
    #[error("{0}")]
    Insecure(String),
    /// A variable is set to a value the function cannot use (the message names it).
    #[error("{0}")]
    Invalid(String),
}

/// The AWS SDK configuration (its endpoint from the standard `AWS_ENDPOINT_URL`, which is how
/// the local stack points it at the emulator).
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The state table named by `STATE_TABLE`.
pub fn dynamo_store(aws: &aws_config::SdkConfig, config: &Config) -> Result<DynamoStore, StartupError> {
    Ok(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        config.state_table()?,
    ))
}

/// The publisher to the bus named by `EVENT_BUS`.
pub fn bus_publisher(aws: &aws_config::SdkConfig, config: &Config) -> Result<Publisher<EventBridgeSink>, StartupError> {
    Ok(Publisher::new(EventBridgeSink::new(
        aws_sdk_eventbridge::Client::new(aws),
        config.event_bus()?,
    )))
}

#[derive(Deserialize)]
struct CmSecret {
    api_key: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

/// A secret's text (`SecretString`), read once at start; an error names the secret, never a value.
pub async fn secret(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<String, StartupError> {
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

/// The webhook path token from its secret (`{"token": "<at least 32 characters>"}`), shared by
/// webhook-intake (which checks it) and the admin CLI (which registers the URL holding it).
pub async fn webhook_token(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<String, StartupError> {
    Ok(webhook_tokens(client, secret_id).await?.current)
}

/// The webhook tokens: `{"token": "<current>", "previous_token": "<optional, during a
/// rotation>"}`, each at least [`MIN_WEBHOOK_TOKEN_CHARS`] characters.
pub async fn webhook_tokens(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<WebhookTokens, StartupError> {
    parse_webhook_tokens(secret_id, &secret(client, secret_id).await?)
}

/// The shortest webhook token accepted: 32 random characters (128 bits as hex) are beyond
/// guessing at any rate the intake's reserved concurrency allows.
pub const MIN_WEBHOOK_TOKEN_CHARS: usize = 32;

fn parse_webhook_tokens(secret_id: &str, text: &str) -> Result<WebhookTokens, StartupError> {
    let invalid = || StartupError::Secret {
        id: secret_id.to_owned(),
        reason: format!(
            "must be {{\"token\": \"<at least {MIN_WEBHOOK_TOKEN_CHARS} random characters>\"}} (and, while rotating, \"previous_token\")"
        ),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| invalid())?;
    let token = |key: &str| value[key].as_str().map(str::to_owned);
    let current = token("token")
        .filter(|t| t.chars().count() >= MIN_WEBHOOK_TOKEN_CHARS)
        .ok_or_else(invalid)?;
    let previous = match token("previous_token") {
        Some(previous) if previous.chars().count() >= MIN_WEBHOOK_TOKEN_CHARS => Some(previous),
        Some(_) => return Err(invalid()),
        None => None,
    };
    Ok(WebhookTokens { current, previous })
}

/// A deployed container: the state table, the bus, the clients from their secrets.
pub type DeployedContainer = Container<DynamoStore, EventBridgeSink>;

/// What an EventBridge-triggered function's `main` does first: reads its configuration, starts
/// the logs and builds its container.
pub async fn start() -> Result<DeployedContainer, StartupError> {
    let config = Config::from_env();
    init_logging(&config);
    deployed_container(&config).await
}

/// Reads the secrets named by the configuration and builds the container's parts. Fails fast,
/// naming what is wrong, so a misconfigured deployment never starts working half-way.
pub async fn deployed_container(config: &Config) -> Result<DeployedContainer, StartupError> {
    let aws = aws().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let cm_secret_id = config.cm_secret_id()?;
    let cm_secret: CmSecret = parse_secret(cm_secret_id, &secret(&secrets, cm_secret_id).await?)?;
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
                id: cm_secret_id.to_owned(),
                reason: "needs api_key, or access_token and refresh_token".into(),
            });
        }
    };
    let sf_secret_id = config.sf_secret_id()?;
    let sf_auth: Auth = parse_secret(sf_secret_id, &secret(&secrets, sf_secret_id).await?)?;
    sf_auth.check().map_err(|reason| StartupError::Secret {
        id: sf_secret_id.to_owned(),
        reason,
    })?;
    config.require_https(
        &format!("the token_host of secret {sf_secret_id}"),
        sf_auth.token_host(),
    )?;
    config.require_https("CM_BASE_URL", config.cm_base_url())?;
    let keys = keys::install(&secrets, config.keys_secret_id()?).await?;
    let store = Arc::new(dynamo_store(&aws, config)?);
    let keeper = |id: &str, credential| -> Result<TokenKeeper<DynamoStore, SecretsManagerSlot>, StartupError> {
        Ok(TokenKeeper::new(
            store.clone(),
            SecretsManagerSlot::new(secrets.clone(), id),
            credential,
            keys.token_sealer()?,
        ))
    };
    let rotates = matches!(sf_auth, Auth::RefreshToken { .. });
    let mut sf_config = SfConfig::new(sf_auth);
    sf_config.api_version = config.sf_api_version().to_owned();
    sf_config.requests_in_flight = config.sf_requests_in_flight()?;
    let mut sf = SfClient::new(sf_config).map_err(|e| StartupError::Client(e.to_string()))?;
    if rotates {
        sf = sf.with_session_vault(Arc::new(keeper(sf_secret_id, Credential::Salesforce)?));
    }
    let (cm_credentials, cm_keeper) = match cm_credentials {
        Credentials::OAuth(configured) => {
            // The tokens the containers share now: the secret's may be spent already.
            let keeper = keeper(cm_secret_id, Credential::CampaignMonitor)?;
            let shared = keeper.tokens().await.map_err(|e| StartupError::Client(e.to_string()))?;
            let tokens = OAuthTokens {
                access_token: shared.access_token.unwrap_or(configured.access_token),
                refresh_token: shared.refresh_token,
                expires_in: 0,
            };
            (Credentials::OAuth(tokens), Some(keeper))
        }
        api_key => (api_key, None),
    };
    let container = Container::new(
        store.clone(),
        Arc::new(bus_publisher(&aws, config)?),
        Arc::new(sf),
        cm_credentials,
        config.cm_base_url(),
        EngineOptions {
            cm_pages_in_flight: config.cm_pages_in_flight()?,
            ..EngineOptions::default()
        },
    );
    Ok(match cm_keeper {
        Some(keeper) => container.with_cm_token_vault(Arc::new(keeper)),
        None => container,
    })
}

fn parse_secret<T: serde::de::DeserializeOwned>(id: &str, text: &str) -> Result<T, StartupError> {
    serde_json::from_str(text).map_err(|e| StartupError::Secret {
        id: id.to_owned(),
        reason: format!("not the expected JSON: {e}"),
    })
}

/// When to stop taking new work: `margin` (`engine::work_margin`) before the invocation's
/// deadline, but never more than half the time left, so a short timeout still leaves work
/// time (a function timeout of at least twice the margin lets Bulk jobs finish).
pub fn deadline(context: &lambda_runtime::Context, margin: Duration) -> Deadline {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    match context.deadline.checked_sub(now_ms) {
        Some(left) => {
            let left = Duration::from_millis(left);
            Deadline::at(Instant::now() + left.saturating_sub(margin.min(left / 2)))
        }
        None => Deadline::none(),
    }
}

/// A handler error, typed for the logs and alarms: `Retryable` (transient: a retry may succeed)
/// or `NonRetryable` (retrying cannot help). Lambda itself retries every failed asynchronous
/// invocation alike (twice, then the on-failure destination); the type says which failures an
/// operator must fix first.
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
            // Lambda logs the message: an address Salesforce or CM quoted in it is redacted.
            error_message: engine::redacted(&error.0),
        }
    }
}

/// JSON logs at the configuration's level ([`Config::log_filter`]), one object a line with
/// `timestamp` and `level` (the keys Lambda's JSON log format and its log-level controls read).
pub fn init_logging(config: &Config) {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(config.log_filter()))
        .with_current_span(false)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_failure_lambda_logs_holds_no_whole_address() {
        let error = HandlerError(EngineError::Invalid(
            "Salesforce refused jo.bloggs@example.com: FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
        ));
        let diagnostic = Diagnostic::from(error);
        assert!(
            !diagnostic.error_message.contains("jo.bloggs@example.com"),
            "{}",
            diagnostic.error_message
        );
        assert!(
            diagnostic.error_message.contains("j***@example.com"),
            "{}",
            diagnostic.error_message
        );
    }

    fn context_with(left: Duration) -> lambda_runtime::Context {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut context = lambda_runtime::Context::default();
        context.deadline = now_ms + left.as_millis() as u64;
        context
    }

    /// Issue #32 item 7: a part started just before the margin may wait out a Bulk job (up to
    /// 300 s): the margin covers it on the default 15-minute timeout, and a short timeout still
    /// leaves half its time for work.
    #[test]
    fn the_work_margin_covers_a_bulk_job_and_leaves_a_short_invocation_half_its_time() {
        let bulk_margin = Duration::from_secs(330);
        assert!(!deadline(&context_with(Duration::from_secs(900)), bulk_margin).passed());
        assert!(
            !deadline(&context_with(Duration::from_secs(60)), bulk_margin).passed(),
            "a 60 s invocation keeps 30 s of work"
        );
    }

    #[test]
    fn the_webhook_secret_holds_the_token_and_during_a_rotation_the_one_before() {
        let plain = parse_webhook_tokens("s", r#"{"token": "0123456789abcdef0123456789abcdef"}"#).unwrap();
        assert_eq!(
            (plain.current.as_str(), plain.previous),
            ("0123456789abcdef0123456789abcdef", None)
        );
        let rotating = parse_webhook_tokens(
            "s",
            r#"{"token": "new-0123456789abcdef0123456789abcdef", "previous_token": "old-0123456789abcdef0123456789abcdef"}"#,
        )
        .unwrap();
        assert!(
            rotating.accepts("new-0123456789abcdef0123456789abcdef")
                && rotating.accepts("old-0123456789abcdef0123456789abcdef")
        );
        for bad in [
            r#"{"token": "short"}"#,
            r#"{"token": "0123456789abcdef"}"#,
            r#"{"token": "0123456789abcdef0123456789abcdef", "previous_token": "x"}"#,
            "nope",
        ] {
            let error = parse_webhook_tokens("webhook-secret", bad).unwrap_err().to_string();
            assert!(
                error.contains("webhook-secret") && !error.contains("0123456789abcdef"),
                "{error}"
            );
        }
    }
}
