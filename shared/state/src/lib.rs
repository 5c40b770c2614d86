//! The product's state in one DynamoDB table (PRODUCT.md §6), behind narrow store traits.
//!
//! Two implementations of every trait: [`dynamo::DynamoStore`] (the real one) and
//! [`memory::MemoryStore`] (for fast handler tests). One conformance suite
//! (`tests/conformance`) runs against both, so they cannot drift apart. The records both
//! store live in [`records`] (with the helpers both share: neither store imports the other),
//! and every scope string in [`keys`].
//!
//! # Single-table design
//!
//! Key schema: partition key `pk` (S), sort key `sk` (S). TTL attribute: `expires_at` (N, epoch
//! seconds). Billing: on demand. No secondary index: every access pattern below is a `GetItem` or
//! a `Query` on one partition. Every partition key written:
//!
//! | item | `pk` | `sk` | other attributes | access patterns |
//! |---|---|---|---|---|
//! | settings | `SETTINGS` | `CURRENT` | `doc` (S, JSON), `version` (N), `updated_at` (S) | get; put if `version` matches (optimistic locking) |
//! | link | `LINKS` | `<cm campaign id>` | `sf_campaign_id`, `origin`, `linked_at` | get by CM id; list all (query `LINKS`) |
//! | reverse link | `SFLINKS` | `<sf campaign id>` | `cm_campaign_id` | get by SF id; written in one transaction with the link, so one SF Campaign never links two CM campaigns |
//! | watermark | `WATERMARK#<scope>` | `<stream>` (`Opened`, `Clicked`, …; `unsubscribed`, `bounced` of a list) | `at_ms` (N), `updated_at` | get; list a scope; advance only forwards (condition `at_ms < :new`) |
//! | clock | `WATERMARK#<scope>` | `<name>` ([`keys::Clock`]: `schedule`/`retired-check`, `webhooks`/`health_checked`) | as a watermark | when a piece of housekeeping last ran |
//! | campaign progress | `PROGRESS#<cm campaign id>` | `PROGRESS` | `doc` (S, JSON: the probe, statistics written, quarter-hour counts, sent date) | get; written with the commit |
//! | sync schedule | `SCHEDULE` | `<cm campaign id>` | `doc` (S, JSON: due time or retired) | query all; written with the commit |
//! | webhook event | `WEBHOOK#<dedupe key>` | `EVENT` | `list_id`, `payload` (S, JSON; `null` once applied), `person`, `received_at`, `expires_at` (TTL) | batch get (with its outcome); batch put by the intake (what CM sent: the same for every delivery, so overlapping deliveries may both write it) |
//! | webhook event outcome | `WEBHOOK#<dedupe key>` | `OUTCOME` | `state`, `reason`, `attempts`, `expires_at` (TTL) | written by the consumer only, so a delivery's write of the event never puts an applied event back to Received; absent: received, not tried |
//! | pending webhook batch | `WEBHOOK_PENDING` | `<batch id>` (time-ordered) | `list_id`, `keys` (S, JSON: the dedupe keys of its events to apply), `refused`, `received_at`, `expires_at` (TTL) | put; get; oldest N; delete when every event is applied |
//! | run | `RUNS` | `<run id>` (time-ordered) | `scope`, `started_at`, `ended_at`, `status`, `counts` (S, JSON), `failure_count`, `checkpoint`, `expires_at` (TTL) | put if absent; update at the end; newest N (query descending) |
//! | run failures | `RUN#<run id>` | `FAILURES#<call>#<chunk>` | `failures` (S, JSON: up to 300 KB of `{record, reason, code, person}`), `expires_at` (TTL) | batch-written; query a run (items `FAILURE#<seq>` of one failure each, from before, are read too) |
//! | lease | `LEASE#<scope>` | `LEASE` | `owner`, `lease_until_ms` (N), `expires_at` (TTL, cleanup only) | take if absent, expired or ours; release if ours |
//! | settings preview | `PREVIEW#<id>` | `PREVIEW` | `doc` (S, JSON: proposed settings, campaigns, result), `expires_at` (TTL, an hour) | put; get |
//! | audit entry | `AUDIT` | `<at, RFC 3339 ms>#<random>` (time-ordered) | `actor`, `action`, `version_before`, `version_after` (N), `expires_at` (TTL) | put; newest N (query descending) |
//! | shared OAuth tokens | `TOKENS` | `cm` or `sf` | `sealed` (S: the tokens, AES-256-GCM under the deployment's key), `version` (N), `seed`, `saved_at` | get; put if `version` is the one read |
//! | failed record | `RETRY#<scope>` | `<record key>` | `payload` (S, JSON), `reason`, `attempts`, `first_failed_at`, `expires_at` (TTL) | batch put/delete; query a scope |
//!
//! The scopes ([`keys::Scope`]): a CM campaign id (its watermarks, runs and retry queue),
//! `campaign:<id>` (its lease), `discovery` and `hot-schedule` (the scheduled and hot runs' leases), `list:<id>` (a list's
//! backstop), `transient:<id>` (people failing transiently, counted across runs),
//! `autocreate-refused`, `webhook:<list id>` and `webhooks` (reports), `schedule` (clocks),
//! `tokens:<credential>` (one token refresh at a time across containers).
//!
//! Every write that must not happen twice is conditional; races are settled by DynamoDB, not by
//! a read before the write.

