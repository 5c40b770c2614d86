//! The engine against the sandbox, in one place: the API clients pointed at a running sandbox
//! (the sandbox's test credentials), an engine on the in-memory store, and the sandbox's
//! control API (records, call counters, CM's clock, new activity, latency).
//!
//! Used by `shared/engine/tests`, the functions' handler tests and `tests/bench`.

use std::sync::Arc;
use std::time::Duration;

use campaign_monitor::{CmClient, CmError, Credentials};
use engine::{Engine, EngineOptions};
use events::publisher::{MemorySink, Publisher};
use mapping::{Settings, Tz};
use salesforce::{Auth, RetryPolicy, SfClient, SfConfig, SfError};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};
use state::SettingsStore;
use state::memory::MemoryStore;

/// A CM date (`YYYY-MM-DD HH:MM:SS`, in `zone`) `minutes` before the real clock: what a webhook
/// event posted now carries. The intake refuses dates outside a window around its clock and
/// the consumer confirms events against the list only that far back, so a fixed date in a test
/// would stop working as time passes.
pub fn cm_date_ago(zone: Tz, minutes: i64) -> String {
    mapping::CmTimestamp::from_utc(chrono::Utc::now() - chrono::Duration::minutes(minutes), zone).to_cm_string()
}

/// The private key whose certificate the sandbox's connected app trusts.
pub const SANDBOX_KEY: &str = include_str!("../../sandbox/fixtures/jwt-test-key.pem");

/// The sandbox's CM API key.
pub const CM_API_KEY: &str = "sandbox-api-key";

/// Salesforce credentials the sandbox accepts (JWT bearer).
pub fn sf_auth(sf_url: &str) -> Auth {
    Auth::JwtBearer {
        token_host: sf_url.to_owned(),
        client_id: "sandbox-consumer-key".into(),
        username: "integration@example.com".into(),
        private_key_pem: SANDBOX_KEY.into(),
        audience: "https://login.salesforce.com".into(),
    }
}

/// A Campaign Monitor client for the sandbox at `cm_url`.
pub fn cm_client(cm_url: &str, zone: Tz) -> Result<CmClient, CmError> {
    CmClient::builder(Credentials::api_key(CM_API_KEY), zone)
        .base_url(cm_url)
        .build()
}

/// Salesforce configuration for the sandbox at `sf_url` with the production retry policy.
pub fn sf_config(sf_url: &str) -> SfConfig {
    SfConfig::new(sf_auth(sf_url))
}

/// Salesforce configuration for tests: retries and Bulk polls a few milliseconds apart.
pub fn sf_config_fast(sf_url: &str) -> SfConfig {
    let mut config = sf_config(sf_url);
    config.retry = RetryPolicy {
        max_attempts: 5,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    config.bulk_poll_interval = Duration::from_millis(5);
    config
}

/// A Salesforce client for tests against the sandbox at `sf_url`.
pub fn sf_client_fast(sf_url: &str) -> Result<SfClient, SfError> {
    SfClient::new(sf_config_fast(sf_url))
}

/// The scenario's CM time zone.
pub fn zone_of(scenario: &Scenario) -> Result<Tz, String> {
    scenario
        .cm
        .timezone
        .parse()
        .map_err(|_| format!("scenario time zone {} is not an IANA zone", scenario.cm.timezone))
}

/// Default settings for a scenario: its clients and its zone.
pub fn settings_for(scenario: &Scenario) -> Result<Settings, String> {
    Ok(Settings::new(
        scenario.cm.clients.iter().map(|c| c.id.clone()).collect(),
        zone_of(scenario)?,
    ))
}

/// The CM campaigns `events` ask to sync, in order.
pub fn sync_requests(events: &[events::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            events::Event::CampaignSyncRequested(r) => r.cm_campaign_id.clone(),
            _ => None,
        })
        .collect()
}

/// The id of the scenario's CM campaign with this name.
pub fn campaign_named(scenario: &Scenario, name: &str) -> Result<String, String> {
    scenario
        .cm
        .campaigns
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.id.clone())
        .ok_or_else(|| format!("no campaign named {name}"))
}

/// A sandbox serving `scenario` and a Lambda container against it, with the scenario's default
/// settings changed by `settings` and stored.
pub async fn sandboxed_container(
    scenario: &Scenario,
    settings: impl FnOnce(&mut Settings),
) -> Result<(sandbox::Running, lambda_support::Container<MemoryStore, MemorySink>), String> {
    let running = start_sandbox(scenario.clone()).await?;
    let mut chosen = settings_for(scenario)?;
    settings(&mut chosen);
    let container = memory_container(&running, &chosen).await?;
    Ok((running, container))
}

/// A sandbox serving `scenario` on free local ports.
pub async fn start_sandbox(scenario: Scenario) -> Result<sandbox::Running, String> {
    let any = "127.0.0.1:0".parse().map_err(|e| format!("loopback address: {e}"))?;
    sandbox::start(scenario, any, any).await
}

/// An engine on the in-memory store and publisher, against a running sandbox, with `settings`
/// stored.
pub async fn memory_engine(
    running: &sandbox::Running,
    settings: &Settings,
) -> Result<Engine<MemoryStore, MemorySink>, String> {
    let store = MemoryStore::new();
    store
        .save_settings(settings, None, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Engine {
        store: Arc::new(store),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
        cm: Arc::new(cm_client(&running.cm_url, settings.zone()).map_err(|e| e.to_string())?),
        sf: Arc::new(sf_client_fast(&running.sf_url).map_err(|e| e.to_string())?),
        options: EngineOptions::default(),
    })
}

