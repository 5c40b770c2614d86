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

mod error;
pub mod soql;
pub mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

pub use error::{SfError, is_transient_code};
pub use writes::{Operation, RecordError, RecordOutcome, RecordResult, WriteOptions};

/// Query subrequests one Composite request may hold.
pub const COMPOSITE_QUERIES: usize = 5;
/// Values per `IN` query: the rows of one query usually fit one 2,000-row page.
pub const MAX_IN_VALUES: usize = 1_900;
/// SOQL characters per query sent in a body (Salesforce's limit is 100,000).
pub const MAX_BODY_SOQL_CHARS: usize = 90_000;

/// How the client authenticates. Deserializes from the secret the functions read:
/// `{"flow": "jwt_bearer", "token_host": ..., "client_id": ..., "username": ...,
/// "private_key_pem": ...}` (`audience` optional), `{"flow": "client_credentials", ...}` or
/// `{"flow": "refresh_token", ...}`.
#[derive(Clone, serde::Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// OAuth 2.0 JWT bearer flow.
    JwtBearer {
        /// Where to post the assertion: the My Domain host (or login/test host).
        token_host: String,
        /// The connected app's consumer key (`iss`).
        client_id: String,
        /// The integration user (`sub`).
        username: String,
        /// PEM private key whose certificate the connected app holds.
        private_key_pem: String,
        /// `aud`: `https://login.salesforce.com` (production) or `https://test.salesforce.com`
        /// (sandboxes), whatever host the token is requested from. Empty: derived from
        /// `token_host` ([`Auth::audience_for`]).
        #[serde(default)]
        audience: String,
    },
    /// Client credentials flow (My Domain host only).
    ClientCredentials {
        /// My Domain host.
        token_host: String,
        /// Consumer key.
        client_id: String,
        /// Consumer secret.
        client_secret: String,
    },
    /// Refresh token flow.
    RefreshToken {
        /// Login or My Domain host.
        token_host: String,
        /// Consumer key.
        client_id: String,
        /// Consumer secret, if the app requires it.
        #[serde(default)]
        client_secret: Option<String>,
        /// The refresh token.
        refresh_token: String,
    },
}

impl Auth {
    /// The audience for a host: sandboxes use `test.salesforce.com`, everything else
    /// `login.salesforce.com` (as the Salesforce CLI decides).
    pub fn audience_for(host: &str) -> String {
        if host.contains("test.salesforce.com") || host.contains(".sandbox.my.salesforce.com") {
            "https://test.salesforce.com".to_owned()
        } else {
            "https://login.salesforce.com".to_owned()
        }
    }

    fn token_host(&self) -> &str {
        match self {
            Auth::JwtBearer { token_host, .. }
            | Auth::ClientCredentials { token_host, .. }
            | Auth::RefreshToken { token_host, .. } => token_host,
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flow = match self {
            Auth::JwtBearer { .. } => "JwtBearer",
            Auth::ClientCredentials { .. } => "ClientCredentials",
            Auth::RefreshToken { .. } => "RefreshToken",
        };
        write!(f, "Auth::{flow}({}, secrets ***)", self.token_host())
    }
}

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
    /// Per-request timeout.
    pub request_timeout: Duration,
}

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
            request_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone)]
struct Session {
    access_token: String,
    instance_url: String,
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

/// A field from describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    /// API name.
    pub name: String,
    /// Type (`string`, `double`, `datetime`, ...).
    #[serde(rename = "type")]
    pub field_type: String,
    /// Can be set on create.
    #[serde(default)]
    pub createable: bool,
    /// Can be updated.
    #[serde(default)]
    pub updateable: bool,
    /// External id.
    #[serde(default)]
    pub external_id: bool,
    /// Unique.
    #[serde(default)]
    pub unique: bool,
}

/// An object's describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Describe {
    /// API name.
    pub name: String,
    /// Records can be created (for this user).
    #[serde(default)]
    pub createable: bool,
    /// Fields.
    pub fields: Vec<FieldInfo>,
}

