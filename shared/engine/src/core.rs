//! What every flow works with: the [`Engine`] (the clients, the store, the publisher and the
//! options, built once per Lambda container), its errors, the invocation's [`Deadline`], and
//! the few store and bus helpers every flow shares. No flow logic lives here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use campaign_monitor::{CmClient, CmError};
use events::Event;
use events::publisher::{EventSink, PublishError, Publisher};
use salesforce::{SfClient, SfError};
use state::{LinkStore, SettingsStore, StoreError};

/// Why a sync step failed as a whole (per-record problems are reported, not raised).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No settings are stored yet.
    #[error("no settings stored: apply a settings document first (cm-sf-admin settings apply FILE)")]
    NoSettings,
    /// The state table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Campaign Monitor failed.
    #[error(transparent)]
    Cm(#[from] CmError),
    /// Salesforce failed.
    #[error(transparent)]
    Sf(#[from] SfError),
    /// Publishing events failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// An event this function does not handle.
    #[error("unexpected event: {0}")]
    UnexpectedEvent(String),
    /// Temporary storage for a large campaign's activity failed (Lambda's `/tmp` full?).
    #[error("temporary storage for the campaign's activity: {0} (raise the function's ephemeral storage)")]
    Spill(#[from] std::io::Error),
    /// An administrator's request that cannot be carried out as asked; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// Part of the work was refused for a reason that passes (a record lock, a service that
    /// was down): what was done is kept, and the trigger should run the rest again.
    #[error("to be retried: {reason}")]
    RetryLater {
        /// The transient refusal.
        reason: String,
    },
    /// A run was handed from invocation to invocation too often without finishing, or several
    /// times in a row without finishing a single part.
    #[error(
        "run {run_id} stopped after {continuations} continuations without finishing: raise the function's timeout or memory, or sync the campaign in smaller parts"
    )]
    NoProgress {
        /// The campaign run.
        run_id: String,
        /// Hand-overs so far.
        continuations: u32,
    },
}

impl EngineError {
    /// Whether the trigger should retry (transient) or give up (the event goes to the DLQ).
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::NoSettings
            | EngineError::UnexpectedEvent(_)
            | EngineError::Invalid(_)
            | EngineError::NoProgress { .. }
            | EngineError::Spill(_) => false,
            EngineError::RetryLater { .. } => true,
            EngineError::Store(e) => e.is_retryable(),
            EngineError::Cm(e) => e.is_retryable(),
            EngineError::Sf(e) => e.is_retryable(),
            EngineError::Publish(e) => e.is_retryable(),
        }
    }

    /// The code a run's record keeps for a run this error stopped.
    pub fn run_failure_code(&self) -> &'static str {
        if self.is_retryable() {
            "RETRYABLE"
        } else {
            "NOT_RETRYABLE"
        }
    }
}

/// Tunables with sensible defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long a run holds its lease. It must cover a whole invocation (the default matches
    /// Lambda's 15-minute limit): commits are fenced by it, and a run still `Running` after it
    /// is taken for abandoned.
    pub lease: Duration,
    /// Activity newer than CM's clock minus this is read again next time (CM makes some
    /// records visible late).
    pub settle_lag: chrono::Duration,
    /// Stop taking new work when less than this remains before the Lambda deadline.
    pub deadline_margin: Duration,
    /// Activities planned and applied together: a campaign with more spills to temporary files
    /// and is synced in parts of about this size, so memory stays bounded (45,000: a part and
    /// the next, planned while it is written, fit a million-recipient send in 128 MiB).
    pub part_size: usize,
    /// A webhook batch still pending this long after it was recorded is handed on again by
    /// the scheduled run (its own hand-off has had its chance).
    pub webhook_sweep_after: chrono::Duration,
    /// How long a webhook unsubscribe or bounce CM's list does not show yet is confirmed again
    /// (at every sweep) before it is closed as not applied: CM may show a list change later
    /// than it posts it.
    pub webhook_confirm_for: chrono::Duration,
    /// The share of an invocation's time a campaign's read may take before it is cut (what
    /// was read is applied and committed, and the next run goes on from there): a stream too
    /// long for one invocation still moves forward, and leaves time to write what it read.
    pub read_share: f64,
    /// At most this many CM pages read by one run before its read is cut (none: only the
    /// time share counts). Operators bound a run's memory and temporary files by it.
    pub read_pages_per_run: Option<u32>,
    /// CM requests one campaign's read has in flight at most (its streams' pages asked for
    /// ahead; CM publishes no limit and asks for low concurrency, and 429s back off as ever),
    /// never fewer than one for each of its streams: a stream that waited for the others'
    /// pages asked ahead would be served last in every run, and a read cut by its budget
    /// would never reach it.
    pub cm_pages_in_flight: usize,
}

/// [`EngineOptions::cm_pages_in_flight`] unless the deployment sets another: one request for
/// each of a campaign's six streams, as when each had one in flight.
pub const DEFAULT_CM_PAGES_IN_FLIGHT: usize = mapping::ActivityKind::COUNT;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lease: Duration::from_secs(15 * 60),
            settle_lag: chrono::Duration::minutes(5),
            deadline_margin: Duration::from_secs(30),
            part_size: 45_000,
            webhook_sweep_after: chrono::Duration::minutes(10),
            webhook_confirm_for: chrono::Duration::hours(24),
            read_share: 0.5,
            read_pages_per_run: None,
            cm_pages_in_flight: DEFAULT_CM_PAGES_IN_FLIGHT,
        }
    }
}

