//! A typed, async Salesforce REST client, frugal with the org's daily API allocation (which
//! every other integration of the org shares).
//!
//! - Auth ([`Auth`]): OAuth 2.0 JWT bearer (RS256; `aud` is the login host even when calls go to
//!   the org's own domain), client credentials, refresh token. The token is cached; on 401
//!   `INVALID_SESSION_ID` it is renewed once and the call replayed.
//! - SOQL ([`soql`]): literals escaped per Salesforce's rules; `IN` lists split to fit the
//!   16,384-byte URI limit; [`QueryStream`] follows `nextRecordsUrl`.
//! - Writes ([`writes`]): sObject Collections in chunks of 200 with per-record results in the
//!   caller's order; Bulk API 2.0 ingest mapped back by key; [`SfClient::write`] picks one by
//!   size (default threshold 2,000).
//! - Describe, cached per object. `Sforce-Limit-Info` read on every response; new work refused
//!   past a share of the allocation (default 80%).
//! - Retries: `UNABLE_TO_LOCK_ROW`, `SERVER_UNAVAILABLE`, 5xx and network errors, with
//!   exponential backoff and jitter. Logs never carry tokens, keys or email addresses.

mod auth;
mod bulk;
mod error;
mod query;
pub mod soql;
pub mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use auth::Session;
pub use auth::{Auth, Renewal, SessionVault, SharedSession, VaultFuture, instance_url_allowed};
pub use error::{NOT_PROCESSED, SfError, is_transient_code};
pub use query::{Describe, FieldInfo, QueryStream};
pub use writes::{Operation, RecordError, RecordOutcome, RecordResult, WriteOptions};

/// Query subrequests one Composite request may hold.
pub const COMPOSITE_QUERIES: usize = 5;
/// Values per `IN` query: the rows of one query usually fit one 2,000-row page.
pub const MAX_IN_VALUES: usize = 1_900;
/// SOQL characters per query sent in a body (Salesforce's limit is 100,000).
pub const MAX_BODY_SOQL_CHARS: usize = 90_000;

/// Retry limits.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff.
    pub min_delay: Duration,
    /// Longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct SfConfig {
    /// Authentication.
    pub auth: Auth,
    /// The pinned API version, e.g. `66.0`.
    pub api_version: String,
    /// Refuse new work once this share of the daily allocation is used (0.8 = 80%).
    pub allocation_guard: f64,
    /// Writes of at least this many records go through Bulk API 2.0.
    pub bulk_threshold: usize,
    /// Retries.
    pub retry: RetryPolicy,
    /// How often a Bulk job's state is polled at first (then backing off).
    pub bulk_poll_interval: Duration,
    /// How long a Bulk job may take before it is aborted and its rows written through
    /// Collections instead.
    pub bulk_poll_limit: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Requests this client has in flight at most. An org allows 25 long-running requests at
    /// once for all its integrations; this times the sync's reserved concurrency is the share
    /// of them a deployment may take (the template keeps it at a fifth).
    pub requests_in_flight: usize,
}

/// [`SfConfig::requests_in_flight`] unless the deployment sets another.
pub const DEFAULT_REQUESTS_IN_FLIGHT: usize = 2;

impl SfConfig {
    /// Defaults around an auth flow.
    pub fn new(auth: Auth) -> Self {
        SfConfig {
            auth,
            api_version: "66.0".to_owned(),
            allocation_guard: 0.8,
            bulk_threshold: 2_000,
            retry: RetryPolicy::default(),
            bulk_poll_interval: Duration::from_millis(500),
            bulk_poll_limit: Duration::from_secs(300),
            request_timeout: Duration::from_secs(120),
            requests_in_flight: DEFAULT_REQUESTS_IN_FLIGHT,
        }
    }
}

/// API calls made by this client, by kind (deterministic: tests and benchmarks assert them).
#[derive(Debug, Default)]
pub struct CallCounts {
    /// Token requests.
    pub auth: AtomicU64,
    /// Queries, describes, limits.
    pub reads: AtomicU64,
    /// Collections and single-record writes.
    pub writes: AtomicU64,
    /// Bulk API calls.
    pub bulk: AtomicU64,
}

/// A snapshot of [`CallCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calls {
    /// Token requests.
    pub auth: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Bulk calls.
    pub bulk: u64,
}

/// The kind of a call, for [`CallCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A read.
    Read,
    /// A write.
    Write,
    /// A Bulk API call.
    Bulk,
}

/// What the org's `Sforce-Limit-Info` said last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    /// Used in the rolling 24 hours.
    pub used: u64,
    /// Allocation.
    pub max: u64,
}

