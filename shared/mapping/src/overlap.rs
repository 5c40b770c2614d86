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

use crate::activity::{Activity, ActivityKind};

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

/// The settled moment of a read: CM's clock less the settle lag, to the whole minute. Records
/// dated up to it are taken as read; later ones are read again next time (CM shows some
/// records late), which changes nothing for those already applied.
pub fn settled(cm_now: DateTime<Utc>, settle_lag: Duration) -> DateTime<Utc> {
    (cm_now - settle_lag)
        .duration_trunc(Duration::minutes(1))
        .unwrap_or(cm_now)
}

/// The overlap rule over one campaign's read, as the records come (pages of several streams
/// side by side): records newer than their stream's watermark, and recipients, pass at once;
/// records read again inside the overlap are held until every stream is read, since only the
/// whole read's count of their quarter-hour says whether they were all applied before.
#[derive(Debug)]
pub struct OverlapFilter<'a> {
    watermarks: &'a BTreeMap<String, DateTime<Utc>>,
    stored: &'a RecentCounts,
    counted: BTreeMap<ActivityKind, SliceCounts>,
    held: Vec<Activity>,
}

/// What the overlap rule keeps of a whole read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filtered {
    /// Records read again whose quarter-hour holds something the last sync did not apply.
    pub to_apply: Vec<Activity>,
    /// Records read again and left out: their quarter-hour was applied whole before.
    pub already_applied: u64,
    /// The counts the next sync compares with.
    pub counts: RecentCounts,
}

impl<'a> OverlapFilter<'a> {
    /// A filter for a read from `watermarks` (stream → where the last sync got to), against
    /// the counts the last sync kept.
    pub fn new(watermarks: &'a BTreeMap<String, DateTime<Utc>>, stored: &'a RecentCounts) -> Self {
        OverlapFilter {
            watermarks,
            stored,
            counted: BTreeMap::new(),
            held: Vec::new(),
        }
    }

    /// One record read: returned if it is applied whatever else the read holds, else held.
    pub fn admit(&mut self, activity: Activity) -> Option<Activity> {
        if activity.kind == ActivityKind::Sent {
            return Some(activity); // recipients are read once, not again in an overlap
        }
        self.counted.entry(activity.kind).or_default().add(activity.at);
        if self
            .watermarks
            .get(activity.kind.as_str())
            .is_some_and(|watermark| activity.at < *watermark)
        {
            self.held.push(activity);
            return None;
        }
        Some(activity)
    }

    /// Every stream read: the held records to apply, how many were applied before, and the
    /// counts to keep for the window before `next_watermarks` (every activity stream, those
    /// that had no record too: a late record in an empty quarter-hour must not pass for one
    /// applied).
    pub fn finish(self, next_watermarks: &BTreeMap<String, DateTime<Utc>>, overlap: Duration) -> Filtered {
        let none_read = SliceCounts::default();
        let mut filtered = Filtered::default();
        for activity in self.held {
            let stored = self.stored.streams.get(activity.kind.as_str());
            let fresh = self.counted.get(&activity.kind).unwrap_or(&none_read);
            if already_applied(stored, fresh, slice_of(activity.at)) {
                filtered.already_applied += 1;
            } else {
                filtered.to_apply.push(activity);
            }
        }
        filtered.counts.streams = ActivityKind::ALL
            .iter()
            .filter(|kind| kind.is_interaction())
            .filter_map(|kind| {
                let to = *next_watermarks.get(kind.as_str())?;
                let counts = self.counted.get(kind).unwrap_or(&none_read);
                Some((kind.as_str().to_owned(), counts.kept(read_from(to, overlap), to)))
            })
            .collect();
        filtered
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

    fn open(at: DateTime<Utc>) -> Activity {
        Activity {
            kind: ActivityKind::Opened,
            email: "a@example.com".into(),
            at,
            list_id: String::new(),
            detail: crate::activity::ActivityDetail::None,
        }
    }

    #[test]
    fn the_filter_passes_new_records_and_holds_re_read_ones_until_the_read_is_whole() {
        let watermarks = BTreeMap::from([("Opened".to_owned(), at(11, 0))]);
        let mut stored = RecentCounts::default();
        stored
            .streams
            .insert("Opened".into(), BTreeMap::from([(at(10, 0), 1), (at(10, 15), 0)]));
        let mut filter = OverlapFilter::new(&watermarks, &stored);
        assert!(filter.admit(open(at(11, 5))).is_some(), "new since the watermark");
        assert!(filter.admit(open(at(10, 1))).is_none(), "read again: held");
        assert!(
            filter.admit(open(at(10, 20))).is_none(),
            "late, in a slice counted empty"
        );
        let next = BTreeMap::from([("Opened".to_owned(), at(11, 30))]);
        let filtered = filter.finish(&next, Duration::minutes(90));
        assert_eq!(filtered.already_applied, 1);
        assert_eq!(filtered.to_apply, vec![open(at(10, 20))]);
        let kept = &filtered.counts.streams["Opened"];
        assert_eq!(kept.get(&at(10, 0)), Some(&1));
        assert_eq!(kept.get(&at(10, 15)), Some(&1));
        assert_eq!(kept.get(&at(11, 0)), Some(&1));
    }

    #[test]
    fn the_settled_moment_is_the_lag_before_cm_s_clock_to_the_minute() {
        let now = at(10, 7) + Duration::seconds(42);
        assert_eq!(settled(now, Duration::minutes(5)), at(10, 2));
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