/// Everything the flows work with, built once per Lambda container. Each flow borrows it:
/// [`crate::campaign::CampaignSync`], [`crate::tick::Tick`], [`crate::webhook::WebhookConsumer`],
/// [`crate::lists::Lists`], [`crate::autocreate::AutoCreate`] and the admin operations.
pub struct Engine<S, P> {
    /// The state table.
    pub store: Arc<S>,
    /// The event publisher.
    pub publisher: Arc<Publisher<P>>,
    /// Campaign Monitor.
    pub cm: Arc<CmClient>,
    /// Salesforce.
    pub sf: Arc<SfClient>,
    /// Tunables.
    pub options: EngineOptions,
}

impl<S, P> std::fmt::Debug for Engine<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).finish()
    }
}

/// Loads and returns the settings, or [`EngineError::NoSettings`].
pub async fn load_settings<S: SettingsStore>(store: &S) -> Result<mapping::Settings, EngineError> {
    Ok(store.load_settings().await?.ok_or(EngineError::NoSettings)?.settings)
}

/// Every stored link: CM campaign id → SF Campaign id.
pub async fn link_map<S: LinkStore>(store: &S) -> Result<std::collections::BTreeMap<String, String>, EngineError> {
    Ok(store
        .links()
        .await?
        .into_iter()
        .map(|l| (l.cm_campaign_id, l.sf_campaign_id))
        .collect())
}

/// Publishes events (FailedEntryCount handled by the publisher); nothing to publish, no call.
pub async fn publish<P: EventSink>(publisher: &Publisher<P>, events: &[Event]) -> Result<(), EngineError> {
    if events.is_empty() {
        return Ok(());
    }
    Ok(publisher.publish(events).await?)
}

/// How long before the invocation's deadline a sync stops taking new work: the engine's
/// `deadline_margin`, and at least as long as a Salesforce Bulk job may take plus half a
/// minute, so a part started just before the margin can wait its Bulk jobs out.
pub fn work_margin<S, P>(engine: &Engine<S, P>) -> Duration {
    let bulk = engine.sf.config().bulk_poll_limit + Duration::from_secs(30);
    engine.options.deadline_margin.max(bulk)
}

/// The lease span as a date duration.
pub(crate) fn lease_span(options: &EngineOptions) -> chrono::Duration {
    chrono::Duration::from_std(options.lease).unwrap_or_default()
}

/// An error as logs and run records may hold it: any address Salesforce or CM quoted in its
/// message redacted (`j***@example.com`).
pub fn redacted(error: &impl std::fmt::Display) -> String {
    mapping::email::redact_emails_in(&error.to_string())
}

/// A lease owner naming this invocation (not the run): the same event delivered twice at once
/// runs once, and commits are fenced by it.
pub(crate) fn lease_owner(run_id: &str) -> String {
    format!("{run_id}#{}", uuid::Uuid::new_v4().simple())
}

/// When the current invocation must stop taking new work.
#[derive(Debug, Clone)]
pub struct Deadline(Limit);

#[derive(Debug, Clone)]
enum Limit {
    None,
    At(Instant),
    /// Passes at a given check, whatever the clock: tests stop a run at an exact stage.
    Checks {
        made: Arc<AtomicU32>,
        passes_at: u32,
    },
}

impl Deadline {
    /// No deadline (tests, CLI).
    pub fn none() -> Self {
        Deadline(Limit::None)
    }

    /// Stop at `at` (the Lambda deadline minus the margin).
    pub fn at(at: Instant) -> Self {
        Deadline(Limit::At(at))
    }

    /// Passed from the `n`-th check on (1 = the first), counting every check made; for tests,
    /// which learn how many checks a whole run makes and then stop one at a chosen stage.
    pub fn at_check(n: u32) -> Self {
        Deadline(Limit::Checks {
            made: Arc::new(AtomicU32::new(0)),
            passes_at: n,
        })
    }

    /// Checks made so far (0 unless made by [`Deadline::at_check`]).
    pub fn checks_made(&self) -> u32 {
        match &self.0 {
            Limit::Checks { made, .. } => made.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    /// The moment `share` of the time left runs out (`None` when there is no clock to share:
    /// no deadline, or a test's count of checks).
    pub fn share_of_time_left(&self, share: f64) -> Option<Instant> {
        match &self.0 {
            Limit::At(at) => {
                let now = Instant::now();
                Some(now + at.saturating_duration_since(now).mul_f64(share.clamp(0.0, 1.0)))
            }
            _ => None,
        }
    }

    /// Whether time is up.
    pub fn passed(&self) -> bool {
        match &self.0 {
            Limit::None => false,
            Limit::At(at) => Instant::now() >= *at,
            Limit::Checks { made, passes_at } => made.fetch_add(1, Ordering::SeqCst) + 1 >= *passes_at,
        }
    }
}