/// The client. Share it behind an `Arc`.
pub struct SfClient {
    http: reqwest::Client,
    config: SfConfig,
    session: tokio::sync::Mutex<Option<Session>>,
    usage: Mutex<Option<ApiUsage>>,
    describes: Mutex<HashMap<String, Arc<Describe>>>,
    counts: CallCounts,
    /// The refresh token in use, once a refresh rotated the one in the configuration.
    refresh_token: Mutex<Option<String>>,
    vault: Option<Arc<dyn SessionVault>>,
    /// Bulk jobs past their time limit this client could not stop (see `bulk_stop`).
    unstopped_jobs: Mutex<Vec<String>>,
    /// One for each request in flight ([`SfConfig::requests_in_flight`]).
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for SfClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfClient")
            .field("auth", &self.config.auth)
            .field("api_version", &self.config.api_version)
            .finish()
    }
}

/// The body of a request.
enum Body<'a> {
    None,
    Json(&'a Value),
    Csv(bytes::Bytes),
}

impl SfClient {
    /// A client; nothing is sent until the first call.
    pub fn new(config: SfConfig) -> Result<SfClient, SfError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .user_agent(concat!("cm-sf-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SfError::Config(e.to_string()))?;
        Ok(SfClient {
            http,
            in_flight: tokio::sync::Semaphore::new(config.requests_in_flight.max(1)),
            config,
            session: tokio::sync::Mutex::new(None),
            usage: Mutex::new(None),
            describes: Mutex::new(HashMap::new()),
            counts: CallCounts::default(),
            refresh_token: Mutex::new(None),
            vault: None,
            unstopped_jobs: Mutex::new(Vec::new()),
        })
    }

    /// Where the refresh-token flow's session is shared with the deployment's other processes:
    /// with refresh-token rotation on, each sign-in returns a new refresh token and the old one
    /// stops working.
    pub fn with_session_vault(mut self, vault: Arc<dyn SessionVault>) -> SfClient {
        self.vault = Some(vault);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SfConfig {
        &self.config
    }

    /// Calls made so far.
    pub fn calls(&self) -> Calls {
        Calls {
            auth: self.counts.auth.load(Ordering::Relaxed),
            reads: self.counts.reads.load(Ordering::Relaxed),
            writes: self.counts.writes.load(Ordering::Relaxed),
            bulk: self.counts.bulk.load(Ordering::Relaxed),
        }
    }

    /// The last usage Salesforce reported.
    pub fn usage(&self) -> Option<ApiUsage> {
        self.usage.lock().ok().and_then(|u| *u)
    }

    /// Refuses new work once usage passes the guard.
    pub fn check_allocation(&self) -> Result<(), SfError> {
        if let Some(usage) = self.usage()
            && usage.max > 0
            && usage.used as f64 >= usage.max as f64 * self.config.allocation_guard
        {
            return Err(SfError::AllocationGuard {
                used: usage.used,
                max: usage.max,
                percent: (self.config.allocation_guard * 100.0).round() as u32,
            });
        }
        Ok(())
    }

    /// `path` is relative to `/services/data/vXX.X/`, or absolute when it starts with `/`.
    async fn request(
        &self,
        kind: CallKind,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<(StatusCode, String), SfError> {
        let mut delays = self.config.retry.delays();
        let mut attempts = 0;
        let mut renewed = false;
        let mut session = self.session(None).await?;
        loop {
            attempts += 1;
            let url = if path.starts_with('/') {
                format!("{}{path}", session.instance_url)
            } else {
                format!(
                    "{}/services/data/v{}/{path}",
                    session.instance_url, self.config.api_version
                )
            };
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&session.access_token)
                .query(query);
            request = match &body {
                Body::None => request,
                Body::Json(value) => request.json(value),
                // Shared, not copied: a Bulk upload is megabytes.
                Body::Csv(data) => request.header("content-type", "text/csv").body(data.clone()),
            };
            match kind {
                CallKind::Read => self.counts.reads.fetch_add(1, Ordering::Relaxed),
                CallKind::Write => self.counts.writes.fetch_add(1, Ordering::Relaxed),
                CallKind::Bulk => self.counts.bulk.fetch_add(1, Ordering::Relaxed),
            };
            let started = Instant::now();
            // Held while the request is in flight, not while it waits to be retried.
            let permit = self.in_flight.acquire().await.ok();
            let sent = request.send().await;
            let failure = match sent {
                Err(error) => SfError::Network {
                    attempts,
                    message: describe_reqwest(&error),
                },
                Ok(response) => {
                    self.record_usage(response.headers());
                    let status = response.status();
                    let text = read_capped(response, attempts, MAX_RESPONSE_BYTES).await?;
                    tracing::debug!(%method, endpoint = %path, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "salesforce call");
                    if status.is_success() {
                        return Ok((status, text));
                    }
                    let (code, message) = error_of(&text, status);
                    if status == StatusCode::UNAUTHORIZED || code == "INVALID_SESSION_ID" {
                        if renewed {
                            return Err(SfError::Session(message));
                        }
                        renewed = true;
                        session = self.session(Some(&session.access_token)).await?;
                        continue;
                    }
                    // The same code means the day's allocation is spent (wait for tomorrow) or too
                    // many long-running requests are in flight (clears in seconds: retried).
                    if code == "REQUEST_LIMIT_EXCEEDED" && !message.to_ascii_lowercase().contains("concurrent") {
                        return Err(SfError::RequestLimit(message));
                    }
                    if status.is_server_error() || is_transient_code(&code) || code == "REQUEST_LIMIT_EXCEEDED" {
                        SfError::Unavailable {
                            code: if code.is_empty() {
                                status.as_u16().to_string()
                            } else {
                                code
                            },
                            attempts,
                        }
                    } else {
                        return Err(SfError::Api {
                            status: status.as_u16(),
                            code,
                            message,
                        });
                    }
                }
            };
            drop(permit);
            let Some(delay) = delays.next() else {
                return Err(failure);
            };
            tracing::warn!(endpoint = %path, attempt = attempts, error = %failure, "retrying Salesforce call");
            tokio::time::sleep(delay).await;
        }
    }

    fn record_usage(&self, headers: &reqwest::header::HeaderMap) {
        let Some(info) = headers.get("sforce-limit-info").and_then(|h| h.to_str().ok()) else {
            return;
        };
        let usage = info.split(';').find_map(|part| {
            let (used, max) = part.trim().strip_prefix("api-usage=")?.split_once('/')?;
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                max: max.trim().parse().ok()?,
            })
        });
        if let (Some(usage), Ok(mut slot)) = (usage, self.usage.lock()) {
            *slot = Some(usage);
        }
    }

