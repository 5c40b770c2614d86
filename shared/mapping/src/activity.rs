//! Campaign Monitor activity kinds and CM's offset-less local timestamps.
//!
//! CM reports every date as `YYYY-MM-DD HH:MM:SS` in the account's local time with no UTC offset
//! (reference: campaign-monitor-api.md §4.4). [`CmTimestamp::to_utc`] converts through the
//! configured IANA zone, resolving daylight-saving gaps and overlaps deterministically.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Declares [`ActivityKind`] and its one list, [`ActivityKind::ALL`], from a single list of
/// kinds: a new kind is in `ALL` (so in the streams the sync reads and in the rank table) the
/// moment it is declared, and every exhaustive `match` on it fails to compile until it is
/// handled.
macro_rules! activity_kinds {
    ($( $(#[$doc:meta])* $kind:ident, )+) => {
        /// The kinds of per-recipient campaign activity CM reports.
        ///
        /// The declaration order is the *default* `status_rank` (PRODUCT.md §2), but code must
        /// always rank through [`crate::settings::StatusRank`], which the admin may reorder.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ActivityKind {
            $( $(#[$doc])* $kind, )+
        }

        impl ActivityKind {
            /// How many kinds there are.
            pub const COUNT: usize = [$( stringify!($kind) ),+].len();

            /// Every kind, in the default rank order (their declaration order).
            pub const ALL: [ActivityKind; ActivityKind::COUNT] = [$( ActivityKind::$kind ),+];
        }
    };
}

activity_kinds! {
    /// The campaign was sent to the recipient (CM `recipients`).
    Sent,
    /// The email bounced (CM `bounces`).
    Bounced,
    /// The recipient opened the email (CM `opens`).
    Opened,
    /// The recipient clicked a link (CM `clicks`).
    Clicked,
    /// The recipient unsubscribed through this campaign (CM `unsubscribes`).
    Unsubscribed,
    /// The recipient marked the email as spam (CM `spam`).
    MarkedAsSpam,
}

impl ActivityKind {
    /// The name used in settings documents and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Sent => "Sent",
            ActivityKind::Bounced => "Bounced",
            ActivityKind::Opened => "Opened",
            ActivityKind::Clicked => "Clicked",
            ActivityKind::Unsubscribed => "Unsubscribed",
            ActivityKind::MarkedAsSpam => "MarkedAsSpam",
        }
    }

    /// "Sent" is the starting state, not something the recipient did (PRODUCT.md §3.3): it never
    /// uses up the single `once_only` update.
    pub fn is_interaction(self) -> bool {
        self != ActivityKind::Sent
    }

    /// Dense index `0..COUNT` (the declaration order), for fixed-size lookup tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The summary count that grows with this kind's stream: the probe skips reading the
    /// streams only while these counts stay as they were, so every stream needs one.
    pub fn summary_stat(self) -> crate::statistics::CampaignStat {
        use crate::statistics::CampaignStat;
        match self {
            ActivityKind::Sent => CampaignStat::Recipients,
            ActivityKind::Bounced => CampaignStat::Bounced,
            ActivityKind::Opened => CampaignStat::TotalOpened,
            ActivityKind::Clicked => CampaignStat::Clicks,
            ActivityKind::Unsubscribed => CampaignStat::Unsubscribed,
            ActivityKind::MarkedAsSpam => CampaignStat::SpamComplaints,
        }
    }
}

impl fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the six activity kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activity `{0}`; expected one of Sent, Bounced, Opened, Clicked, Unsubscribed, MarkedAsSpam")]
pub struct UnknownActivity(pub String);

impl FromStr for ActivityKind {
    type Err = UnknownActivity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActivityKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownActivity(s.to_owned()))
    }
}

/// A CM date as CM sends it: local wall-clock time of the account, no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CmTimestamp(NaiveDateTime);

/// `YYYY-MM-DD HH:MM:SS` exactly, read by position (CM's every date); `None` for anything else,
/// which the general parser reads or refuses.
fn wire_date_time(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        b[from..to]
            .iter()
            .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    date.and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)
}

/// A CM date string that is not `YYYY-MM-DD HH:MM:SS` (or `YYYY-MM-DD HH:MM`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Campaign Monitor date (expected YYYY-MM-DD HH:MM:SS)")]
pub struct BadCmTimestamp(pub String);