impl Describe {
    /// A field by name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// The client. Share it behind an `Arc`.
pub struct SfClient {
    http: reqwest::Client,
    config: SfConfig,
    session: tokio::sync::Mutex<Option<Session>>,
    usage: Mutex<Option<ApiUsage>>,
    describes: Mutex<HashMap<String, Arc<Describe>>>,
    counts: CallCounts,
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
    Csv(String),
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
            config,
            session: tokio::sync::Mutex::new(None),
            usage: Mutex::new(None),
            describes: Mutex::new(HashMap::new()),
            counts: CallCounts::default(),
        })
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

    async fn login(&self) -> Result<Session, SfError> {
        self.counts.auth.fetch_add(1, Ordering::Relaxed);
        let host = self.config.auth.token_host().trim_end_matches('/');
        let url = format!("{host}/services/oauth2/token");
        let form: Vec<(&str, String)> = match &self.config.auth {
            Auth::JwtBearer {
                client_id,
                username,
                private_key_pem,
                audience,
                ..
            } => {
                #[derive(serde::Serialize)]
                struct Claims<'a> {
                    iss: &'a str,
                    sub: &'a str,
                    aud: &'a str,
                    exp: i64,
                    iat: i64,
                }
                let now = chrono::Utc::now().timestamp();
                let derived;
                let audience = if audience.is_empty() {
                    derived = Auth::audience_for(self.config.auth.token_host());
                    derived.as_str()
                } else {
                    audience.as_str()
                };
                let claims = Claims {
                    iss: client_id,
                    sub: username,
                    aud: audience,
                    exp: now + 180,
                    iat: now,
                };
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
                    .map_err(|e| SfError::Config(format!("the JWT private key is not an RSA PEM key: {e}")))?;
                let assertion = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                    &claims,
                    &key,
                )
                .map_err(|e| SfError::Config(format!("cannot sign the JWT: {e}")))?;
                vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()),
                    ("assertion", assertion),
                ]
            }
            Auth::ClientCredentials {
                client_id,
                client_secret,
                ..
            } => vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.clone()),
            ],
            Auth::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
                ..
            } => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh_token.clone()),
                    ("client_id", client_id.clone()),
                ];
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.clone()));
                }
                form
            }
        };
        let response = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SfError::Network {
                attempts: 1,
                message: describe_reqwest(&e),
            })?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| SfError::Decode(format!("token response: {}", describe_reqwest(&e))))?;
        if !status.is_success() {
            return Err(SfError::Auth {
                error: body["error"].as_str().unwrap_or("unknown").to_owned(),
                description: body["error_description"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let (Some(token), Some(instance)) = (body["access_token"].as_str(), body["instance_url"].as_str()) else {
            return Err(SfError::Decode(
                "token response without access_token or instance_url".into(),
            ));
        };
        tracing::info!("authenticated with Salesforce");
        Ok(Session {
            access_token: token.to_owned(),
            instance_url: instance.trim_end_matches('/').to_owned(),
        })
    }

    async fn session(&self, renew: bool) -> Result<Session, SfError> {
        let mut guard = self.session.lock().await;
        if renew || guard.is_none() {
            *guard = Some(self.login().await?);
        }
        guard.clone().ok_or_else(|| SfError::Session("no session".into()))
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
        let mut session = self.session(false).await?;
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
                Body::Csv(text) => request.header("content-type", "text/csv").body(text.clone()),
            };
            match kind {
                CallKind::Read => self.counts.reads.fetch_add(1, Ordering::Relaxed),
                CallKind::Write => self.counts.writes.fetch_add(1, Ordering::Relaxed),
                CallKind::Bulk => self.counts.bulk.fetch_add(1, Ordering::Relaxed),
            };
            let started = Instant::now();
            let failure = match request.send().await {
                Err(error) => SfError::Network {
                    attempts,
                    message: describe_reqwest(&error),
                },
                Ok(response) => {
                    self.record_usage(response.headers());
                    let status = response.status();
                    let text = response.text().await.map_err(|e| SfError::Network {
                        attempts,
                        message: describe_reqwest(&e),
                    })?;
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
                        session = self.session(true).await?;
                        continue;
                    }
                    if code == "REQUEST_LIMIT_EXCEEDED" {
                        return Err(SfError::RequestLimit(message));
                    }
                    if status.is_server_error() || is_transient_code(&code) {
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

    /// Runs a query; the stream follows `nextRecordsUrl` one page (up to 2,000 rows) per call.
    pub fn query(&self, soql: &str) -> QueryStream<'_> {
        QueryStream {
            client: self,
            soql: Some(soql.to_owned()),
            next_url: None,
            done: false,
        }
    }

    /// Every row of a query.
    pub async fn query_all(&self, soql: &str) -> Result<Vec<Value>, SfError> {
        self.check_allocation()?;
        let mut stream = self.query(soql);
        let mut rows = Vec::new();
        while let Some(page) = stream.next_page().await? {
            rows.extend(page);
        }
        Ok(rows)
    }

    /// Every row of `before (values...) after`. The `IN` list is split into queries of at most
    /// [`MAX_IN_VALUES`] values (so each usually fits one 2,000-row page) and
    /// [`MAX_BODY_SOQL_CHARS`] characters, sent [`COMPOSITE_QUERIES`] at a time in one Composite
    /// request: the SOQL travels in the body, clear of the 16,384-byte URI limit, and the whole
    /// Composite request counts as one API call. Reads grow with the values asked for, about
    /// 9,500 addresses a call, never with the size of the org.
    pub async fn query_in(&self, before: &str, values: &[String], after: &str) -> Result<Vec<Value>, SfError> {
        let queries = self.in_list_queries(before, values, after);
        self.query_many(&queries).await
    }

    /// The queries [`SfClient::query_in`] would run.
    pub fn in_list_queries(&self, before: &str, values: &[String], after: &str) -> Vec<String> {
        soql::in_list_queries_by_length(before, values, after, MAX_IN_VALUES, MAX_BODY_SOQL_CHARS)
    }

    /// Every row of each query, the queries sent [`COMPOSITE_QUERIES`] to a Composite request;
    /// a result longer than a page is followed with `nextRecordsUrl`.
    pub async fn query_many(&self, queries: &[String]) -> Result<Vec<Value>, SfError> {
        let mut rows = Vec::new();
        for batch in queries.chunks(COMPOSITE_QUERIES) {
            self.check_allocation()?;
            let subrequests: Vec<Value> = batch
                .iter()
                .enumerate()
                .map(|(i, soql)| {
                    let query = form_urlencoded::Serializer::new(String::new())
                        .append_pair("q", soql)
                        .finish();
                    serde_json::json!({
                        "method": "GET",
                        "url": format!("/services/data/v{}/query?{query}", self.config.api_version),
                        "referenceId": format!("q{i}"),
                    })
                })
                .collect();
            let body = serde_json::json!({"allOrNone": false, "compositeRequest": subrequests});
            let value = self
                .json(CallKind::Read, Method::POST, "composite", &[], Some(&body))
                .await?;
            let responses = value["compositeResponse"]
                .as_array()
                .ok_or_else(|| SfError::Decode("composite: no compositeResponse".into()))?;
            if responses.len() != batch.len() {
                return Err(SfError::Decode(format!(
                    "composite: {} answers to {} queries",
                    responses.len(),
                    batch.len()
                )));
            }
            for response in responses {
                let status = response["httpStatusCode"].as_u64().unwrap_or(0);
                let body = &response["body"];
                if !(200..300).contains(&status) {
                    let (code, message) = error_of(&body.to_string(), StatusCode::BAD_REQUEST);
                    return Err(SfError::Api {
                        status: status as u16,
                        code,
                        message,
                    });
                }
                rows.extend(body["records"].as_array().cloned().unwrap_or_default());
                if body["done"] == false
                    && let Some(next) = body["nextRecordsUrl"].as_str()
                {
                    let mut rest = QueryStream {
                        client: self,
                        soql: None,
                        next_url: Some(next.to_owned()),
                        done: false,
                    };
                    while let Some(page) = rest.next_page().await? {
                        rows.extend(page);
                    }
                }
            }
        }
        Ok(rows)
    }

    /// An object's describe, fetched once and cached.
    pub async fn describe(&self, object: &str) -> Result<Arc<Describe>, SfError> {
        if let Some(cached) = self.describes.lock().ok().and_then(|d| d.get(object).cloned()) {
            return Ok(cached);
        }
        let value = self
            .json(
                CallKind::Read,
                Method::GET,
                &format!("sobjects/{object}/describe"),
                &[],
                None,
            )
            .await?;
        let describe: Describe =
            serde_json::from_value(value).map_err(|e| SfError::Decode(format!("describe {object}: {e}")))?;
        let describe = Arc::new(describe);
        if let Ok(mut cache) = self.describes.lock() {
            cache.insert(object.to_owned(), describe.clone());
        }
        Ok(describe)
    }

    /// `GET limits`: the daily allocation, as a fresh reading.
    pub async fn limits(&self) -> Result<ApiUsage, SfError> {
        let value = self.json(CallKind::Read, Method::GET, "limits", &[], None).await?;
        let max = value["DailyApiRequests"]["Max"].as_u64().unwrap_or_default();
        let remaining = value["DailyApiRequests"]["Remaining"].as_u64().unwrap_or_default();
        Ok(ApiUsage {
            used: max.saturating_sub(remaining),
            max,
        })
    }
}

/// A query's pages.
pub struct QueryStream<'a> {
    client: &'a SfClient,
    soql: Option<String>,
    next_url: Option<String>,
    done: bool,
}

impl std::fmt::Debug for QueryStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream").field("done", &self.done).finish()
    }
}

impl QueryStream<'_> {
    /// The next page of records, or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, SfError> {
        if self.done {
            return Ok(None);
        }
        let value = match (self.soql.take(), self.next_url.take()) {
            (Some(soql), _) => {
                self.client
                    .json(CallKind::Read, Method::GET, "query", &[("q", soql.as_str())], None)
                    .await?
            }
            (None, Some(url)) => self.client.json(CallKind::Read, Method::GET, &url, &[], None).await?,
            (None, None) => return Ok(None),
        };
        let records = value["records"].as_array().cloned().unwrap_or_default();
        match value["nextRecordsUrl"].as_str() {
            Some(url) if value["done"] == false => self.next_url = Some(url.to_owned()),
            _ => self.done = true,
        }
        Ok(Some(records))
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
