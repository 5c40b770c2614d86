//! Campaign Monitor's time zones: dates come without an offset, in the account's zone, and an
//! agency's clients each have a `TimeZone` of their own, a display string such as
//! `(GMT+10:00) Canberra, Melbourne, Sydney`. Whether a client's report dates follow its own
//! zone is not documented; `doctor` warns when a client's zone differs from `cm_timezone`.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The UTC offset a CM `TimeZone` display string names (`(GMT+10:00) ...`, `(GMT) ...`,
/// `(UTC-05:00) ...`), if it names one.
pub fn cm_display_offset(display: &str) -> Option<FixedOffset> {
    let inner = display.trim().strip_prefix('(')?.split(')').next()?;
    let rest = inner.strip_prefix("GMT").or_else(|| inner.strip_prefix("UTC"))?;
    if rest.is_empty() {
        return FixedOffset::east_opt(0);
    }
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (hours, minutes) = digits.split_once(':').unwrap_or((digits, "0"));
    let seconds = hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * seconds)
}

/// A zone's standard (winter) offset in the year of `now`: the smaller of its January and July
/// offsets, as CM's display strings show standard time.
pub fn standard_offset(zone: Tz, now: DateTime<Utc>) -> FixedOffset {
    let offset_on = |month| {
        let date = NaiveDate::from_ymd_opt(now.year(), month, 1).unwrap_or_default();
        zone.offset_from_utc_date(&date).fix()
    };
    let (january, july) = (offset_on(1), offset_on(7));
    if january.local_minus_utc() <= july.local_minus_utc() {
        january
    } else {
        july
    }
}

/// What is wrong with a client whose `TimeZone` is `display` when `cm_timezone` is `zone`:
/// `None` when their standard offsets agree.
pub fn client_zone_mismatch(display: &str, zone: Tz, now: DateTime<Utc>) -> Option<String> {
    let standard = standard_offset(zone, now);
    match cm_display_offset(display) {
        Some(offset) if offset == standard => None,
        Some(offset) => Some(format!(
            "its time zone is {display} (UTC{offset}) but cm_timezone is {} (UTC{standard}): if its report dates are in its own zone, they are read {} hours off",
            zone.name(),
            f64::from((offset.local_minus_utc() - standard.local_minus_utc()).abs()) / 3600.0
        )),
        None => Some(format!(
            "its time zone `{display}` names no UTC offset to compare with cm_timezone"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn cm_display_strings_give_their_offset() {
        let hours = |h: i32| FixedOffset::east_opt(h * 3600);
        assert_eq!(cm_display_offset("(GMT+10:00) Canberra, Melbourne, Sydney"), hours(10));
        assert_eq!(cm_display_offset("(GMT-05:00) Eastern Time (US & Canada)"), hours(-5));
        assert_eq!(
            cm_display_offset("(GMT+05:30) Chennai, Kolkata, Mumbai, New Delhi"),
            FixedOffset::east_opt(5 * 3600 + 1800)
        );
        assert_eq!(cm_display_offset("(GMT) Dublin, Edinburgh, Lisbon, London"), hours(0));
        assert_eq!(cm_display_offset("Sydney"), None);
    }

    #[test]
    fn a_client_in_another_zone_than_cm_timezone_is_named() {
        let sydney = chrono_tz::Australia::Sydney;
        assert_eq!(
            client_zone_mismatch("(GMT+10:00) Canberra, Melbourne, Sydney", sydney, now()),
            None,
            "standard time, whatever the season"
        );
        let problem = client_zone_mismatch("(GMT-05:00) Eastern Time (US & Canada)", sydney, now()).unwrap();
        assert!(problem.contains("15 hours off"), "{problem}");
        assert_eq!(
            client_zone_mismatch(
                "(GMT) Dublin, Edinburgh, Lisbon, London",
                chrono_tz::Europe::London,
                now()
            ),
            None
        );
        assert!(client_zone_mismatch("Somewhere", sydney, now()).is_some());
    }
}
