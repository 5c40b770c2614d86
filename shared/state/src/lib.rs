//! The product's state in one DynamoDB table (PRODUCT.md §6), behind narrow store traits.
//!
//! Two implementations of every trait: [`dynamo::DynamoStore`] (the real one) and
//! [`memory::MemoryStore`] (for fast handler tests). One conformance suite
//! (`tests/conformance`) runs against both, so they cannot drift apart.
//!
//! # Single-table design
//!
//! Key schema: partition key `pk` (S), sort key `sk` (S). TTL attribute: `expires_at` (N, epoch
//! seconds). Billing: on demand. No secondary index: every access pattern below is a `GetItem` or
//! a `Query` on one partition.
//!
//! | item | `pk` | `sk` | other attributes | access patterns |
//! |---|---|---|---|---|
//! | settings | `SETTINGS` | `CURRENT` | `doc` (S, JSON), `version` (N), `updated_at` (S) | get; put if `version` matches (optimistic locking) |
//! | link | `LINKS` | `<cm campaign id>` | `sf_campaign_id`, `origin`, `linked_at` | get by CM id; list all (query `LINKS`) |
//! | reverse link | `SFLINKS` | `<sf campaign id>` | `cm_campaign_id` | get by SF id; written in one transaction with the link, so one SF Campaign never links two CM campaigns |
//! | watermark | `WATERMARK#<scope>` | `<stream>` (`Opened`, `Clicked`, …, `discovery`) | `at_ms` (N), `updated_at` | get; list a scope; advance only forwards (condition `at_ms < :new`) |
//! | webhook event | `WEBHOOK#<dedupe key>` | `EVENT` | `list_id`, `payload` (S, JSON), `state`, `reason`, `received_at`, `expires_at` (TTL) | put if absent (dedupe); get; set state |
//! | run | `RUNS` | `<run id>` (time-ordered) | `scope`, `started_at`, `ended_at`, `status`, `counts` (S, JSON), `failure_count` | put if absent; update at the end; newest N (query descending) |
//! | run failure | `RUN#<run id>` | `FAILURE#<seq>` | `record`, `reason`, `code` | batch-written 25 at a time; query a run |
//! | lease | `LEASE#<scope>` | `LEASE` | `owner`, `lease_until_ms` (N), `expires_at` (TTL, cleanup only) | take if absent, expired or ours; release if ours |
//! | failed record | `RETRY#<scope>` | `<record key>` | `payload` (S, JSON), `reason`, `attempts`, `first_failed_at`, `expires_at` (TTL) | batch put/delete; query a scope |
//!
//! Every write that must not happen twice is conditional; races are settled by DynamoDB, not by
//! a read before the write.

pub mod dynamo;
pub mod memory;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use mapping::Settings;
use mapping::autocreate::LinkOrigin;
use serde::{Deserialize, Serialize};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else changed the settings since they were read.
    #[error(
        "the settings were changed by someone else (expected version {expected:?}, found {found:?}); reload and apply again"
    )]
    VersionConflict {
        /// The version the caller read (`None`: expected no settings yet).
        expected: Option<u64>,
        /// The version stored now.
        found: Option<u64>,
    },
    /// The CM or SF campaign is linked to something else already.
    #[error("cannot link CM campaign {cm_campaign_id} to SF Campaign {sf_campaign_id}: {existing}")]
    LinkConflict {
        /// The CM campaign.
        cm_campaign_id: String,
        /// The SF Campaign.
        sf_campaign_id: String,
        /// What exists.
        existing: String,
    },
    /// A stored item does not read back (edited by hand, or written by a newer version).
    #[error("stored item {key} is unreadable: {reason}")]
    Corrupt {
        /// `pk`/`sk` of the item.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// DynamoDB refused or could not be reached.
    #[error("DynamoDB {operation} failed: {message}")]
    Backend {
        /// The API operation.
        operation: &'static str,
        /// The SDK's error, with its context.
        message: String,
        /// A later attempt may succeed (throttling, 5xx, network).
        retryable: bool,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend { retryable: true, .. })
    }
}

