//! Local stand-ins for Campaign Monitor and Salesforce that speak the real HTTP APIs, keep real
//! state and enforce the real rules, so the product, its tests, `make demo` and `make bench` run
//! without accounts. See `tests/sandbox/README.md` for the scenario format and control API.

// Handlers return `Result<_, Response>` to answer early with the API's own error; boxing every
// early answer would only add noise to a test tool.
#![allow(clippy::result_large_err)]

pub mod cm;
pub mod control;
pub mod faults;
pub mod generate;
pub mod scenario;
pub mod sf;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use crate::cm::CmWorld;
use crate::faults::{Counters, Dice, Faults};
use crate::scenario::Scenario;
use crate::sf::SfWorld;

/// Everything both stand-ins share.
#[derive(Debug)]
pub struct World {
    /// The CM account.
    pub cm: CmWorld,
    /// The SF org.
    pub sf: SfWorld,
    /// Current faults.
    pub faults: Faults,
    /// Seeded draws.
    pub dice: Dice,
    /// Calls per endpoint.
    pub counters: Counters,
    /// The SF base URL (the `instance_url` handed out).
    pub sf_base: String,
    /// Records locked by a drawn lock error: write attempts each still fails (see
    /// `SfFaults::lock_streak_attempts`). Cleared when the faults change.
    pub lock_streaks: std::collections::BTreeMap<String, u32>,
}

impl World {
    /// Loads a scenario.
    pub fn load(scenario: &Scenario, sf_base: &str) -> Result<World, String> {
        World::from_scenario(scenario.clone(), sf_base)
    }

    /// [`World::load`], taking the scenario: its data moves into the world (held once).
    pub fn from_scenario(mut scenario: Scenario, sf_base: &str) -> Result<World, String> {
        let records = sf::take_records(&mut scenario.sf);
        World::from_parts(scenario, records, sf_base)
    }

    /// A world of a scenario whose SF records are given apart, as the stand-in holds them.
    pub fn from_parts(
        scenario: Scenario,
        records: std::collections::BTreeMap<String, Vec<sf::Record>>,
        sf_base: &str,
    ) -> Result<World, String> {
        let faults = scenario.faults;
        Ok(World {
            cm: CmWorld::from_account(scenario.cm)?,
            sf: SfWorld::from_records(scenario.sf, records)?,
            dice: Dice::new(faults.seed),
            faults: faults.realistic(),
            counters: Counters::new(),
            sf_base: sf_base.to_owned(),
            lock_streaks: std::collections::BTreeMap::new(),
        })
    }
}

/// What a world is loaded from, and loaded again from at a reset.
#[derive(Debug, Clone)]
pub enum Source {
    /// A scenario as given (a file, a test's own).
    Scenario(Arc<Scenario>),
    /// A generated scenario's shape: the scenario is built again at each reset rather than kept
    /// beside the world (a million-recipient scenario is gigabytes as JSON values).
    Generated(crate::generate::Shape),
}

impl Source {
    /// A fresh world.
    pub fn world(&self, sf_base: &str) -> Result<World, String> {
        match self {
            Source::Scenario(scenario) => World::load(scenario, sf_base),
            Source::Generated(shape) => crate::generate::generate_world(shape, sf_base),
        }
    }
}

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct AppState {
    world: Arc<Mutex<World>>,
    source: Arc<Source>,
    http: reqwest::Client,
}

impl AppState {
    /// The world, locked. A poisoned lock (a panicking handler) is recovered: the sandbox is a
    /// test tool and should keep answering.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request in flight on one service for as long as it lives; the counters keep the peak
/// (`peak in flight: cm`, `peak in flight: sf`), so a test sees how many requests a client had
/// open at once.
pub(crate) struct InFlight {
    state: AppState,
    service: &'static str,
}

impl InFlight {
    pub(crate) fn enter(state: &AppState, service: &'static str) -> InFlight {
        let mut world = state.lock();
        let now = {
            let open = world.counters.entry(format!("in flight: {service}")).or_default();
            *open += 1;
            *open
        };
        let peak = world.counters.entry(format!("peak in flight: {service}")).or_default();
        *peak = (*peak).max(now);
        InFlight {
            state: state.clone(),
            service,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut world = self.state.lock();
        if let Some(open) = world.counters.get_mut(&format!("in flight: {}", self.service)) {
            *open = open.saturating_sub(1);
        }
    }
}

/// A running sandbox.
#[derive(Debug)]
pub struct Running {
    /// CM base URL, e.g. `http://127.0.0.1:4001` (the API lives under `/api/v3.3`).
    pub cm_url: String,
    /// SF base URL (login and instance).
    pub sf_url: String,
    /// Shared state, for in-process tests.
    pub state: AppState,
}

async fn cm_fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    cm::dispatch(state, method, uri, headers, body).await
}

async fn sf_fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sf::http::dispatch(state, method, uri, headers, body).await
}

/// Starts both stand-ins on the given addresses (port 0 picks a free port) and returns once
/// they accept connections.
pub async fn start(scenario: Scenario, cm_addr: SocketAddr, sf_addr: SocketAddr) -> Result<Running, String> {
    start_from(Source::Scenario(Arc::new(scenario)), cm_addr, sf_addr).await
}

/// [`start`] from a source: a generated shape is built in the process, never written out and
/// read back as JSON.
pub async fn start_from(source: Source, cm_addr: SocketAddr, sf_addr: SocketAddr) -> Result<Running, String> {
    let cm_listener = tokio::net::TcpListener::bind(cm_addr)
        .await
        .map_err(|e| format!("cannot bind CM address {cm_addr}: {e}"))?;
    let sf_listener = tokio::net::TcpListener::bind(sf_addr)
        .await
        .map_err(|e| format!("cannot bind SF address {sf_addr}: {e}"))?;
    let cm_url = format!("http://{}", cm_listener.local_addr().map_err(|e| e.to_string())?);
    let sf_url = format!("http://{}", sf_listener.local_addr().map_err(|e| e.to_string())?);
    let world = source.world(&sf_url)?;
    let state = AppState {
        world: Arc::new(Mutex::new(world)),
        source: Arc::new(source),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?,
    };
    let cm_app = Router::new()
        .nest("/_sandbox", control::router())
        .fallback(cm_fallback)
        .with_state(state.clone());
    let sf_app = Router::new()
        .nest("/_sandbox", control::router())
        .fallback(sf_fallback)
        .with_state(state.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(cm_listener, cm_app).await {
            tracing::error!(%error, "CM stand-in stopped");
        }
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(sf_listener, sf_app).await {
            tracing::error!(%error, "SF stand-in stopped");
        }
    });
    Ok(Running { cm_url, sf_url, state })
}