impl CmTimestamp {
    /// CM's wire format.
    pub const FORMAT: &'static str = "%Y-%m-%d %H:%M:%S";

    /// The years a CM date may have: CM dates are from its own lifetime, and a bound here keeps
    /// every sum of a date and a duration (a day, an offset, an overlap) far inside chrono's
    /// range, where its arithmetic would panic.
    pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

    /// Parses `YYYY-MM-DD HH:MM:SS`; the minute-only form some CM docs show is accepted too.
    /// A year outside [`CmTimestamp::YEARS`] is refused.
    pub fn parse(text: &str) -> Result<Self, BadCmTimestamp> {
        use chrono::Datelike;
        let trimmed = text.trim();
        wire_date_time(trimmed)
            .ok_or(())
            .or_else(|()| NaiveDateTime::parse_from_str(trimmed, Self::FORMAT))
            .or_else(|_| NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M"))
            .ok()
            .filter(|at| Self::YEARS.contains(&at.year()))
            .map(CmTimestamp)
            .ok_or_else(|| BadCmTimestamp(text.chars().take(40).collect()))
    }

    /// Wraps an already parsed local time.
    pub fn from_naive(local: NaiveDateTime) -> Self {
        CmTimestamp(local)
    }

    /// The local wall-clock value.
    pub fn naive(self) -> NaiveDateTime {
        self.0
    }

    /// Converts the account-local time to UTC.
    ///
    /// Daylight-saving transitions are resolved the way RFC 5545 and JavaScript Temporal's
    /// `"compatible"` mode do, so the result is deterministic and never fails:
    /// - a time that occurs twice (clocks go back) is read as the *earlier* instant;
    /// - a time that never occurs (clocks go forward) is read with the offset in force just
    ///   before the gap, which lands it after the gap by the gap's length (02:30 in a
    ///   02:00→03:00 gap becomes 03:30 local).
    pub fn to_utc(self, zone: Tz) -> DateTime<Utc> {
        match zone.from_local_datetime(&self.0) {
            LocalResult::Single(at) => at.with_timezone(&Utc),
            LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
            LocalResult::None => {
                // Walk back to the last local time that exists; its offset is the one in force
                // before the gap. Real gaps are at most a day (Samoa 2011), so 49 steps suffice.
                let mut probe = self.0;
                for _ in 0..49 {
                    probe -= Duration::minutes(30);
                    if let LocalResult::Single(before) | LocalResult::Ambiguous(_, before) =
                        zone.from_local_datetime(&probe)
                    {
                        let offset = before.offset().fix();
                        return (self.0 - Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc();
                    }
                }
                // Unreachable for real zone data; treat the wall-clock time as UTC.
                self.0.and_utc()
            }
        }
    }

    /// The same instant formatted back in CM's wire format (used for `date` watermarks).
    pub fn to_cm_string(self) -> String {
        use chrono::{Datelike, Timelike};
        let (date, time) = (self.0.date(), self.0.time());
        if !(0..=9999).contains(&date.year()) {
            return self.0.format(Self::FORMAT).to_string();
        }
        // What `FORMAT` gives, without interpreting it again for each of a million records.
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            date.year(),
            date.month(),
            date.day(),
            time.hour(),
            time.minute(),
            time.second()
        )
    }

    /// The CM local time of a UTC instant (the inverse of [`CmTimestamp::to_utc`] outside
    /// transitions), for building CM `date` filters from stored UTC watermarks.
    pub fn from_utc(at: DateTime<Utc>, zone: Tz) -> Self {
        CmTimestamp(at.with_timezone(&zone).naive_local())
    }

    /// The local time to ask CM for records "since" `at`: CM filters on its local wall-clock
    /// dates (the sandbox does too: the less convenient reading), and when clocks go back an
    /// hour repeats, so a record dated after `at` can carry an earlier local time than `at`'s.
    /// The earlier of `at`'s local time and that of an hour later less an hour covers a
    /// fall-back of up to an hour within the next hour (re-reading at most an hour: harmless,
    /// the Activity Date guard makes it idempotent); with no transition both are the same.
    pub fn since(at: DateTime<Utc>, zone: Tz) -> Self {
        let here = Self::from_utc(at, zone).0;
        let hour_later = Self::from_utc(at + Duration::hours(1), zone).0 - Duration::hours(1);
        CmTimestamp(here.min(hour_later))
    }
}

impl fmt::Display for CmTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(Self::FORMAT))
    }
}

