//! How often a linked campaign is synced (issue #20): almost all email engagement comes in the
//! first days after a send, so a campaign is synced at every scheduled run while it is young,
//! then hourly, then daily, and then it is retired: no longer synced by the schedule, only
//! checked once a day for new activity (its summary's counts, one CM call and no SF call) and
//! synced when the check finds some, or when an admin asks. Hourly and daily syncs also fall on
//! the end of each day (midnight in `cm_timezone`), so everything a day brought is in Salesforce
//! by the first run after it. Campaigns in their first `hot_hours` are also synced by the hot
//! schedule (every few minutes, when the deployment has one).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
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
    /// Campaigns younger than this many hours are also synced by the hot schedule (the
    /// template's `HotScheduleExpression`, every 5 minutes by default); 0: none is.
    pub hot_hours: u32,
}

impl Default for SyncCadence {
    fn default() -> Self {
        SyncCadence {
            enabled: true,
            every_run_days: 3,
            hourly_until_days: 14,
            daily_until_days: 60,
            hot_hours: 48,
        }
    }
}

/// The longest a cadence may keep a campaign (ten years).
pub const MAX_CADENCE_DAYS: u32 = 3650;

/// The longest a campaign may stay on the hot schedule (two weeks).
pub const MAX_HOT_HOURS: u32 = 336;

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
        if self.hot_hours > MAX_HOT_HOURS {
            return Some(format!("hot_hours: at most {MAX_HOT_HOURS} (two weeks)"));
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
        /// Young enough for the hot schedule as well.
        #[serde(default)]
        hot: bool,
    },
    /// Not by the schedule: checked once a day for new activity, synced on demand
    /// (`cm-sf-admin sync --campaign`) or by a backfill.
    Retired,
}

/// A sync reads CM's clock a little after the scheduled run that asked for it: a campaign due
/// within this much of a run is synced by it, so "hourly" is not stretched to the next run after.
pub const DUE_GRACE: Duration = Duration::minutes(5);

impl NextSync {
    /// Whether a scheduled run at `now` syncs it.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        matches!(self, NextSync::At { at, .. } if *at <= now + DUE_GRACE)
    }

    /// Whether a run of the hot schedule at `now` syncs it.
    pub fn is_due_hot(&self, now: DateTime<Utc>) -> bool {
        matches!(self, NextSync::At { hot: true, .. }) && self.is_due(now)
    }
}

/// A day's end sync falls this long after CM's local midnight: past the settle lag, so it reads
/// the day to its last minute.
pub const DAY_END_AFTER_MIDNIGHT: Duration = Duration::minutes(10);

/// CM's local midnight starting `date` (a zone whose clocks skip midnight starts the day at the
/// first moment it has).
fn midnight(date: NaiveDate, zone: Tz) -> Option<DateTime<Utc>> {
    let start = date.and_time(NaiveTime::MIN);
    zone.from_local_datetime(&start)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(start + Duration::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// The day `now` belongs to, for the end-of-day syncs: a run within [`DUE_GRACE`] before a day's
/// end sync already counts as it.
fn day_of(now: DateTime<Utc>, zone: Tz) -> NaiveDate {
    (now + DUE_GRACE - DAY_END_AFTER_MIDNIGHT)
        .with_timezone(&zone)
        .date_naive()
}

/// The next day's end sync after a sync at `now`.
pub fn day_end_after(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    day_of(now, zone)
        .succ_opt()
        .and_then(|date| midnight(date, zone))
        .map_or(now + Duration::days(1), |m| m + DAY_END_AFTER_MIDNIGHT)
}

/// The last day's end sync a run at `now` is at or past: the retired campaigns' daily check is
/// made once for each.
pub fn last_day_end(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    midnight(day_of(now, zone), zone).map_or(now, |m| m + DAY_END_AFTER_MIDNIGHT)
}

/// Where a campaign sent at `sent_at` stands in the cadence at `now`: what the console's Links
/// page shows, and what [`next_sync`] spaces its syncs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CadenceBand {
    /// In its first `hot_hours`: every scheduled run and the hot schedule.
    Hot,
    /// Younger than `every_run_days`: every scheduled run.
    EveryRun,
    /// Then hourly.
    Hourly,
    /// Then daily.
    Daily,
    /// Older: checked daily for new activity, synced on demand.
    Retired,
    /// Its send date is unknown (not sent yet): every scheduled run.
    Unknown,
    /// The cadence is off: every scheduled run, forever.
    Always,
}

impl CadenceBand {
    /// In words, for an admin.
    pub fn words(self) -> &'static str {
        match self {
            CadenceBand::Hot => "hot: every 5 minutes and every run",
            CadenceBand::EveryRun => "every scheduled run",
            CadenceBand::Hourly => "hourly",
            CadenceBand::Daily => "daily",
            CadenceBand::Retired => "retired: checked daily, synced on demand",
            CadenceBand::Unknown => "every scheduled run (not sent yet)",
            CadenceBand::Always => "every scheduled run (cadence off)",
        }
    }
}

