//! The records the state table holds, and the helpers both stores share (so neither store
//! imports from the other).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use mapping::Settings;
use mapping::autocreate::LinkOrigin;
use serde::{Deserialize, Serialize};

use crate::StoreError;

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
    /// The recipients' read was cut after the page before this one: the next run goes on
    /// from here (the recipients' watermark is written once they are all read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_from_page: Option<i64>,
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
    /// The event as CM sent it (normalised); `null` once applied (only its key is needed then).
    pub payload: serde_json::Value,
    /// The person's key ([`mapping::email::person_key`]), kept after the payload is dropped: what
    /// an erasure (`cm-sf-admin forget`) finds the person's events by.
    #[serde(default)]
    pub person: Option<String>,
    /// When the intake received it.
    pub received_at: DateTime<Utc>,
    /// When DynamoDB may delete it (TTL).
    pub expires_at: DateTime<Utc>,
    /// Processing state.
    pub state: EventState,
    /// How often the consumer tried it without applying it (refused for good, or transiently):
    /// at [`MAX_WEBHOOK_ATTEMPTS`] its batch is parked for an admin.
    #[serde(default)]
    pub attempts: u32,
}

/// A webhook delivery not fully applied, as listed without reading its events (the console's
/// Overview: its role may not read webhook events, which hold addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookBacklogEntry {
    /// The batch reference.
    pub batch: String,
    /// The CM list.
    pub list_id: String,
    /// When the intake received it.
    pub received_at: DateTime<Utc>,
    /// Events handed on with it (some may be applied already, until the batch is finished).
    pub events: usize,
    /// Parked after every attempt: waits for an admin.
    pub parked: bool,
}

/// Attempts at an event before its batch stops being re-driven by the schedule and waits for
/// an admin (`cm-sf-admin doctor` lists it; `cm-sf-admin replay` re-drives it with the count
/// reset). A batch is re-driven at each scheduled run (every 15 minutes by default) and by
/// Lambda's retries, so 12 attempts are a few hours: long enough for a limit or an outage to
/// pass, short of a month of list reads and people look-ups for a refusal that needs a person.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 12;

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

/// What [`crate::WebhookEventStore::record_webhook_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchRecorded {
    /// Events not recorded when this delivery looked (two overlapping deliveries of a new
    /// event may each count it: both hand it on, and it is applied once).
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

/// Whether [`crate::RunStore::start_run`] recorded a new run or found it already started.
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
    /// What it covers: `scheduled` (a scheduled run), a CM campaign id, `webhook:<list>`, ...
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
    /// The first read was cut in the recipients: the page it would have read next (the
    /// continuation reads the recipients up to the page before it, as the first did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_to_page: Option<i64>,
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

/// A credential's current OAuth tokens as every container shares them: sealed with the
/// deployment's key (the table never holds a token in the clear), versioned so a save never
/// overwrites one it did not read.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTokens {
    /// Whose tokens: `cm` or `sf`.
    pub credential: String,
    /// Bumped by every save (1 for the first).
    pub version: u64,
    /// The tokens, sealed ([`crate::sealed::Sealer`]).
    pub sealed: String,
    /// A fingerprint of the refresh token of the secret this chain of refreshes started from:
    /// when the secret holds another (an admin authorised again), the secret's tokens win.
    pub seed: String,
    /// When they were saved.
    pub saved_at: DateTime<Utc>,
}

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens")
            .field("credential", &self.credential)
            .field("version", &self.version)
            .field("saved_at", &self.saved_at)
            .finish_non_exhaustive()
    }
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

/// The conflict error both stores report.
pub(crate) fn link_conflict(link: &LinkRecord, by_cm: Option<String>, by_sf: Option<String>) -> StoreError {
    let existing = match (by_cm, by_sf) {
        (Some(sf), _) if sf != link.sf_campaign_id => format!("the CM campaign is linked to SF Campaign {sf}"),
        (_, Some(cm)) => format!("the SF Campaign is linked to CM campaign {cm}"),
        _ => "a half-written link exists; unlink and link again".to_owned(),
    };
    StoreError::LinkConflict {
        cm_campaign_id: link.cm_campaign_id.clone(),
        sf_campaign_id: link.sf_campaign_id.clone(),
        existing,
    }
}

pub(crate) fn no_such_run(run_id: &str) -> StoreError {
    StoreError::Corrupt {
        key: format!("RUNS/{run_id}"),
        reason: "no such run".into(),
    }
}

/// Milliseconds are what the table keeps; both stores truncate the same way.
pub(crate) fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at.timestamp_millis()).single().unwrap_or(at)
}

/// One change an administrator made to the deployment, from the console or the CLI: kept for
/// the console's Audit page (`run_retention_days`, like runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a Salesforce user id (`005...`) from the console, or `cli`.
    pub actor: String,
    /// What, in words (`settings changed: status_refresh`, `retry of run ...`, `unlink ...`).
    pub action: String,
    /// The settings version before the change, where settings changed.
    pub version_before: Option<u64>,
    /// The settings version after it.
    pub version_after: Option<u64>,
    /// When DynamoDB may drop it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A preview the console asked the sync function for: a settings change (the proposed
/// document) on a few campaigns, or, with no proposal, a dry run of one linked campaign under
/// the stored settings; and (once the function is done) what it found. Kept an hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewRecord {
    /// Its id (time-ordered).
    pub preview_id: String,
    /// Who asked (a Salesforce user id).
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// The settings version the proposal was made from.
    pub base_version: u64,
    /// The proposed settings document (JSON); `None` for a dry run of the stored settings.
    pub proposed: Option<String>,
    /// The CM campaigns to plan.
    pub campaigns: Vec<String>,
    /// The comparison, once the sync function has made it.
    pub result: Option<serde_json::Value>,
    /// When DynamoDB may drop it.
    pub expires_at: DateTime<Utc>,
}

/// The CM campaigns of the configured clients as discovery last saw them, for the console,
/// which holds no CM credentials: names and send dates on Links, the campaign picker, a
/// backfill's preview. Refreshed by the sync function (daily, and when an admin asks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogRecord {
    /// When discovery read it.
    pub refreshed_at: DateTime<Utc>,
    /// The campaigns, sent, scheduled and draft.
    pub campaigns: Vec<mapping::autocreate::DiscoveredCampaign>,
}

impl CatalogRecord {
    /// How long a catalog is kept after its refresh (the sync function refreshes it daily).
    pub const KEPT_DAYS: i64 = 8;

    /// A campaign of the catalog, by its CM id.
    pub fn campaign(&self, cm_campaign_id: &str) -> Option<&mapping::autocreate::DiscoveredCampaign> {
        self.campaigns.iter().find(|c| c.cm_campaign_id == cm_campaign_id)
    }
}
