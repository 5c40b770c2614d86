//! Faults and latency, seeded so a run is reproducible, and per-endpoint call counters.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Fault and latency settings (scenario `faults`, or `PUT /_sandbox/faults` at run time): one
/// part per service, and the realism switch over both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Seed of the fault draws.
    pub seed: u64,
    /// Realism mode: every behaviour the real services may show and the sandbox otherwise
    /// spares its clients is on, at least at [`Faults::realistic`]'s level (issue #18).
    #[serde(skip_serializing_if = "is_false")]
    pub realism: bool,
    /// Campaign Monitor side.
    pub cm: CmFaults,
    /// Salesforce side.
    pub sf: SfFaults,
}

/// Campaign Monitor's faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CmFaults {
    /// Added latency per call, in milliseconds.
    pub latency_ms: u64,
    /// Added latency for calls whose route contains the key (e.g. `opens`).
    pub endpoint_latency_ms: BTreeMap<String, u64>,
    /// Share of calls answered with a transient error: 429 or 503 (alternating draws).
    pub error_rate: f64,
    /// OAuth access tokens expire after this many calls (then code 121).
    pub token_expires_after_calls: Option<u64>,
    /// Each activity record becomes visible (in its stream and the campaign summary) a seeded 0
    /// to this many minutes after its date on CM's clock; 0: at once. CM does not document
    /// when a record becomes visible.
    #[serde(skip_serializing_if = "is_zero")]
    pub late_visibility_minutes: u64,
    /// Records of equal date come in an order of each request's own, so a tie straddling a
    /// page boundary can serve a row twice and another never: CM documents the order by date,
    /// not among equal dates.
    #[serde(skip_serializing_if = "is_false")]
    pub reorder_ties: bool,
    /// The campaign summary counts a record this many minutes after its stream shows it: CM
    /// does not document that the two agree at every moment.
    #[serde(skip_serializing_if = "is_zero")]
    pub summary_lag_minutes: u64,
    /// The `date` filter of activity streams leaves out records dated exactly at it: CM does
    /// not document whether it includes its own second.
    #[serde(skip_serializing_if = "is_false")]
    pub exclusive_date_filter: bool,
}

/// Salesforce's faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfFaults {
    /// Added latency per call, in milliseconds.
    pub latency_ms: u64,
    /// Added latency for calls whose route contains the key (e.g. `composite`).
    pub endpoint_latency_ms: BTreeMap<String, u64>,
    /// Share of calls answered 503 `SERVER_UNAVAILABLE`.
    pub error_rate: f64,
    /// Share of records in collections and bulk jobs failing with `UNABLE_TO_LOCK_ROW`.
    pub lock_row_rate: f64,
    /// A record that draws a lock error (`lock_row_rate`) stays locked for this many more
    /// write attempts: longer than a run's in-run retries (6 attempts), so the lock outlasts the
    /// run and the next run meets it too. Salesforce documents the error, not how long another
    /// process holds a lock: the less convenient reading. Realism: at least 8.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub lock_streak_attempts: u32,
    /// Records (by `Id`) whose every update fails with `UNABLE_TO_LOCK_ROW` while they are
    /// listed: a record another process keeps locked (a long batch job, a trigger loop) for
    /// longer than a run's retries last. Salesforce documents the error, not how long a lock
    /// lasts: the less convenient reading is one that outlasts a whole run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked_records: Vec<String>,
    /// Share of records in collections and bulk jobs failing with
    /// `FIELD_CUSTOM_VALIDATION_EXCEPTION`, a permanent error as a validation rule gives.
    pub validation_error_rate: f64,
    /// Sessions expire after this many API calls (then `INVALID_SESSION_ID`).
    pub session_expires_after_calls: Option<u64>,
    /// A Bulk ingest job still reads `InProgress` this many times after `UploadComplete`
    /// (Salesforce processes jobs asynchronously, for minutes on a busy org).
    pub bulk_in_progress_polls: u32,
    /// Every Bulk ingest job ends `Failed` with this `errorMessage`, no row processed.
    pub bulk_job_failure: Option<String>,
    /// A member Status that is not one of its campaign's labels silently becomes the
    /// campaign's default, as older API guides describe, instead of the restricted-picklist
    /// error.
    pub unknown_status_gets_default: bool,
    /// Query pages of a random size up to the batch size asked for (Salesforce does not
    /// promise the size).
    pub short_query_pages: bool,
    /// Objects whose every record written in a collection or bulk job fails with
    /// `FIELD_CUSTOM_VALIDATION_EXCEPTION` (a validation rule an org added), e.g.
    /// `CampaignMemberStatus`.
    pub refused_objects: Vec<String>,
    /// Share of calls answered 403 `REQUEST_LIMIT_EXCEEDED` for too many concurrent
    /// long-running requests (`ConcurrentPerOrgLongTxn Limit exceeded.`), which clears after a
    /// short wait, unlike the daily allocation's `TotalRequests Limit exceeded.`.
    pub concurrent_limit_rate: f64,
    /// Refresh-token grants answer with a new refresh token and the one used stops working (a
    /// connected app with refresh-token rotation).
    #[serde(skip_serializing_if = "is_false")]
    pub rotate_refresh_tokens: bool,
    /// Bulk results with their columns in upload order and their rows in upload order. Off
    /// (the default), the columns come sorted by name and the rows shuffled: Salesforce
    /// promises neither order.
    pub bulk_results_in_upload_order: bool,
    /// Rows of each job a successful-results file leaves out (the first N written). Salesforce
    /// documents that every processed row is in one of the three result files, but not what
    /// happens to a row it lost track of: the less convenient reading is a row written that no
    /// file records.
    #[serde(default)]
    pub bulk_results_dropped_rows: usize,
    /// Requests to abort a Bulk job answered 503 `SERVER_UNAVAILABLE` (this many, one each),
    /// the job left running: a client that gave up on a slow job cannot stop it at once.
    #[serde(default)]
    pub bulk_abort_failures: u32,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