fn is_hot(cadence: &SyncCadence, sent_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    sent_at.is_some_and(|sent| now - sent < Duration::hours(i64::from(cadence.hot_hours)))
}

/// The band of a campaign sent at `sent_at`, at `now`.
pub fn cadence_band(cadence: &SyncCadence, sent_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> CadenceBand {
    let Some(sent_at) = sent_at else {
        return CadenceBand::Unknown;
    };
    if !cadence.enabled {
        return CadenceBand::Always;
    }
    if is_hot(cadence, Some(sent_at), now) {
        return CadenceBand::Hot;
    }
    let age = now - sent_at;
    let days = |d: u32| Duration::days(i64::from(d));
    if age < days(cadence.every_run_days) {
        CadenceBand::EveryRun
    } else if age < days(cadence.hourly_until_days) {
        CadenceBand::Hourly
    } else if age < days(cadence.daily_until_days) {
        CadenceBand::Daily
    } else {
        CadenceBand::Retired
    }
}

/// After a sync at `now` (CM's clock): when the campaign, sent at `sent_at`, is synced next.
/// An unknown send date keeps it at every run. `found_new`: the sync found new activity; a
/// campaign active again past its every-run age (a resend, a late forward) is synced at least
/// hourly until it is quiet, retired or not. Hourly and daily syncs are never later than the
/// end of the day (midnight in `zone`).
pub fn next_sync(
    cadence: &SyncCadence,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    found_new: bool,
    zone: Tz,
) -> NextSync {
    let hot = is_hot(cadence, sent_at, now);
    let interval = match cadence_band(cadence, sent_at, now) {
        CadenceBand::Unknown | CadenceBand::Always => return NextSync::At { at: now, hot },
        CadenceBand::EveryRun | CadenceBand::Hot => Some(Duration::zero()),
        CadenceBand::Hourly => Some(Duration::hours(1)),
        CadenceBand::Daily => Some(Duration::days(1)),
        CadenceBand::Retired => None,
    };
    let interval = if found_new {
        Some(interval.map_or(Duration::hours(1), |i| i.min(Duration::hours(1))))
    } else {
        interval
    };
    match interval {
        Some(interval) => NextSync::At {
            at: (now + interval).min(day_end_after(now, zone)),
            hot,
        },
        None => NextSync::Retired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_follows_the_age_of_the_send() {
        let cadence = SyncCadence::default();
        let sent = instant("2026-11-01T09:00:00Z");
        let band = |hours: i64| cadence_band(&cadence, Some(sent), sent + Duration::hours(hours));
        assert_eq!(band(1), CadenceBand::Hot);
        assert_eq!(band(49), CadenceBand::EveryRun);
        assert_eq!(band(24 * 5), CadenceBand::Hourly);
        assert_eq!(band(24 * 20), CadenceBand::Daily);
        assert_eq!(band(24 * 61), CadenceBand::Retired);
        assert_eq!(cadence_band(&cadence, None, sent), CadenceBand::Unknown);
        let off = SyncCadence {
            enabled: false,
            ..cadence
        };
        assert_eq!(
            cadence_band(&off, Some(sent), sent + Duration::days(400)),
            CadenceBand::Always
        );
    }

    const UTC: Tz = chrono_tz::UTC;

    fn instant(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn day(d: i64) -> DateTime<Utc> {
        instant("2026-11-01T09:00:00Z") + Duration::days(d)
    }

    /// The day's end sync after `day(d)`: ten past midnight, UTC.
    fn end_of(d: i64) -> DateTime<Utc> {
        day(d + 1) - Duration::hours(9) + DAY_END_AFTER_MIDNIGHT
    }

    fn at(at: DateTime<Utc>) -> NextSync {
        NextSync::At { at, hot: false }
    }

    #[test]
    fn a_campaign_is_synced_every_run_then_hourly_then_daily_at_the_day_end_then_retired() {
        let cadence = SyncCadence::default();
        let sent = Some(day(0));
        assert_eq!(next_sync(&cadence, sent, day(2), false, UTC), at(day(2)));
        assert_eq!(
            next_sync(&cadence, sent, day(5), false, UTC),
            at(day(5) + Duration::hours(1))
        );
        assert_eq!(next_sync(&cadence, sent, day(20), false, UTC), at(end_of(20)));
        assert_eq!(next_sync(&cadence, sent, day(60), false, UTC), NextSync::Retired);
    }

    #[test]
    fn an_hourly_sync_late_in_the_day_is_followed_by_the_day_end_sync() {
        let cadence = SyncCadence::default();
        let late = day(5) + Duration::hours(14) + Duration::minutes(30); // 23:30
        assert_eq!(next_sync(&cadence, Some(day(0)), late, false, UTC), at(end_of(5)));
        // The run that made the day's end sync belongs to the new day.
        let after = end_of(5) - Duration::minutes(3);
        assert_eq!(day_end_after(after, UTC), end_of(6));
        assert_eq!(last_day_end(after, UTC), end_of(5));
        assert_eq!(last_day_end(after - Duration::minutes(10), UTC), end_of(4));
    }

    #[test]
    fn the_day_end_follows_cm_local_midnight_across_a_clock_change() {
        let sydney: Tz = chrono_tz::Australia::Sydney;
        // 2026-10-04: clocks go forward at 02:00 in Sydney; midnights stay midnights.
        let noon = instant("2026-10-04T12:00:00+11:00");
        let end = day_end_after(noon, sydney).with_timezone(&sydney);
        assert_eq!(end.to_rfc3339(), "2026-10-05T00:10:00+11:00");
        // Where a clock change skips midnight, the day starts at the first moment it has.
        let santiago: Tz = chrono_tz::America::Santiago;
        let before = instant("2026-09-05T12:00:00-04:00");
        let end = day_end_after(before, santiago).with_timezone(&santiago);
        assert_eq!(end.to_rfc3339(), "2026-09-06T01:10:00-03:00");
    }

    #[test]
    fn activity_found_late_makes_a_campaign_hourly_again_even_retired() {
        let cadence = SyncCadence::default();
        let sent = Some(day(0));
        assert_eq!(
            next_sync(&cadence, sent, day(90), true, UTC),
            at(day(90) + Duration::hours(1))
        );
        assert_eq!(
            next_sync(&cadence, sent, day(20), true, UTC),
            at(day(20) + Duration::hours(1))
        );
        assert_eq!(
            next_sync(&cadence, sent, day(1), true, UTC),
            NextSync::At { at: day(1), hot: true }
        );
    }

    #[test]
    fn a_campaign_is_hot_for_its_first_hours_only() {
        let cadence = SyncCadence::default();
        let sent = Some(day(0));
        let young = next_sync(&cadence, sent, day(1), false, UTC);
        assert_eq!(young, NextSync::At { at: day(1), hot: true });
        assert!(young.is_due_hot(day(1) + Duration::minutes(5)));
        let older = next_sync(&cadence, sent, day(2) + Duration::minutes(1), false, UTC);
        assert!(!older.is_due_hot(day(2) + Duration::minutes(5)), "{older:?}");
        assert!(older.is_due(day(2) + Duration::minutes(5)), "still every run");
        let none = SyncCadence {
            hot_hours: 0,
            ..cadence
        };
        assert!(!next_sync(&none, sent, day(0), false, UTC).is_due_hot(day(0)));
        // A hot campaign is synced at every run even if the ages say otherwise.
        let short = SyncCadence {
            every_run_days: 0,
            hourly_until_days: 0,
            daily_until_days: 0,
            ..cadence
        };
        assert_eq!(
            next_sync(&short, sent, day(1), false, UTC),
            NextSync::At { at: day(1), hot: true }
        );
    }

    #[test]
    fn without_a_send_date_or_with_the_cadence_off_every_run_syncs() {
        let off = SyncCadence {
            enabled: false,
            ..SyncCadence::default()
        };
        assert_eq!(next_sync(&off, Some(day(0)), day(400), false, UTC), at(day(400)));
        assert_eq!(
            next_sync(&SyncCadence::default(), None, day(400), false, UTC),
            at(day(400))
        );
        assert!(at(day(1)).is_due(day(1)));
        assert!(at(day(1) + DUE_GRACE).is_due(day(1)), "a few seconds late");
        assert!(!at(day(1) + Duration::minutes(10)).is_due(day(1)));
        assert!(!NextSync::Retired.is_due(day(1000)));
    }

    #[test]
    fn a_schedule_entry_stored_before_hot_schedules_reads_as_not_hot() {
        let stored: NextSync = serde_json::from_str(r#"{"next": "at", "at": "2026-11-01T09:00:00Z"}"#).unwrap();
        assert_eq!(stored, at(day(0)));
    }

    #[test]
    fn ages_that_go_down_and_long_hot_spells_are_refused() {
        assert_eq!(SyncCadence::default().problem(), None);
        let bad = SyncCadence {
            hourly_until_days: 2,
            ..SyncCadence::default()
        };
        assert!(bad.problem().unwrap().contains("must not go down"), "{bad:?}");
        let hot = SyncCadence {
            hot_hours: 1000,
            ..SyncCadence::default()
        };
        assert!(hot.problem().unwrap().contains("hot_hours"), "{hot:?}");
    }
}