pub mod dynamo;
pub mod keys;
pub mod memory;
pub mod records;
pub mod sealed;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use mapping::Settings;

pub use keys::{Clock, ClockStore, Scope};
pub use records::*;

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
    /// Up to `limit` pending batches, oldest first, after the batch id `after` if given: what a
    /// replay or a sweep re-drives (the sweep goes on from where the last one stopped).
    fn pending_webhook_batches(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingBatch>, StoreError>> + Send;
    /// Saves events' new states (the records as given).
    fn save_webhook_events(&self, events: &[WebhookEventRecord])
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A batch whose events are all applied leaves the pending list.
    fn finish_webhook_batch(&self, batch: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A batch with an event tried [`MAX_WEBHOOK_ATTEMPTS`] times leaves the pending list for
    /// the parked one: no sweep re-drives it (nor hides newer batches behind it) until an admin
    /// asks ([`WebhookEventStore::unpark_webhook_batch`]).
    fn park_webhook_batch(&self, batch: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` parked batches, oldest first, with their events.
    fn parked_webhook_batches(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingBatch>, StoreError>> + Send;
    /// Up to `limit` pending and up to `limit` parked deliveries, oldest first, from the batch
    /// items alone (no event is read).
    fn webhook_backlog(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<WebhookBacklogEntry>, StoreError>> + Send;
    /// A parked batch back on the pending list (an admin re-drives it).
    fn unpark_webhook_batch(&self, batch: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One recorded event.
    fn webhook_event(
        &self,
        dedupe_key: &str,
    ) -> impl Future<Output = Result<Option<WebhookEventRecord>, StoreError>> + Send;
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
    /// Every run not finished (`Running`, or `Continued` and not taken over yet), however many
    /// runs came after it: kept in an index of their own, so the abandoned-run check sees a run
    /// that died long ago among thousands of newer ones.
    fn unfinished_runs(&self) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
    /// The newest runs first.
    fn recent_runs(&self, limit: usize) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
    /// One run with its failures.
    fn run(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<(RunRecord, Vec<RunFailure>)>, StoreError>> + Send;
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

/// The audit of administrators' changes, newest first.
pub trait AuditStore: Send + Sync {
    /// Keeps one change.
    fn record_change(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest `limit` changes, newest first.
    fn recent_changes(&self, limit: usize) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

/// Settings previews: asked by the console, answered by the sync function.
pub trait PreviewStore: Send + Sync {
    /// Keeps a preview (replacing one of the same id).
    fn save_preview(&self, preview: &PreviewRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A preview, if kept.
    fn preview(&self, preview_id: &str) -> impl Future<Output = Result<Option<PreviewRecord>, StoreError>> + Send;
}

/// The catalog of CM campaigns (see [`CatalogRecord`]).
pub trait CatalogStore: Send + Sync {
    /// Replaces the catalog.
    fn save_catalog(&self, catalog: &CatalogRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The catalog, if one is kept.
    fn catalog(&self) -> impl Future<Output = Result<Option<CatalogRecord>, StoreError>> + Send;
    /// When the kept catalog was read from CM (one small read, without the campaigns).
    fn catalog_refreshed_at(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
}

/// The OAuth tokens every container of a deployment shares (one item per credential).
pub trait TokenStore: Send + Sync {
    /// The credential's tokens saved last, if any.
    fn sealed_tokens(&self, credential: &str) -> impl Future<Output = Result<Option<SealedTokens>, StoreError>> + Send;
    /// Saves `tokens` (its `version` the new one) only if the stored version is still
    /// `tokens.version - 1` (none stored, for version 1). `Ok(false)`: another save came first;
    /// nothing was written.
    fn save_sealed_tokens(&self, tokens: &SealedTokens) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Everything the functions and the admin tools need of the state table.
pub trait Store:
    SettingsStore
    + LinkStore
    + WatermarkStore
    + WebhookEventStore
    + RunStore
    + LeaseStore
    + RetryQueue
    + AuditStore
    + PreviewStore
    + CatalogStore
    + TokenStore
{
}

impl<T> Store for T where
    T: SettingsStore
        + LinkStore
        + WatermarkStore
        + WebhookEventStore
        + RunStore
        + LeaseStore
        + RetryQueue
        + AuditStore
        + PreviewStore
        + CatalogStore
        + TokenStore
{
}

/// How long failed records stay queued before DynamoDB drops them.
pub const FAILED_RECORD_TTL_DAYS: i64 = 14;
