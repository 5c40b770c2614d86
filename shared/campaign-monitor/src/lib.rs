//! A typed, async client for the Campaign Monitor API v3.3.
//!
//! ```no_run
//! # async fn example() -> Result<(), campaign_monitor::CmError> {
//! use campaign_monitor::{CmClient, Credentials};
//! let client = CmClient::builder(Credentials::api_key("your-api-key"), chrono_tz::Australia::Sydney).build()?;
//! for c in client.clients().await? {
//!     let sent = client.sent_campaigns(&c.client_id, &Default::default()).await?;
//!     println!("{}: {} sent campaigns", c.name, sent.len());
//! }
//! # Ok(()) }
//! ```
//!
//! - Auth: API key (HTTP Basic, key as user name) or OAuth bearer tokens, refreshed on code 121
//!   (expired): one refresh in flight per client, and with a [`TokenVault`] the new tokens are
//!   saved at once (CM rotates the refresh token: the old one stops working) and tokens another
//!   process saved are taken up instead of refreshing again.
//! - Activity ([`activity`]): opens, clicks, bounces, unsubscribes, spam and recipients as async
//!   streams over pages of 1,000 with the `date` filter, typed records with UTC times, a stable
//!   dedupe key and the watermark to store next. Memory holds one page at a time.
//! - Resilience: connect and request timeouts; 429, 5xx and network errors retried with
//!   exponential backoff and jitter, bounded in attempts and total time; `Retry-After` and
//!   `X-RateLimit-Reset` honoured. Errors are typed by CM `Code` ([`CmError`]).
//! - Logs carry endpoints without query strings: never the key, a token or an email address.

pub mod activity;
mod endpoints;
mod error;
pub mod types;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use chrono_tz::Tz;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::CmError;
pub use types::OAuthTokens;

use types::ErrorBody;

/// The production API root.
pub const DEFAULT_BASE_URL: &str = "https://api.createsend.com";

/// The versioned path every call goes under, added to the base URL by the client.
pub const API_PATH: &str = "/api/v3.3";

/// The largest response body read (a page of 1,000 rows with all custom fields is a few MB).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// More pages than this in one listing is not an answer to trust (100 million rows at 1,000 a
/// page): the walk stops with an error.
pub const MAX_PAGES: i64 = 100_000;

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// An account or client API key.
    ApiKey(String),
    /// OAuth tokens.
    OAuth(OAuthTokens),
}

impl Credentials {
    /// API-key credentials.
    pub fn api_key(key: impl Into<String>) -> Self {
        Credentials::ApiKey(key.into())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::ApiKey(_) => "ApiKey(***)",
            Credentials::OAuth(_) => "OAuth(***)",
        })
    }
}

/// Retry limits.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (first try included).
    pub max_attempts: u32,
    /// First backoff.
    pub min_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
    /// No new attempt starts after this much time on one call.
    pub max_total: Duration,
}

impl RetryPolicy {
    /// The waits between attempts: exponential with jitter, `max_attempts - 1` of them.
    fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(90),
        }
    }
}

/// A future a [`TokenVault`] returns.
pub type VaultFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CmError>> + Send + 'a>>;

/// A refresh a [`TokenVault`] runs when it must: spends the refresh token it is given, returns
/// the new tokens.
pub type Refresh<'a> = Box<dyn FnOnce(String) -> VaultFuture<'a, OAuthTokens> + Send + 'a>;

/// Where OAuth tokens are shared between processes (every container of a deployment): each
/// refresh spends the refresh token, so the processes must take turns and each must use the
/// tokens the last refresh returned.
pub trait TokenVault: Send + Sync {
    /// The tokens shared now (the last refresh's, or an admin's newer ones), if any.
    fn load(&self) -> VaultFuture<'_, Option<OAuthTokens>>;
    /// New tokens after CM refused `stale` (an access token): the shared ones when another
    /// process already renewed them, else `refresh` run with the shared refresh token while
    /// no other process refreshes, its tokens shared before it returns.
    fn renew<'a>(&'a self, stale: &'a str, refresh: Refresh<'a>) -> VaultFuture<'a, OAuthTokens>;
}