    async fn json(
        &self,
        kind: CallKind,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, SfError> {
        let (_, text) = self
            .request(kind, method, path, query, body.map_or(Body::None, Body::Json))
            .await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| SfError::Decode(format!("{path}: {e}")))
    }
}

fn error_of(text: &str, status: StatusCode) -> (String, String) {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = if value.is_array() { &value[0] } else { &value };
    let code = first["errorCode"]
        .as_str()
        .or_else(|| first["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    let message = first["message"]
        .as_str()
        .or_else(|| first["error_description"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string());
    (code, message)
}

/// The largest response body read. The biggest are Bulk API 2.0 result files: Salesforce takes
/// at most 150 MB of CSV per ingest job ("Bulk API 2.0 and Bulk API Developer Guide", limits),
/// and a result file repeats the uploaded row with `sf__Id` and `sf__Created` (or `sf__Error`)
/// before it. Anything past this is refused with a clear error rather than taking the
/// function's memory (512 MB by default): the body is held once, never copied.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// The most reserved up front from a response's own `Content-Length` (a number the server
/// chooses); past it the body grows as it arrives.
const MAX_PREALLOCATED_BYTES: usize = 8 * 1024 * 1024;

/// A response body, read within `cap` bytes.
async fn read_capped(mut response: reqwest::Response, attempts: u32, cap: usize) -> Result<String, SfError> {
    let size = response.content_length().unwrap_or(0) as usize;
    let mut body = Vec::with_capacity(size.min(cap).min(MAX_PREALLOCATED_BYTES));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= cap => body.extend_from_slice(&chunk),
            Ok(Some(_)) => {
                return Err(SfError::Decode(format!("response larger than {cap} bytes; refused")));
            }
            // Valid UTF-8 (every answer Salesforce documents) becomes the string without a copy.
            Ok(None) => {
                return Ok(String::from_utf8(body)
                    .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned()));
            }
            Err(error) => {
                return Err(SfError::Network {
                    attempts,
                    message: describe_reqwest(&error),
                });
            }
        }
    }
}

/// A reqwest error without its URL (a query string may hold email addresses).
fn describe_reqwest(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut parts = vec![kind.to_owned()];
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod response_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn response(body: &'static str) -> reqwest::Response {
        reqwest::Response::from(axum::http::Response::new(body))
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_and_one_within_it_is_read_whole() {
        let refused = read_capped(response("0123456789abc"), 1, 10).await.unwrap_err();
        assert!(refused.to_string().contains("larger than 10 bytes"), "{refused}");
        assert_eq!(read_capped(response("0123456789"), 1, 10).await.unwrap(), "0123456789");
    }
}
