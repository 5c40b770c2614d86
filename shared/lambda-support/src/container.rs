//! What a Lambda container builds once and every invocation reuses: the store, the publisher,
//! the Salesforce client and the engine (with its Campaign Monitor client). Each invocation
//! reads the settings once and gets them with the engine; the engine is rebuilt only when the
//! settings' CM time zone changed (CM dates are read in it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use campaign_monitor::{CmClient, Credentials, TokenVault};
use engine::{Engine, EngineError, EngineOptions};
use events::publisher::{EventSink, Publisher};
use mapping::Settings;
use salesforce::SfClient;
use state::Store;

/// The parts of one container.
pub struct Container<S, P> {
    store: Arc<S>,
    publisher: Arc<Publisher<P>>,
    sf: Arc<SfClient>,
    cm_credentials: Credentials,
    cm_vault: Option<Arc<dyn TokenVault>>,
    cm_base_url: String,
    options: EngineOptions,
    engine: Mutex<Option<Arc<Engine<S, P>>>>,
    engines_built: AtomicUsize,
}

impl<S, P> std::fmt::Debug for Container<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("cm_base_url", &self.cm_base_url)
            .field("engines_built", &self.engines_built)
            .finish()
    }
}

/// One invocation's engine and the settings it read.
#[derive(Debug)]
pub struct Invocation<S, P> {
    /// The container's engine.
    pub engine: Arc<Engine<S, P>>,
    /// The settings, read once for this invocation.
    pub settings: Settings,
}

impl<S: Store, P: EventSink> Container<S, P> {
    /// A container over built parts.
    pub fn new(
        store: Arc<S>,
        publisher: Arc<Publisher<P>>,
        sf: Arc<SfClient>,
        cm_credentials: Credentials,
        cm_base_url: &str,
        options: EngineOptions,
    ) -> Container<S, P> {
        Container {
            store,
            publisher,
            sf,
            cm_credentials,
            cm_vault: None,
            cm_base_url: cm_base_url.to_owned(),
            options,
            engine: Mutex::new(None),
            engines_built: AtomicUsize::new(0),
        }
    }

    /// Where the CM client saves refreshed OAuth tokens and reads those another container saved.
    pub fn with_cm_token_vault(mut self, vault: Arc<dyn TokenVault>) -> Container<S, P> {
        self.cm_vault = Some(vault);
        self
    }

    /// The state store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The event publisher.
    pub fn publisher(&self) -> &Arc<Publisher<P>> {
        &self.publisher
    }

    /// How many engines (and CM clients) this container has built.
    pub fn engines_built(&self) -> usize {
        self.engines_built.load(Ordering::Relaxed)
    }

    /// Reads the settings and hands out the engine, built on first use.
    pub async fn invocation(&self) -> Result<Invocation<S, P>, EngineError> {
        let settings = self
            .store
            .load_settings()
            .await?
            .ok_or(EngineError::NoSettings)?
            .settings;
        let engine = self.engine_for(&settings)?;
        Ok(Invocation { engine, settings })
    }

    fn engine_for(&self, settings: &Settings) -> Result<Arc<Engine<S, P>>, EngineError> {
        let mut slot = self
            .engine
            .lock()
            .map_err(|_| EngineError::Invalid("the container's engine lock is poisoned".into()))?;
        if let Some(engine) = slot.as_ref().filter(|e| e.cm.zone() == settings.zone()) {
            return Ok(engine.clone());
        }
        // Tokens a refresh replaced are carried over: the container's start-up ones may be spent.
        let credentials = match slot.as_ref() {
            Some(previous) => previous.cm.credentials()?,
            None => self.cm_credentials.clone(),
        };
        let mut cm = CmClient::builder(credentials, settings.zone()).base_url(&self.cm_base_url);
        if let Some(vault) = &self.cm_vault {
            cm = cm.token_vault(vault.clone());
        }
        let cm = cm.build()?;
        let engine = Arc::new(Engine {
            store: self.store.clone(),
            publisher: self.publisher.clone(),
            cm: Arc::new(cm),
            sf: self.sf.clone(),
            options: self.options.clone(),
        });
        self.engines_built.fetch_add(1, Ordering::Relaxed);
        *slot = Some(engine.clone());
        Ok(engine)
    }
}