/// A Lambda container on the in-memory store and publisher, against a running sandbox, with
/// `settings` stored: what the functions' handler tests invoke.
pub async fn memory_container(
    running: &sandbox::Running,
    settings: &Settings,
) -> Result<lambda_support::Container<MemoryStore, MemorySink>, String> {
    let store = MemoryStore::new();
    store
        .save_settings(settings, None, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    Ok(lambda_support::Container::new(
        Arc::new(store),
        Arc::new(Publisher::new(MemorySink::default())),
        Arc::new(sf_client_fast(&running.sf_url).map_err(|e| e.to_string())?),
        Credentials::api_key(CM_API_KEY),
        &running.cm_url,
        EngineOptions::default(),
    ))
}

/// The sandbox's control API (`/_sandbox/...`).
#[derive(Debug, Clone)]
pub struct Control {
    http: reqwest::Client,
    /// CM base URL.
    pub cm_url: String,
    /// SF base URL.
    pub sf_url: String,
}

impl Control {
    /// The control API of the sandbox at these URLs.
    pub fn new(cm_url: &str, sf_url: &str) -> Control {
        Control {
            http: reqwest::Client::new(),
            cm_url: cm_url.to_owned(),
            sf_url: sf_url.to_owned(),
        }
    }

    /// The control API of a sandbox running in this process.
    pub fn of(running: &sandbox::Running) -> Control {
        Control::new(&running.cm_url, &running.sf_url)
    }

    async fn send(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every record of an SF object.
    pub async fn sf_records(&self, object: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/_sandbox/sf/records?object={object}", self.sf_url);
        let body = self.send(reqwest::Method::GET, url, None).await?;
        Ok(body[object].as_array().cloned().unwrap_or_default())
    }

    /// SF API calls so far, as (reads, writes): a Composite request of queries is a read;
    /// token requests are not counted.
    pub async fn sf_calls(&self) -> Result<(u64, u64), String> {
        let counters = self
            .send(reqwest::Method::GET, format!("{}/_sandbox/counters", self.sf_url), None)
            .await?;
        let mut reads = 0;
        let mut writes = 0;
        for (route, count) in counters.as_object().into_iter().flatten() {
            let count = count.as_u64().unwrap_or(0);
            if !route.starts_with("sf ") || route.contains("oauth2") {
                continue;
            }
            if route.starts_with("sf GET") || route.ends_with("/composite") {
                reads += count
            } else {
                writes += count
            }
        }
        Ok((reads, writes))
    }

    /// CM API calls so far (the control API not counted).
    pub async fn cm_calls(&self) -> Result<u64, String> {
        let counters = self
            .send(reqwest::Method::GET, format!("{}/_sandbox/counters", self.cm_url), None)
            .await?;
        Ok(counters
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(route, _)| route.starts_with("cm ") && !route.contains("_sandbox"))
            .filter_map(|(_, n)| n.as_u64())
            .sum())
    }

    /// Zeroes the call counters.
    pub async fn reset_counters(&self) -> Result<(), String> {
        self.send(
            reqwest::Method::DELETE,
            format!("{}/_sandbox/counters", self.sf_url),
            None,
        )
        .await
        .map(drop)
    }

    /// Sets CM's clock (`YYYY-MM-DD HH:MM:SS`, the account's zone).
    pub async fn set_cm_now(&self, now: &str) -> Result<(), String> {
        let url = format!("{}/_sandbox/cm/now", self.cm_url);
        self.send(reqwest::Method::POST, url, Some(json!({"now": now})))
            .await
            .map(drop)
    }

    /// Adds a campaign to CM, as someone creating one there now (the scenario's campaign shape).
    pub async fn add_cm_campaign(&self, campaign: Value) -> Result<(), String> {
        let url = format!("{}/_sandbox/cm/campaigns", self.cm_url);
        self.send(reqwest::Method::POST, url, Some(campaign)).await.map(drop)
    }

    /// Adds activity records to a CM campaign.
    pub async fn add_activity(&self, cm_campaign_id: &str, activity: Value) -> Result<(), String> {
        let url = format!("{}/_sandbox/cm/activity", self.cm_url);
        let body = json!({"campaign_id": cm_campaign_id, "activity": activity});
        self.send(reqwest::Method::POST, url, Some(body)).await.map(drop)
    }

    /// CM delivers list events as it does (`/_sandbox/webhooks/deliver`): each Deactivate
    /// becomes the subscriber's state on the list, and the batch is posted to the list's active
    /// webhooks (none registered: only the list's state changes).
    pub async fn deliver(&self, list_id: &str, events: Value) -> Result<Value, String> {
        let url = format!("{}/_sandbox/webhooks/deliver", self.cm_url);
        let body = json!({"ListID": list_id, "Events": events});
        self.send(reqwest::Method::POST, url, Some(body)).await
    }

    /// Replaces the fault settings (both APIs).
    pub async fn set_faults(&self, faults: Value) -> Result<(), String> {
        let url = format!("{}/_sandbox/faults", self.sf_url);
        self.send(reqwest::Method::PUT, url, Some(faults)).await.map(drop)
    }

    /// Adds this much latency to every call on both APIs.
    pub async fn set_latency(&self, ms: u64) -> Result<(), String> {
        self.set_faults(json!({"seed": 1, "cm": {"latency_ms": ms}, "sf": {"latency_ms": ms}}))
            .await
    }
}
