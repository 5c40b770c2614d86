//! The activity overlap (PRODUCT.md §2 `activity_overlap_minutes`, issue #18): CM does not say
//! when a record becomes visible, and one can show up after a sync read past its date. So each
//! activity stream is read again from its watermark less the overlap, and the records read again
//! must cost no Salesforce call. What a sync applied inside the overlap is kept as counts per
//! quarter-hour of record date ([`RecentCounts`]): a quarter-hour whose count is unchanged holds
//! only records already applied and is dropped; one whose count grew (a late record) is applied
//! again, whole, which changes nothing for the records already applied (§3.3 guard).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

/// The width of a counted slice of record dates.
pub const SLICE: Duration = Duration::minutes(15);

/// Records read per quarter-hour of record date, for each activity stream, over the overlap
/// before the stream's watermark: what the last sync applied there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCounts {
    /// Stream (`ActivityKind::as_str`) → slice start → records dated in the slice.
    pub streams: BTreeMap<String, BTreeMap<DateTime<Utc>, u64>>,
}

/// The slice a record date falls in.
pub fn slice_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(SLICE).unwrap_or(at)
}

/// Where a stream is read from: its watermark less the overlap.
pub fn read_from(watermark: DateTime<Utc>, overlap: Duration) -> DateTime<Utc> {
    watermark - overlap
}

/// Counts of one stream's records by slice, as one sync read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceCounts(pub BTreeMap<DateTime<Utc>, u64>);

impl SliceCounts {
    /// Counts one record.
    pub fn add(&mut self, at: DateTime<Utc>) {
        *self.0.entry(slice_of(at)).or_default() += 1;
    }

    /// The counts to keep for the next sync: the slices wholly inside `[from, to)`, where
    /// `from` is the next watermark less the overlap and `to` the next watermark, both covered
    /// by this sync's read. Empty slices are kept too (as 0): a late record in one must not be
    /// mistaken for one already applied.
    pub fn kept(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<DateTime<Utc>, u64> {
        let mut kept = BTreeMap::new();
        let mut slice = slice_of(from);
        if slice < from {
            slice += SLICE;
        }
        while slice + SLICE <= to {
            kept.insert(slice, self.0.get(&slice).copied().unwrap_or(0));
            slice += SLICE;
        }
        kept
    }
}

/// Whether the records a sync read in `slice` were all applied before: the last sync counted
/// the slice whole and saw as many records as this one.
pub fn already_applied(
    stored: Option<&BTreeMap<DateTime<Utc>, u64>>,
    fresh: &SliceCounts,
    slice: DateTime<Utc>,
) -> bool {
    match stored.and_then(|stored| stored.get(&slice)) {
        Some(count) => fresh.0.get(&slice).copied().unwrap_or(0) == *count,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap()
    }

    #[test]
    fn only_whole_slices_inside_the_window_are_kept_and_empty_ones_as_zero() {
        let mut counts = SliceCounts::default();
        for t in [at(9, 50), at(10, 1), at(10, 14), at(10, 40), at(11, 2)] {
            counts.add(t);
        }
        let kept = counts.kept(at(9, 55), at(10, 50));
        // 9:45 starts before the window, 10:45 ends after it.
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            vec![(at(10, 0), 2), (at(10, 15), 0), (at(10, 30), 1)]
        );
    }

    #[test]
    fn a_slice_is_dropped_only_when_counted_whole_before_with_the_same_count() {
        let mut fresh = SliceCounts::default();
        fresh.add(at(10, 1));
        fresh.add(at(10, 2));
        let stored: BTreeMap<_, _> = [(at(10, 0), 2), (at(10, 15), 0)].into_iter().collect();
        assert!(already_applied(Some(&stored), &fresh, at(10, 0)));
        fresh.add(at(10, 20)); // a late record in a slice counted empty
        assert!(!already_applied(Some(&stored), &fresh, at(10, 15)));
        fresh.add(at(10, 3)); // a late record in a slice counted with two
        assert!(!already_applied(Some(&stored), &fresh, at(10, 0)));
        assert!(!already_applied(None, &fresh, at(10, 0)), "nothing kept: apply");
        assert!(
            !already_applied(Some(&stored), &fresh, at(9, 45)),
            "not counted whole: apply"
        );
    }

    proptest! {
        /// However records arrive late, a record is dropped only if its slice's count is the
        /// one kept, i.e. no record of the slice is new since.
        #[test]
        fn a_late_record_is_never_dropped(
            first in proptest::collection::vec(0u32..240, 0..40),
            late in proptest::collection::vec(0u32..240, 1..5),
        ) {
            let start = at(8, 0);
            let minute = |m: u32| start + Duration::minutes(i64::from(m));
            let mut before = SliceCounts::default();
            first.iter().for_each(|m| before.add(minute(*m)));
            let stored = before.kept(start, minute(240));
            let mut now = before.clone();
            late.iter().for_each(|m| now.add(minute(*m)));
            for m in &late {
                prop_assert!(!already_applied(Some(&stored), &now, slice_of(minute(*m))));
            }
        }
    }
}