/// Kind-specific details of an activity record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ActivityDetail {
    /// Nothing beyond the common fields.
    None,
    /// The link a click followed.
    Click {
        /// The clicked URL.
        url: String,
    },
    /// Why and how an email bounced.
    Bounce {
        /// `Soft` or `Hard`.
        bounce_type: String,
        /// CM's free-text reason, e.g. "Soft Bounce - General".
        reason: String,
    },
}

/// One recipient activity, normalised: email lower-cased and trimmed, time in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// What happened.
    pub kind: ActivityKind,
    /// The recipient, normalised with [`crate::email::normalize_email`].
    pub email: String,
    /// When it happened, in UTC.
    pub at: DateTime<Utc>,
    /// The CM list the recipient was sent from.
    pub list_id: String,
    /// Kind-specific details.
    pub detail: ActivityDetail,
}

/// The distinct addresses of some activity, sorted: what one look-up of people asks for.
pub fn unique_emails(activities: &[Activity]) -> Vec<String> {
    activities
        .iter()
        .map(|a| a.email.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Activity {
    /// The (kind, time) pair the member decision works on.
    pub fn occurrence(&self) -> Occurrence {
        Occurrence {
            kind: self.kind,
            at: self.at,
        }
    }
}

/// What the member decision needs of an activity: its kind and its UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    /// What happened.
    pub kind: ActivityKind,
    /// When, in UTC.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The by-position reader and writer agree with chrono's reading and writing of
        /// `FORMAT` for every date and for text that is nearly a date.
        #[test]
        fn reading_and_writing_by_position_agree_with_chrono(
            seconds in 0i64..253_402_300_799,
            noise in "[0-9 :-]{17,21}",
        ) {
            let local = chrono::DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
            let at = super::CmTimestamp::from_naive(local);
            let text = at.to_cm_string();
            prop_assert_eq!(&text, &local.format(super::CmTimestamp::FORMAT).to_string());
            prop_assert_eq!(super::CmTimestamp::parse(&text).map(super::CmTimestamp::naive), Ok(local));
            let by_chrono = chrono::NaiveDateTime::parse_from_str(&noise, super::CmTimestamp::FORMAT).ok();
            if noise.len() == 19 {
                prop_assert_eq!(super::wire_date_time(&noise), by_chrono);
            }
        }
    }

    #[test]
    fn a_date_outside_cms_years_is_refused_and_every_accepted_one_converts_without_panic() {
        use super::CmTimestamp;
        for text in [
            "-262143-01-01 00:00:00",
            "0000-01-01 00:00:00",
            "1969-12-31 23:59:59",
            "+10000-01-01 00:00:00",
        ] {
            assert!(CmTimestamp::parse(text).is_err(), "{text}");
        }
        for text in ["1970-01-01 00:00:00", "9999-12-31 23:59:59", "2026-11-20 10:00"] {
            let at = CmTimestamp::parse(text).unwrap_or_else(|_| panic!("{text}"));
            for zone in [
                chrono_tz::Pacific::Kiritimati,
                chrono_tz::Etc::GMTPlus12,
                chrono_tz::UTC,
            ] {
                let utc = at.to_utc(zone);
                let _ = CmTimestamp::since(utc - chrono::Duration::days(1), zone);
            }
        }
    }

    #[test]
    fn every_stream_has_a_summary_count_the_probe_watches() {
        for kind in super::ActivityKind::ALL {
            assert!(
                kind.summary_stat().counts_activity(),
                "{kind}: its summary count must grow with its stream, or the probe could skip new records"
            );
        }
    }

    #[test]
    fn since_covers_the_hour_that_repeats_when_clocks_go_back() {
        let sydney: Tz = "Australia/Sydney".parse().unwrap_or(chrono_tz::UTC);
        let utc = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.to_utc())
                .unwrap_or_default()
        };
        let local = |at: &str| CmTimestamp::since(utc(at), sydney).to_string();
        // 2027-04-04 03:00 AEDT (16:00 UTC) becomes 02:00 AEST: 02:00-03:00 local happens twice.
        // 02:15 local, first time (15:15 UTC): a record an hour later is dated 02:10 local again.
        assert_eq!(local("2027-04-03T15:15:00Z"), "2027-04-04 01:15:00");
        // In the second 02:xx hour nothing repeats after it: its own local time.
        assert_eq!(local("2027-04-03T16:10:00Z"), "2027-04-04 02:10:00");
        // Any other day (and when clocks go forward): the plain local time.
        assert_eq!(local("2027-03-01T00:00:00Z"), "2027-03-01 11:00:00");
        assert_eq!(local("2026-10-03T15:30:00Z"), "2026-10-04 01:30:00");
        assert_eq!(
            CmTimestamp::since(utc("2027-03-01T00:00:00Z"), sydney),
            CmTimestamp::from_utc(utc("2027-03-01T00:00:00Z"), sydney)
        );
    }

    use super::*;
    use chrono::NaiveDate;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, 0))
            .map(|naive| naive.and_utc())
            .unwrap_or_default()
    }

    fn cm(text: &str) -> CmTimestamp {
        CmTimestamp::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn plain_times_convert_with_the_zone_offset() {
        // Sydney is UTC+11 in January (daylight time).
        assert_eq!(
            cm("2024-01-15 09:30:00").to_utc(chrono_tz::Australia::Sydney),
            utc(2024, 1, 14, 22, 30)
        );
        assert_eq!(cm("2024-07-01 12:00:00").to_utc(chrono_tz::UTC), utc(2024, 7, 1, 12, 0));
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_lands_after_the_gap() {
        // New York 2024-03-10: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let at = cm("2024-03-10 02:30:00").to_utc(chrono_tz::America::New_York);
        assert_eq!(at, utc(2024, 3, 10, 7, 30)); // 03:30 EDT
        // Deterministic: the same input always gives the same instant.
        assert_eq!(at, cm("2024-03-10 02:30:00").to_utc(chrono_tz::America::New_York));
    }

    #[test]
    fn a_time_that_occurs_twice_is_read_as_the_earlier_instant() {
        // New York 2024-11-03: 01:30 happens in EDT (05:30Z) and again in EST (06:30Z).
        let at = cm("2024-11-03 01:30:00").to_utc(chrono_tz::America::New_York);
        assert_eq!(at, utc(2024, 11, 3, 5, 30));
    }

    #[test]
    fn southern_hemisphere_transitions_work_too() {
        // Sydney 2024-10-06 02:00 AEST -> 03:00 AEDT: 02:15 is in the gap.
        let gap = cm("2024-10-06 02:15:00").to_utc(chrono_tz::Australia::Sydney);
        assert_eq!(gap, utc(2024, 10, 5, 16, 15)); // 02:15 read at +10:00
        // Sydney 2024-04-07 03:00 AEDT -> 02:00 AEST: 02:30 occurs twice; earlier is +11:00.
        let twice = cm("2024-04-07 02:30:00").to_utc(chrono_tz::Australia::Sydney);
        assert_eq!(twice, utc(2024, 4, 6, 15, 30));
    }

    #[test]
    fn a_whole_missing_day_is_handled() {
        // Samoa skipped 2011-12-30 entirely (-10:00 to +14:00); noon is read at -10:00.
        let at = cm("2011-12-30 12:00:00").to_utc(chrono_tz::Pacific::Apia);
        assert_eq!(at, utc(2011, 12, 30, 22, 0));
    }

    #[test]
    fn parsing_accepts_cm_forms_and_rejects_others() {
        assert!(CmTimestamp::parse("2024-03-05 14:07:00").is_ok());
        assert!(CmTimestamp::parse("2024-03-05 14:07").is_ok());
        for bad in [
            "",
            "2024-03-05T14:07:00Z",
            "05/03/2024 14:07",
            "2024-02-30 10:00:00",
            "yesterday",
        ] {
            assert!(CmTimestamp::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn round_trips_through_utc_outside_transitions() {
        let zone = chrono_tz::Europe::London;
        let local = cm("2024-06-01 08:15:00");
        assert_eq!(CmTimestamp::from_utc(local.to_utc(zone), zone), local);
        assert_eq!(local.to_cm_string(), "2024-06-01 08:15:00");
    }

    #[test]
    fn activity_names_round_trip() {
        for kind in ActivityKind::ALL {
            assert_eq!(kind.as_str().parse::<ActivityKind>(), Ok(kind));
        }
        assert!("Forwarded".parse::<ActivityKind>().is_err());
        assert!(!ActivityKind::Sent.is_interaction());
        assert!(ActivityKind::Opened.is_interaction());
    }
}