impl Faults {
    /// The settings in effect: as given, with realism raising each realistic behaviour to at
    /// least its level. Bulk results in shuffled order and the `CODE:message:fields --` error
    /// form are on whatever the mode; CM always rotates refresh tokens.
    pub fn realistic(mut self) -> Faults {
        if !self.realism {
            return self;
        }
        let sf = &mut self.sf;
        sf.bulk_results_in_upload_order = false;
        sf.bulk_in_progress_polls = sf.bulk_in_progress_polls.max(3);
        sf.unknown_status_gets_default = true;
        sf.short_query_pages = true;
        sf.concurrent_limit_rate = sf.concurrent_limit_rate.max(0.02);
        sf.rotate_refresh_tokens = true;
        sf.lock_streak_attempts = sf.lock_streak_attempts.max(8);
        let cm = &mut self.cm;
        cm.late_visibility_minutes = cm.late_visibility_minutes.max(180);
        cm.reorder_ties = true;
        cm.summary_lag_minutes = cm.summary_lag_minutes.max(30);
        cm.exclusive_date_filter = true;
        self
    }
}

/// The latency of a call: the side's own, plus that of every endpoint key in its route.
fn latency(base: u64, endpoints: &BTreeMap<String, u64>, route: &str) -> u64 {
    base + endpoints
        .iter()
        .filter(|(key, _)| route.contains(key.as_str()))
        .map(|(_, ms)| ms)
        .sum::<u64>()
}

impl CmFaults {
    /// The latency for a route.
    pub fn latency_for(&self, route: &str) -> u64 {
        latency(self.latency_ms, &self.endpoint_latency_ms, route)
    }
}

impl SfFaults {
    /// The latency for a route.
    pub fn latency_for(&self, route: &str) -> u64 {
        latency(self.latency_ms, &self.endpoint_latency_ms, route)
    }
}

/// Seeded draws.
#[derive(Debug)]
pub struct Dice(ChaCha8Rng);

impl Dice {
    /// Dice from a seed.
    pub fn new(seed: u64) -> Self {
        Dice(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A number from `low` to `high`, both included (seeded).
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        self.0.random_range(low..=high)
    }

    /// Shuffles `items` (seeded).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        use rand::seq::SliceRandom;
        items.shuffle(&mut self.0);
    }

    /// True with probability `rate`.
    pub fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.0.random::<f64>() < rate
    }
}

/// Calls per endpoint (`"cm GET /api/v3.3/campaigns/{id}/opens.json"`).
pub type Counters = BTreeMap<String, u64>;