/// The stored settings with their version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedSettings {
    /// The document.
    pub settings: Settings,
    /// Its version: 1 for the first save, +1 for every save after.
    pub version: u64,
    /// When it was saved.
    pub updated_at: DateTime<Utc>,
}

/// The settings document, versioned.
pub trait SettingsStore: Send + Sync {
    /// The stored settings, if any (validated on the way out).
    fn load_settings(&self) -> impl Future<Output = Result<Option<VersionedSettings>, StoreError>> + Send;
    /// Saves `settings` if the stored version is still `expected_version` (`None`: nothing stored
    /// yet). Returns the new version.
    fn save_settings(
        &self,
        settings: &Settings,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// A CM campaign ↔ SF Campaign link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// CM CampaignID.
    pub cm_campaign_id: String,
    /// SF Campaign Id.
    pub sf_campaign_id: String,
    /// How it was made.
    pub origin: LinkOrigin,
    /// When.
    pub linked_at: DateTime<Utc>,
}

/// What `put_link` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    /// The link is new.
    Created,
    /// The same link existed already (a retry or a race): nothing changed.
    AlreadyLinked,
}

/// Campaign links.
pub trait LinkStore: Send + Sync {
    /// Stores a link; refuses if either side is linked to something else.
    fn put_link(&self, link: &LinkRecord) -> impl Future<Output = Result<LinkOutcome, StoreError>> + Send;
    /// The link of a CM campaign.
    fn link(&self, cm_campaign_id: &str) -> impl Future<Output = Result<Option<LinkRecord>, StoreError>> + Send;
    /// The CM campaign linked to an SF Campaign.
    fn cm_campaign_for(&self, sf_campaign_id: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Every link.
    fn links(&self) -> impl Future<Output = Result<Vec<LinkRecord>, StoreError>> + Send;
    /// Removes a link (both directions); absent is fine.
    fn delete_link(&self, cm_campaign_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Watermarks: how far each stream of a scope has been applied.
pub trait WatermarkStore: Send + Sync {
    /// The watermark of one stream (`scope`: a CM campaign id or `discovery:<client>`).
    fn watermark(
        &self,
        scope: &str,
        stream: &str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
    /// Every stream's watermark in a scope.
    fn watermarks(
        &self,
        scope: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, DateTime<Utc>>, StoreError>> + Send;
    /// Moves a watermark forward to `to`. Returns `false` (and changes nothing) if it already is
    /// at or past `to`: a watermark never moves backwards. Call only after the work below `to`
    /// is applied.
    fn advance_watermark(
        &self,
        scope: &str,
        stream: &str,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Forgets every watermark of a scope, so its next sync reads everything again (an unlinked
    /// campaign linked anew must not skip what came before), what its last sync saw
    /// ([`WatermarkStore::campaign_progress`]) and its schedule (it is due at once). The only
    /// way a watermark goes back.
    fn reset_watermarks(&self, scope: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// What a campaign's last committed sync saw and wrote (default when none did): lets a
    /// sync with nothing new skip CM's streams and Salesforce. Written by
    /// [`LeaseStore::commit_under_lease`].
    fn campaign_progress(
        &self,
        cm_campaign_id: &str,
    ) -> impl Future<Output = Result<CampaignProgress, StoreError>> + Send;
    /// CM campaign id → when the schedule syncs it next, for every campaign a committed sync
    /// has scheduled (one Query; a linked campaign without an entry is due). Written by
    /// [`LeaseStore::commit_under_lease`].
    fn sync_schedule(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, mapping::cadence::NextSync>, StoreError>> + Send;
}

/// What a campaign's last committed sync saw in CM and wrote onto its SF Campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignProgress {
    /// The summary's activity counts, and when they were first seen.
    pub probe: Option<mapping::probe::ActivityProbe>,
    /// The statistics written.
    pub statistics: Option<mapping::probe::WrittenStatistics>,
    /// When CM sent the campaign, once looked up (its age sets the cadence).
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// What the last sync read in the activity overlap, per stream and quarter-hour: read
    /// again, those records cost no Salesforce call.
    #[serde(default, skip_serializing_if = "is_default")]
    pub recent: mapping::overlap::RecentCounts,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Processing state of a recorded webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EventState {
    /// Recorded, not yet applied.
    Received,
    /// Applied to SF.
    Applied {
        /// What was done, for admins.
        outcome: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A CM webhook event as recorded by the intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEventRecord {
    /// Dedupe key (list, type, email, date, state).
    pub dedupe_key: String,
    /// The CM list.
    pub list_id: String,
    /// The event as CM sent it (normalised).
    pub payload: serde_json::Value,
    /// When the intake received it.
    pub received_at: DateTime<Utc>,
    /// When DynamoDB may delete it (TTL).
    pub expires_at: DateTime<Utc>,
    /// Processing state.
    pub state: EventState,
}

/// A webhook delivery as the intake records it: its events (only what the rules need of each)
/// under one batch, the reference the consumer is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookBatchRecord {
    /// Unique per delivery (time-ordered: `<received_at>#<id>`).
    pub batch: String,
    /// The CM list.
    pub list_id: String,
    /// When the intake received it.
    pub received_at: DateTime<Utc>,
    /// When DynamoDB may delete it (TTL).
    pub expires_at: DateTime<Utc>,
    /// The events, each under its dedupe key.
    pub events: Vec<WebhookEventRecord>,
    /// Why each event refused on its own was refused (never the event): kept with the batch
    /// for the consumer, which reports them as a run (the intake writes webhook items only).
    pub refused: Vec<String>,
}

/// What [`WebhookEventStore::record_webhook_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchRecorded {
    /// Events seen for the first time.
    pub new: usize,
    /// Events seen before (a redelivery).
    pub duplicates: usize,
    /// Events of the batch to apply: the new ones, and those seen before but not applied yet
    /// (a hand-off that was lost is made again).
    pub to_apply: usize,
    /// The batch is pending (events to apply or refused events to report): hand it on.
    pub pending: bool,
}

/// A recorded batch with events not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBatch {
    /// The batch reference.
    pub batch: String,
    /// The CM list.
    pub list_id: String,
    /// When the intake received it.
    pub received_at: DateTime<Utc>,
    /// Its events as they stand (applied ones included until the batch is finished).
    pub events: Vec<WebhookEventRecord>,
    /// Why the events refused on their own were refused, to report.
    pub refused: Vec<String>,
}

/// Webhook events, deduplicated, recorded and handed on by batch.
pub trait WebhookEventStore: Send + Sync {
    /// Records a delivery: each event unless its dedupe key is known (an event known and not
    /// applied yet is handed on again); the batch stays pending until finished.
    fn record_webhook_batch(
        &self,
        batch: &WebhookBatchRecord,
    ) -> impl Future<Output = Result<BatchRecorded, StoreError>> + Send;
    /// A pending batch with its events' current states (`None`: finished, or never recorded).
    fn pending_webhook_batch(
        &self,
        batch: &str,
    ) -> impl Future<Output = Result<Option<PendingBatch>, StoreError>> + Send;
    /// Up to `limit` pending batches, oldest first: what a replay or a sweep re-drives.
    fn pending_webhook_batches(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingBatch>, StoreError>> + Send;
    /// Saves events' new states (the records as given).
    fn save_webhook_events(&self, events: &[WebhookEventRecord])
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A batch whose events are all applied leaves the pending list.
    fn finish_webhook_batch(&self, batch: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One recorded event.
    fn webhook_event(
        &self,
        dedupe_key: &str,
    ) -> impl Future<Output = Result<Option<WebhookEventRecord>, StoreError>> + Send;
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running (or cut off without finishing).
    Running,
    /// Everything applied.
    Succeeded,
    /// Finished, with per-record failures.
    CompletedWithFailures,
    /// Stopped by an error.
    Failed,
    /// Stopped early and continued in another invocation.
    Continued,
    /// Its invocation stopped without finishing (a timeout or a crash): found by a later
    /// scheduled run; the campaign's next sync continues from the last commit.
    Abandoned,
}

/// Whether [`RunStore::start_run`] recorded a new run or found it already started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// The run id was new; its record was written.
    New,
    /// The run id was already recorded: this invocation continues it.
    Continued,
}

/// A sync run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Time-ordered id (see [`new_run_id`]).
    pub run_id: String,
    /// What it covers: `all`, a CM campaign id, `webhook`, ...
    pub scope: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// Status.
    pub status: RunStatus,
    /// Counters (members updated, SF calls, ...).
    pub counts: BTreeMap<String, u64>,
    /// Number of per-record failures stored with the run.
    pub failure_count: u64,
    /// When the last continuation took the run over (a run `Running` long after it is
    /// abandoned, however long ago it started).
    #[serde(default)]
    pub resumed_at: Option<DateTime<Utc>>,
    /// When DynamoDB deletes the record and its failures (`run_retention_days` after the
    /// start; `None` in records written before retention existed: kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an invocation hands over with a run it could not finish: what is done, so the
/// continuation does not do it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCheckpoint {
    /// Where each stream's watermark moves when the run commits (fixed by the first read: the
    /// parts are cut from the activity up to these moments).
    pub watermarks: BTreeMap<String, DateTime<Utc>>,
    /// Parts the activity was split into (0 if the hand-over came while reading).
    pub part_count: u32,
    /// Parts applied, in order: the continuation starts at the next one.
    pub parts_done: u32,
    /// The counters so far.
    pub counts: BTreeMap<String, u64>,
    /// People whose writes failed with a transient error in the parts done (person keys).
    pub transient_people: Vec<String>,
    /// A write not tied to one person (a status, the statistics) failed with a transient error.
    #[serde(default)]
    pub transient_other: bool,
    /// Hand-overs in a row that finished no part.
    pub stalled: u32,
}

/// A record that failed or was skipped in a run. Holds no whole address: a person is kept as
/// their redacted address and their [`mapping::email::person_key`], and addresses quoted in a
/// reason are redacted. Build it with [`RunFailure::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailure {
    /// The record (member id, redacted email, field, ...).
    pub record: String,
    /// The person's key, when the record is a person: what the retry queue and an admin's
    /// search by address match on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// Why.
    pub reason: String,
    /// SF or CM error code, when there is one.
    pub code: Option<String>,
}

impl RunFailure {
    /// A failure of `subject`: a person when it is an address (kept redacted, with their key),
    /// else a run, a campaign, a status, a CM row or a webhook event, as named.
    pub fn new(subject: &str, reason: &str, code: Option<&str>) -> Self {
        let person = subject.contains('@');
        RunFailure {
            record: if person {
                mapping::email::redact_email(subject)
            } else {
                subject.to_owned()
            },
            person: person.then(|| mapping::email::person_key(subject)),
            reason: mapping::email::redact_emails_in(reason),
            code: code.map(str::to_owned),
        }
    }
}

/// A time-ordered run id: `20261127T110055Z-<8 hex>`, so ids sort by start time.
pub fn new_run_id(now: DateTime<Utc>, random: u32) -> String {
    format!("{}-{random:08x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Run records.
pub trait RunStore: Send + Sync {
    /// Records the start of a run. A run id already recorded is a continuation of that run
    /// (a Lambda deadline hand-over or a redelivered event): its record is left as it is.
    fn start_run(&self, run: &RunRecord) -> impl Future<Output = Result<RunStart, StoreError>> + Send;
    /// Records the end of a run.
    fn finish_run(
        &self,
        run_id: &str,
        ended_at: DateTime<Utc>,
        status: RunStatus,
        counts: &BTreeMap<String, u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Hands a run over to a continuation: `Continued`, with what is done.
    fn hand_over_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        checkpoint: &RunCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes a recorded run over (a continuation, a retry or a replay): `Running` again since
    /// `at`, and whatever an earlier invocation handed over.
    fn resume_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<RunCheckpoint>, StoreError>> + Send;
    /// Adds per-record failures to a run (in batches of 25); they expire with the run.
    fn add_run_failures(
        &self,
        run_id: &str,
        failures: &[RunFailure],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest runs first.
    fn recent_runs(&self, limit: usize) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
    /// One run with its failures.
    fn run(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<(RunRecord, Vec<RunFailure>)>, StoreError>> + Send;
}

/// A lease on a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The scope.
    pub scope: String,
    /// Who holds it.
    pub owner: String,
    /// Until when.
    pub until: DateTime<Utc>,
}

/// Leases: at most one holder per scope; an expired lease can be taken over.
pub trait LeaseStore: Send + Sync {
    /// Takes (or renews, if `owner` holds it) the lease until `until`; `None` if someone else
    /// holds an unexpired lease.
    fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;
    /// Releases the lease if `owner` holds it; otherwise does nothing.
    fn release_lease(&self, scope: &str, owner: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Commits a campaign run under its lease (fencing), all or nothing: each stream's watermark
    /// set to its new value and the run record closed, only while `lease.owner` still holds
    /// `lease.scope` unexpired at `commit.ended_at`. `Ok(false)`: the lease was lost (expired
    /// and taken, or released); nothing was written, and the work is read again by a later run.
    fn commit_under_lease(
        &self,
        lease: &Lease,
        commit: &RunCommit,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What a campaign run commits at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCommit {
    /// The scope of the watermarks (the CM campaign id).
    pub scope: String,
    /// Stream → new watermark (the run computed them as the later of the stored one and what it
    /// read, so they never move back).
    pub watermarks: BTreeMap<String, DateTime<Utc>>,
    /// The run record to close.
    pub run_id: String,
    /// When it ended: the moment the lease must still hold.
    pub ended_at: DateTime<Utc>,
    /// How.
    pub status: RunStatus,
    /// Its counters.
    pub counts: BTreeMap<String, u64>,
    /// What the run saw and wrote, for the next one (`None`: keep what is stored).
    pub progress: Option<CampaignProgress>,
    /// When the schedule syncs the campaign next (`None`: keep what is stored).
    pub next_sync: Option<mapping::cadence::NextSync>,
}

/// A record that failed in a run, kept to retry on the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecord {
    /// The scope (CM campaign id).
    pub scope: String,
    /// The record's key within the scope (e.g. a member id).
    pub key: String,
    /// What to retry.
    pub payload: serde_json::Value,
    /// The last failure.
    pub reason: String,
    /// How many times it failed.
    pub attempts: u32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
}

/// The queue of failed records.
pub trait RetryQueue: Send + Sync {
    /// Adds or replaces failed records (batches of 25).
    fn enqueue_failed(&self, records: &[FailedRecord]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` failed records of a scope.
    fn failed_records(
        &self,
        scope: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FailedRecord>, StoreError>> + Send;
    /// Removes records (after a successful retry).
    fn remove_failed(&self, scope: &str, keys: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything the functions need of the state table.
pub trait Store:
    SettingsStore + LinkStore + WatermarkStore + WebhookEventStore + RunStore + LeaseStore + RetryQueue
{
}

impl<T> Store for T where
    T: SettingsStore + LinkStore + WatermarkStore + WebhookEventStore + RunStore + LeaseStore + RetryQueue
{
}

/// How long failed records stay queued before DynamoDB drops them.
pub const FAILED_RECORD_TTL_DAYS: i64 = 14;
