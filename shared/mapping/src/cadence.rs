//! How often a linked campaign is synced (issue #20): almost all email engagement comes in the
//! first days after a send, so a campaign is synced at every scheduled run while it is young,
//! then hourly, then daily, and then not at all (it is retired: synced only when an admin asks,
//! or when a sync finds it active again).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The cadence setting (`sync_cadence`). Ages are days since the campaign was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncCadence {
    /// `false`: every linked campaign is synced at every scheduled run, forever.
    pub enabled: bool,
    /// Synced at every scheduled run until this age.
    pub every_run_days: u32,
    /// Then hourly until this age.
    pub hourly_until_days: u32,
    /// Then daily until this age; older campaigns are retired.
    pub daily_until_days: u32,
}

impl Default for SyncCadence {
    fn default() -> Self {
        SyncCadence {
            enabled: true,
            every_run_days: 3,
            hourly_until_days: 14,
            daily_until_days: 60,
        }
    }
}

/// The longest a cadence may keep a campaign (ten years).
pub const MAX_CADENCE_DAYS: u32 = 3650;

impl SyncCadence {
    /// What is wrong with it, if anything: the ages must not go down.
    pub fn problem(&self) -> Option<String> {
        let ages = [self.every_run_days, self.hourly_until_days, self.daily_until_days];
        if ages.windows(2).any(|pair| pair[0] > pair[1]) {
            return Some(format!(
                "the ages must not go down: every run until day {}, hourly until day {}, daily until day {}",
                self.every_run_days, self.hourly_until_days, self.daily_until_days
            ));
        }
        (self.daily_until_days > MAX_CADENCE_DAYS).then(|| format!("at most {MAX_CADENCE_DAYS} days"))
    }
}

/// When a campaign is next synced by the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum NextSync {
    /// At the first scheduled run at or after this moment (CM's clock, UTC).
    At {
        /// The moment.
        at: DateTime<Utc>,
    },
    /// Not by the schedule: only on demand (`cm-sf-admin sync --campaign`) or by a backfill.
    Retired,
}

/// A sync reads CM's clock a little after the scheduled run that asked for it: a campaign due
/// within this much of a run is synced by it, so "hourly" is not stretched to the next run after.
pub const DUE_GRACE: Duration = Duration::minutes(5);

impl NextSync {
    /// Whether a scheduled run at `now` syncs it.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        matches!(self, NextSync::At { at } if *at <= now + DUE_GRACE)
    }
}

/// After a sync at `now` (CM's clock): when the campaign, sent at `sent_at`, is synced next.
/// An unknown send date keeps it at every run. `found_new`: the sync found new activity; a
/// campaign active again past its every-run age (a resend, a late forward) is synced at least
/// hourly until it is quiet, retired or not.
pub fn next_sync(
    cadence: &SyncCadence,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    found_new: bool,
) -> NextSync {
    let Some(sent_at) = sent_at.filter(|_| cadence.enabled) else {
        return NextSync::At { at: now };
    };
    let age = now - sent_at;
    let days = |d: u32| Duration::days(i64::from(d));
    let interval = if age < days(cadence.every_run_days) {
        Some(Duration::zero())
    } else if age < days(cadence.hourly_until_days) {
        Some(Duration::hours(1))
    } else if age < days(cadence.daily_until_days) {
        Some(Duration::days(1))
    } else {
        None
    };
    let interval = if found_new {
        Some(interval.map_or(Duration::hours(1), |i| i.min(Duration::hours(1))))
    } else {
        interval
    };
    match interval {
        Some(interval) => NextSync::At { at: now + interval },
        None => NextSync::Retired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
            + Duration::days(d)
    }

    #[test]
    fn a_campaign_is_synced_every_run_then_hourly_then_daily_then_retired() {
        let cadence = SyncCadence::default();
        let sent = Some(day(0));
        assert_eq!(next_sync(&cadence, sent, day(2), false), NextSync::At { at: day(2) });
        assert_eq!(
            next_sync(&cadence, sent, day(5), false),
            NextSync::At {
                at: day(5) + Duration::hours(1)
            }
        );
        assert_eq!(next_sync(&cadence, sent, day(20), false), NextSync::At { at: day(21) });
        assert_eq!(next_sync(&cadence, sent, day(60), false), NextSync::Retired);
    }

    #[test]
    fn activity_found_late_makes_a_campaign_hourly_again_even_retired() {
        let cadence = SyncCadence::default();
        let sent = Some(day(0));
        let hourly = NextSync::At {
            at: day(90) + Duration::hours(1),
        };
        assert_eq!(next_sync(&cadence, sent, day(90), true), hourly);
        assert_eq!(
            next_sync(&cadence, sent, day(20), true),
            NextSync::At {
                at: day(20) + Duration::hours(1)
            }
        );
        assert_eq!(next_sync(&cadence, sent, day(1), true), NextSync::At { at: day(1) });
    }

    #[test]
    fn without_a_send_date_or_with_the_cadence_off_every_run_syncs() {
        let off = SyncCadence {
            enabled: false,
            ..SyncCadence::default()
        };
        assert_eq!(
            next_sync(&off, Some(day(0)), day(400), false),
            NextSync::At { at: day(400) }
        );
        assert_eq!(
            next_sync(&SyncCadence::default(), None, day(400), false),
            NextSync::At { at: day(400) }
        );
        assert!(NextSync::At { at: day(1) }.is_due(day(1)));
        assert!(
            NextSync::At { at: day(1) + DUE_GRACE }.is_due(day(1)),
            "a few seconds late"
        );
        assert!(
            !NextSync::At {
                at: day(1) + Duration::minutes(10)
            }
            .is_due(day(1))
        );
        assert!(!NextSync::Retired.is_due(day(1000)));
    }

    #[test]
    fn ages_that_go_down_are_refused() {
        assert_eq!(SyncCadence::default().problem(), None);
        let bad = SyncCadence {
            hourly_until_days: 2,
            ..SyncCadence::default()
        };
        assert!(bad.problem().unwrap().contains("must not go down"), "{bad:?}");
    }
}
