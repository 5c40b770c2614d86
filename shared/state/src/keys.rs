//! The named key spaces of the state table. Every scope string the engine stores under is
//! rendered here and nowhere else, byte for byte as stored data has always spelled it, so a
//! deployment's table stays readable across versions.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::{StoreError, WatermarkStore};

/// A scope: the part of a key that says whose watermarks, lease, runs or queued records these
/// are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A linked campaign's activity watermarks, its run records and its retry queue: the CM
    /// campaign id itself.
    Campaign(&'a str),
    /// A linked campaign's lease (one sync of it at a time): `campaign:<id>`.
    CampaignLease(&'a str),
    /// The lease of the scheduled run: `discovery`.
    Discovery,
    /// The lease of the hot schedule's run (apart from the scheduled run's, so neither drops
    /// the other): `hot-schedule`.
    HotSchedule,
    /// A CM list's backstop watermarks and the run records of its refused writes: `list:<id>`.
    List(&'a str),
    /// People of a campaign failing transiently, counted across runs: `transient:<id>`.
    Transient(&'a str),
    /// Auto-creations Salesforce refused for good, one queued record per CM campaign:
    /// `autocreate-refused`.
    AutocreateRefused,
    /// The run records of a list's webhook deliveries (refused or unconfirmed events):
    /// `webhook:<list id>`.
    WebhookList(&'a str),
    /// The daily webhook check: its run records and its clock: `webhooks`.
    Webhooks,
    /// The schedule's clocks: `schedule`.
    Schedule,
    /// The scheduled runs' own run records (what each found and requested): `scheduled`.
    ScheduledRun,
    /// Where the webhook sweep goes on from: `webhook-sweep`.
    WebhookSweep,
    /// The lease of a credential's token refresh (one refresh at a time across containers:
    /// each spends the refresh token): `tokens:<cm|sf>`.
    Tokens(&'a str),
}

impl Scope<'_> {
    /// The scope as stored.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Campaign(id) => f.write_str(id),
            Scope::CampaignLease(id) => write!(f, "campaign:{id}"),
            Scope::Discovery => f.write_str("discovery"),
            Scope::HotSchedule => f.write_str("hot-schedule"),
            Scope::List(id) => write!(f, "list:{id}"),
            Scope::Transient(id) => write!(f, "transient:{id}"),
            Scope::AutocreateRefused => f.write_str("autocreate-refused"),
            Scope::WebhookList(id) => write!(f, "webhook:{id}"),
            Scope::Webhooks => f.write_str("webhooks"),
            Scope::Schedule => f.write_str("schedule"),
            Scope::ScheduledRun => f.write_str("scheduled"),
            Scope::Tokens(credential) => write!(f, "tokens:{credential}"),
            Scope::WebhookSweep => f.write_str("webhook-sweep"),
        }
    }
}

/// When a periodic piece of housekeeping was last done. Kept where a watermark is (the same
/// item shape), but not one: it says when work ran, not how far a stream was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The day (its end, in `cm_timezone`) whose retired-campaign check is done.
    RetiredCheck,
    /// When the daily webhook check last ran.
    WebhookHealth,
    /// The webhook sweep's cursor: the receipt time of the last pending batch it re-drove (the
    /// next sweep goes on after it; at the end of the list it starts again from the oldest).
    WebhookSweep,
}

impl Clock {
    /// Its scope.
    pub fn scope(self) -> Scope<'static> {
        match self {
            Clock::RetiredCheck => Scope::Schedule,
            Clock::WebhookHealth => Scope::Webhooks,
            Clock::WebhookSweep => Scope::WebhookSweep,
        }
    }

    /// Its name within the scope.
    pub fn name(self) -> &'static str {
        match self {
            Clock::RetiredCheck => "retired-check",
            Clock::WebhookHealth => "health_checked",
            Clock::WebhookSweep => "cursor",
        }
    }
}

/// The housekeeping clocks, over the watermark items.
pub trait ClockStore: Send + Sync {
    /// When `clock`'s work was last done (`None`: never).
    fn last_done(&self, clock: Clock) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
    /// Records that `clock`'s work is done as of `at` (a clock only moves forwards).
    fn mark_done(&self, clock: Clock, at: DateTime<Utc>) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<T: WatermarkStore> ClockStore for T {
    async fn last_done(&self, clock: Clock) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.watermark(&clock.scope().key(), clock.name()).await
    }

    async fn mark_done(&self, clock: Clock, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.advance_watermark(&clock.scope().key(), clock.name(), at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_render_the_keys_stored_data_has_always_used() {
        let id = "0123456789abcdef0123456789abcdef";
        let rendered: Vec<String> = [
            Scope::Campaign(id),
            Scope::CampaignLease(id),
            Scope::Discovery,
            Scope::HotSchedule,
            Scope::List("l1"),
            Scope::Transient(id),
            Scope::AutocreateRefused,
            Scope::WebhookList("l1"),
            Scope::Webhooks,
            Scope::Schedule,
        ]
        .iter()
        .map(Scope::key)
        .collect();
        assert_eq!(
            rendered,
            [
                id.to_owned(),
                format!("campaign:{id}"),
                "discovery".into(),
                "hot-schedule".into(),
                "list:l1".into(),
                format!("transient:{id}"),
                "autocreate-refused".into(),
                "webhook:l1".into(),
                "webhooks".into(),
                "schedule".into(),
            ]
        );
        assert_eq!(
            (Clock::RetiredCheck.scope().key(), Clock::RetiredCheck.name()),
            ("schedule".to_owned(), "retired-check")
        );
        assert_eq!(
            (Clock::WebhookHealth.scope().key(), Clock::WebhookHealth.name()),
            ("webhooks".to_owned(), "health_checked")
        );
    }
}