/// Builds a [`CmClient`].
pub struct CmClientBuilder {
    vault: Option<Arc<dyn TokenVault>>,
    credentials: Credentials,
    zone: Tz,
    base_url: String,
    retry: RetryPolicy,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for CmClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmClientBuilder")
            .field("base_url", &self.base_url)
            .field("zone", &self.zone)
            .field("vault", &self.vault.is_some())
            .finish()
    }
}

impl CmClientBuilder {
    /// Where refreshed OAuth tokens are saved and read back.
    pub fn token_vault(mut self, vault: Arc<dyn TokenVault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The API root (default: production); the sandbox's URL in tests.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Retry limits.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeouts for connecting and for a whole request.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The client. The base URL is the API's root (`https://api.createsend.com`); the client
    /// adds `/api/v3.3/` itself, so a URL that already ends in it is refused here rather than
    /// turning every call into a 404.
    pub fn build(self) -> Result<CmClient, CmError> {
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(CmError::Config(format!("base URL must be http(s): {}", self.base_url)));
        }
        if self
            .base_url
            .trim_end_matches('/')
            .to_ascii_lowercase()
            .ends_with(API_PATH)
        {
            return Err(CmError::Config(format!(
                "base URL {} must be the API root, without {API_PATH} (e.g. {DEFAULT_BASE_URL})",
                self.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(concat!("cm-sf-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CmError::Config(e.to_string()))?;
        Ok(CmClient {
            auth: Arc::new(Auth {
                http: http.clone(),
                base_url: self.base_url.clone(),
                retry: self.retry.clone(),
                credentials: Mutex::new(self.credentials),
                refreshing: tokio::sync::Mutex::new(()),
                vault: self.vault,
            }),
            http,
            base_url: self.base_url,
            zone: self.zone,
            retry: self.retry,
        })
    }
}

/// The client. Cheap to share behind an `Arc`; safe to use from many tasks.
pub struct CmClient {
    http: reqwest::Client,
    base_url: String,
    zone: Tz,
    retry: RetryPolicy,
    auth: Arc<Auth>,
}

/// The credentials and what renews them, shared with a refresh running on a task of its own.
struct Auth {
    http: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
    credentials: Mutex<Credentials>,
    /// Held while refreshing: one refresh in flight, the other tasks wait and use its tokens.
    refreshing: tokio::sync::Mutex<()>,
    vault: Option<Arc<dyn TokenVault>>,
}

impl std::fmt::Debug for CmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmClient")
            .field("base_url", &self.base_url)
            .field("zone", &self.zone)
            .field("vault", &self.auth.vault.is_some())
            .finish()
    }
}

/// Filters for the sent-campaign list.
#[derive(Debug, Clone, Default)]
pub struct SentFilter {
    /// Sent on or after this date (CM local `YYYY-MM-DD`).
    pub sent_from: Option<chrono::NaiveDate>,
    /// Sent on or before this date.
    pub sent_to: Option<chrono::NaiveDate>,
    /// Only campaigns with one of these tags.
    pub tags: Vec<String>,
    /// Page size, 10 to 1,000 (default 1,000: the fewest calls).
    pub page_size: Option<u32>,
}

impl Auth {
    fn credentials(&self) -> Result<Credentials, CmError> {
        Ok(self.credentials_slot()?.clone())
    }

    fn credentials_slot(&self) -> Result<std::sync::MutexGuard<'_, Credentials>, CmError> {
        self.credentials
            .lock()
            .map_err(|_| CmError::Config("credentials lock poisoned".into()))
    }

    fn adopt(&self, tokens: OAuthTokens) -> Result<(), CmError> {
        *self.credentials_slot()? = Credentials::OAuth(tokens);
        Ok(())
    }

    /// Tokens the vault shares that are not `stale` (another process refreshed, or an admin
    /// authorised again), taken up.
    async fn adopt_saved(&self, stale: &str) -> Result<bool, CmError> {
        let Some(vault) = &self.vault else {
            return Ok(false);
        };
        match vault.load().await? {
            Some(saved) if saved.access_token != stale => {
                tracing::info!("Campaign Monitor OAuth tokens taken from the vault (renewed elsewhere)");
                self.adopt(saved)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// After `stale` (the access token a call used) expired: new tokens, from a refresh
    /// another task of this client made while this one waited, or else the vault's renewal
    /// (the shared tokens, or one refresh across every process), or without a vault a refresh
    /// of our own.
    async fn refresh(&self, stale: &str) -> Result<(), CmError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let refresh_token = match self.credentials()? {
            Credentials::OAuth(tokens) if tokens.access_token != stale => return Ok(()),
            Credentials::OAuth(tokens) => tokens.refresh_token,
            Credentials::ApiKey(_) => return Err(CmError::Refresh("API-key credentials cannot be refreshed".into())),
        };
        let tokens = match &self.vault {
            Some(vault) => {
                vault
                    .renew(
                        stale,
                        Box::new(move |shared: String| Box::pin(async move { self.request_tokens(&shared).await })),
                    )
                    .await?
            }
            None => self.request_tokens(&refresh_token).await?,
        };
        tracing::info!("Campaign Monitor OAuth token renewed");
        self.adopt(tokens)
    }

    /// The token request, retried like an API call while CM answers 429 or 5xx or the network
    /// fails (a refused grant is final).
    async fn request_tokens(&self, refresh_token: &str) -> Result<OAuthTokens, CmError> {
        let mut delays = self.retry.delays();
        loop {
            let outcome = self
                .http
                .post(format!("{}/oauth/token", self.base_url))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
                .send()
                .await;
            let transient = match outcome {
                Err(error) => without_url(&error),
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS || response.status().is_server_error() =>
                {
                    format!("HTTP {}", response.status().as_u16())
                }
                Ok(response) => {
                    let status = response.status();
                    let body: Value = response.json().await.map_err(|e| CmError::Refresh(without_url(&e)))?;
                    if !status.is_success() {
                        return Err(CmError::Refresh(format!(
                            "{}: {}",
                            body["error"].as_str().unwrap_or("error"),
                            body["error_description"].as_str().unwrap_or_default()
                        )));
                    }
                    return serde_json::from_value(body).map_err(|e| CmError::Refresh(e.to_string()));
                }
            };
            let Some(wait) = delays.next() else {
                return Err(CmError::Refresh(format!(
                    "the token endpoint kept failing: {transient}"
                )));
            };
            tracing::warn!(wait_ms = wait.as_millis() as u64, error = %transient, "retrying the Campaign Monitor token request");
            tokio::time::sleep(wait).await;
        }
    }
}

impl CmClient {
    /// A builder.
    pub fn builder(credentials: Credentials, zone: Tz) -> CmClientBuilder {
        CmClientBuilder {
            vault: None,
            credentials,
            zone,
            base_url: DEFAULT_BASE_URL.to_owned(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// The zone CM dates are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The credentials in use now (after any refresh): what a client built to replace this
    /// one starts from.
    pub fn credentials(&self) -> Result<Credentials, CmError> {
        self.auth.credentials()
    }

    fn auth_header(&self) -> Result<String, CmError> {
        Ok(match self.credentials()? {
            Credentials::ApiKey(key) => {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{key}:x"))
                )
            }
            Credentials::OAuth(tokens) => format!("Bearer {}", tokens.access_token),
        })
    }

    /// New tokens after `stale` expired. The refresh spends the refresh token, so it runs on a
    /// task of its own to its end, new tokens adopted and saved, even if the caller is dropped
    /// meanwhile (a sync handing over at its deadline drops the reads in flight).
    async fn refresh(&self, stale: &str) -> Result<(), CmError> {
        let auth = Arc::clone(&self.auth);
        let stale = stale.to_owned();
        tokio::spawn(async move { auth.refresh(&stale).await })
            .await
            .map_err(|e| CmError::Refresh(format!("the token refresh stopped: {e}")))?
    }

    /// One API call with retries, its answer as JSON (`null` for an empty body).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CmError> {
        let answer = self.call_for_body(method, path, query, body).await?;
        decode(path, &answer)
    }

    /// One API call with retries: `path` is relative to `/api/v3.3/` and ends in `.json`. The
    /// successful answer's body, read into its type by the caller (no JSON tree in between: a
    /// page of 1,000 rows as a tree is tens of thousands of allocations).
    async fn call_for_body(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, CmError> {
        let url = format!("{}{API_PATH}/{path}", self.base_url);
        let started = Instant::now();
        let mut delays = self.retry.delays();
        let mut attempts = 0;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let authorization = self.auth_header()?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Authorization", &authorization)
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Err(error) => Err(CmError::Network {
                    attempts,
                    message: without_url(&error),
                }),
                Ok(response) => self.read(path, response, attempts).await,
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let used = authorization.trim_start_matches("Bearer ");
            if error.code() == Some(121) && !refreshed {
                // Expired token: new tokens (one refresh for every task that saw it expire), and
                // replay.
                self.refresh(used).await?;
                refreshed = true;
                continue;
            }
            if matches!(error.code(), Some(120 | 122)) && !refreshed {
                // Invalid or revoked: the shared tokens, if another process renewed them or an
                // admin authorised again; else the admin must authorise (nothing to refresh).
                refreshed = true;
                if self.auth.adopt_saved(used).await? {
                    continue;
                }
            }
            if !error.is_retryable() {
                return Err(error);
            }
            let hinted = match &error {
                CmError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            let Some(backoff) = delays.next() else {
                return Err(error);
            };
            let wait = hinted
                .map_or(backoff, |h| h.max(backoff))
                .min(self.retry.max_delay.max(hinted.unwrap_or_default()));
            if started.elapsed() + wait > self.retry.max_total {
                return Err(error);
            }
            tracing::warn!(endpoint = %path, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %error, "retrying Campaign Monitor call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn read(&self, path: &str, mut response: reqwest::Response, attempts: u32) -> Result<Vec<u8>, CmError> {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let network = |e: reqwest::Error| CmError::Network {
            attempts,
            message: without_url(&e),
        };
        // Read within a cap: a page of 1,000 rows with all their custom fields is a few MB.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(CmError::Decode {
                    endpoint: path.to_owned(),
                    detail: format!("response larger than {MAX_RESPONSE_BYTES} bytes; refused"),
                });
            }
        }
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let (code, message) = body
            .map(|b| (b.code, b.message))
            .unwrap_or((i64::from(status.as_u16()), String::new()));
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => CmError::RateLimited { attempts, retry_after },
            s if s.is_server_error() => CmError::Unavailable {
                status: s.as_u16(),
                attempts,
            },
            StatusCode::UNAUTHORIZED if matches!(code, 50 | 60 | 100 | 120 | 121 | 122) => {
                CmError::Auth { code, message }
            }
            s => CmError::Api {
                endpoint: path.to_owned(),
                status: s.as_u16(),
                code,
                message,
            },
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, CmError> {
        let answer = self.call_for_body(Method::GET, path, query, None).await?;
        decode(path, &answer)
    }
}

/// A successful answer's body as `T` (an empty body reads as JSON `null`).
fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, CmError> {
    let decoded = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_value(Value::Null)
    } else {
        match serde_json::from_slice(body) {
            // Bytes that are not UTF-8 in one row must not cost the page: read as before,
            // with replacement characters.
            Err(_) if std::str::from_utf8(body).is_err() => serde_json::from_str(&String::from_utf8_lossy(body)),
            decoded => decoded,
        }
    };
    decoded.map_err(|e| CmError::Decode {
        endpoint: path.to_owned(),
        detail: e.to_string(),
    })
}

/// A reqwest error without the URL (whose query may hold an email address).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_decode() {
        "could not read the body"
    } else {
        "request failed"
    };
    format!("{kind}: {}", error.without_url_ref())
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut source = std::error::Error::source(self);
        let mut parts = Vec::new();
        while let Some(error) = source {
            parts.push(error.to_string());
            source = error.source();
        }
        parts.join(": ")
    }
}

/// `Retry-After` (seconds) or `X-RateLimit-Reset` (seconds until reset), when present.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
