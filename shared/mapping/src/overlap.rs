//! The activity overlap (PRODUCT.md §2 `activity_overlap_minutes`, issue #18): CM does not say
//! when a record becomes visible, and one can show up after a sync read past its date. So each
//! activity stream is read again from its watermark less the overlap, and the records read again
//! must cost no Salesforce call. What a sync applied inside the overlap is kept per quarter-hour
//! of record date ([`RecentCounts`]) as a [`Tally`]: how many records, and a digest of their
//! keys. A quarter-hour whose tally is unchanged holds only records already applied and is
//! dropped; one whose tally changed (a late record, even one that arrived while another dropped
//! out of the read: equal counts, different digests) is applied again, whole, which changes
//! nothing for the records already applied (§3.3 guard).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::activity::{Activity, ActivityDetail, ActivityKind};

/// The width of a counted slice of record dates.
pub const SLICE: Duration = Duration::minutes(15);

/// What one read saw of a quarter-hour: how many records, and the digest of their keys (the
/// wrapping sum of each record's hash: the order of reading does not matter, a record that
/// drops out while another arrives does). Stored as `[count, digest]`; a tally stored before
/// digests existed reads as a bare count with no digest and never passes for unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records read in the slice.
    pub count: u64,
    /// The digest of their keys; `None` for a tally stored as a bare count.
    pub digest: Option<u64>,
}

impl Tally {
    /// A slice with no record.
    pub const EMPTY: Tally = Tally {
        count: 0,
        digest: Some(0),
    };

    fn add(&mut self, record: &Activity) {
        self.count += 1;
        self.digest = Some(self.digest.unwrap_or(0).wrapping_add(record_hash(record)));
    }

    /// Whether `self` (read now) shows exactly the records `stored` did.
    pub fn unchanged_since(&self, stored: &Tally) -> bool {
        stored.digest.is_some() && self == stored
    }
}

impl Serialize for Tally {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.digest {
            Some(digest) => [self.count, digest].serialize(serializer),
            None => self.count.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Tally {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Count(u64),
            Tally([u64; 2]),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Count(count) => Tally { count, digest: None },
            Stored::Tally([count, digest]) => Tally {
                count,
                digest: Some(digest),
            },
        })
    }
}

/// A record's hash for the digest: its kind, address, date and detail, through SHA-256 (stable
/// across builds and processes, unlike the standard library's hasher).
fn record_hash(record: &Activity) -> u64 {
    let mut hash = Sha256::new();
    hash.update(record.kind.as_str().as_bytes());
    hash.update([0]);
    hash.update(record.email.as_bytes());
    hash.update([0]);
    hash.update(record.at.timestamp_millis().to_be_bytes());
    match &record.detail {
        ActivityDetail::None => {}
        ActivityDetail::Click { url } => hash.update(url.as_bytes()),
        ActivityDetail::Bounce { bounce_type, reason } => {
            hash.update(bounce_type.as_bytes());
            hash.update([0]);
            hash.update(reason.as_bytes());
        }
    }
    let digest = hash.finalize();
    u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

/// Records read per quarter-hour of record date, for each activity stream, over the overlap
/// before the stream's watermark: what the last sync applied there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCounts {
    /// Stream (`ActivityKind::as_str`) → slice start → what was read in the slice.
    pub streams: BTreeMap<String, BTreeMap<DateTime<Utc>, Tally>>,
}

/// The slice a record date falls in.
pub fn slice_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(SLICE).unwrap_or(at)
}

/// Where a stream's overlap window starts: its watermark less the overlap.
pub fn read_from(watermark: DateTime<Utc>, overlap: Duration) -> DateTime<Utc> {
    watermark - overlap
}

/// Where a stream is asked for from CM: a quarter-hour before its overlap window, so every
/// quarter-hour of the window is read whole whatever CM does at the `date` boundary (whether
/// it includes its own second is not documented).
pub fn read_since(watermark: DateTime<Utc>, overlap: Duration) -> DateTime<Utc> {
    read_from(watermark, overlap) - SLICE
}

/// Tallies of one stream's records by slice, as one sync read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceCounts(pub BTreeMap<DateTime<Utc>, Tally>);

impl SliceCounts {
    /// Counts one record.
    pub fn add(&mut self, record: &Activity) {
        self.0.entry(slice_of(record.at)).or_insert(Tally::EMPTY).add(record);
    }

    /// The counts to keep for the next sync: the slices wholly inside `[from, to)`, where
    /// `from` is the next watermark less the overlap and `to` the next watermark, both covered
    /// by this sync's read. Empty slices are kept too (as 0): a late record in one must not be
    /// mistaken for one already applied.
    pub fn kept(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<DateTime<Utc>, Tally> {
        let mut kept = BTreeMap::new();
        let mut slice = slice_of(from);
        if slice < from {
            slice += SLICE;
        }
        while slice + SLICE <= to {
            kept.insert(slice, self.0.get(&slice).copied().unwrap_or(Tally::EMPTY));
            slice += SLICE;
        }
        kept
    }
}

/// Whether the records a sync read in `slice` were all applied before: the last sync read the
/// slice whole and saw exactly these records (same count, same digest).
pub fn already_applied(
    stored: Option<&BTreeMap<DateTime<Utc>, Tally>>,
    fresh: &SliceCounts,
    slice: DateTime<Utc>,
) -> bool {
    match stored.and_then(|stored| stored.get(&slice)) {
        Some(tally) => fresh.0.get(&slice).unwrap_or(&Tally::EMPTY).unchanged_since(tally),
        None => false,
    }
}

/// Where a stream read in part (a run's read cut short, to go on in the next run) is complete:
/// the start of the quarter-hour of the newest record it served. Pages come oldest first, so
/// every record before that record's date was served, save ties at its own date; cutting at
/// its quarter-hour keeps the slices before the cut whole for the counts kept, and records
/// after the cut that were read are applied now and again next time, which changes nothing.
pub fn read_in_part_up_to(newest_served: DateTime<Utc>) -> DateTime<Utc> {
    slice_of(newest_served)
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
        self.counted.entry(activity.kind).or_default().add(&activity);
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

    fn open_by(email: &str, at: DateTime<Utc>) -> Activity {
        Activity {
            kind: ActivityKind::Opened,
            email: email.into(),
            at,
            list_id: String::new(),
            detail: ActivityDetail::None,
        }
    }

    fn open(at: DateTime<Utc>) -> Activity {
        open_by("a@example.com", at)
    }

    fn tallies(records: &[Activity]) -> SliceCounts {
        let mut counts = SliceCounts::default();
        records.iter().for_each(|r| counts.add(r));
        counts
    }

    #[test]
    fn only_whole_slices_inside_the_window_are_kept_and_empty_ones_as_zero() {
        let counts = tallies(&[at(9, 50), at(10, 1), at(10, 14), at(10, 40), at(11, 2)].map(open));
        let kept = counts.kept(at(9, 55), at(10, 50));
        // 9:45 starts before the window, 10:45 ends after it.
        assert_eq!(
            kept.iter()
                .map(|(slice, tally)| (*slice, tally.count))
                .collect::<Vec<_>>(),
            vec![(at(10, 0), 2), (at(10, 15), 0), (at(10, 30), 1)]
        );
        assert_eq!(kept[&at(10, 15)], Tally::EMPTY);
    }

    #[test]
    fn a_slice_is_dropped_only_when_read_whole_before_with_the_same_records() {
        let mut fresh = tallies(&[open(at(10, 1)), open(at(10, 2))]);
        let stored = fresh.kept(at(10, 0), at(10, 30));
        assert!(already_applied(Some(&stored), &fresh, at(10, 0)));
        fresh.add(&open(at(10, 20))); // a late record in a slice counted empty
        assert!(!already_applied(Some(&stored), &fresh, at(10, 15)));
        fresh.add(&open(at(10, 3))); // a late record in a slice counted with two
        assert!(!already_applied(Some(&stored), &fresh, at(10, 0)));
        assert!(!already_applied(None, &fresh, at(10, 0)), "nothing kept: apply");
        assert!(
            !already_applied(Some(&stored), &fresh, at(9, 45)),
            "not counted whole: apply"
        );
    }

    /// Issue #32 item 3: one late row arrives while another drops out of the read (ties
    /// reordered between pages, a row at the exclusive `date` boundary): the count is the same,
    /// the records are not. On counts alone the late row was dropped.
    #[test]
    fn a_late_record_is_applied_when_another_drops_out_of_the_read_at_the_same_time() {
        let stored = tallies(&[open_by("a@example.com", at(10, 1)), open_by("b@example.com", at(10, 2))])
            .kept(at(10, 0), at(10, 15));
        let fresh = tallies(&[
            open_by("a@example.com", at(10, 1)),
            open_by("late@example.com", at(10, 4)),
        ]);
        assert_eq!(fresh.0[&at(10, 0)].count, stored[&at(10, 0)].count);
        assert!(!already_applied(Some(&stored), &fresh, at(10, 0)));
        let same_in_another_order =
            tallies(&[open_by("b@example.com", at(10, 2)), open_by("a@example.com", at(10, 1))]);
        assert!(already_applied(Some(&stored), &same_in_another_order, at(10, 0)));
    }

    #[test]
    fn tallies_are_stored_with_their_digest_and_a_bare_count_from_before_never_passes() {
        let stored = tallies(&[open(at(10, 1))]).kept(at(10, 0), at(10, 15));
        let json = serde_json::to_string(&stored).unwrap();
        let back: BTreeMap<DateTime<Utc>, Tally> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stored);
        let before: BTreeMap<DateTime<Utc>, Tally> =
            serde_json::from_str(&json.replace(&format!("[1,{}]", stored[&at(10, 0)].digest.unwrap()), "1")).unwrap();
        assert_eq!(before[&at(10, 0)].digest, None);
        assert!(!already_applied(Some(&before), &tallies(&[open(at(10, 1))]), at(10, 0)));
    }

    #[test]
    fn the_filter_passes_new_records_and_holds_re_read_ones_until_the_read_is_whole() {
        let watermarks = BTreeMap::from([("Opened".to_owned(), at(11, 0))]);
        let mut stored = RecentCounts::default();
        let before = tallies(&[open(at(10, 1))]);
        stored
            .streams
            .insert("Opened".into(), before.kept(at(10, 0), at(10, 30)));
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
        assert_eq!(kept[&at(10, 0)].count, 1);
        assert_eq!(kept[&at(10, 15)].count, 1);
        assert_eq!(kept[&at(11, 0)].count, 1);
    }

    #[test]
    fn the_settled_moment_is_the_lag_before_cm_s_clock_to_the_minute() {
        let now = at(10, 7) + Duration::seconds(42);
        assert_eq!(settled(now, Duration::minutes(5)), at(10, 2));
    }

    proptest! {
        /// However records arrive late, and whichever records drop out of the read meanwhile, a
        /// record is dropped only if its slice shows exactly the records kept.
        #[test]
        fn a_late_record_is_never_dropped(
            first in proptest::collection::vec((0u32..240, 0u8..4), 0..40),
            late in proptest::collection::vec((0u32..240, 4u8..8), 1..5),
            dropped in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        ) {
            let start = at(8, 0);
            let record = |(m, who): &(u32, u8)| open_by(&format!("p{who}@example.com"), start + Duration::minutes(i64::from(*m)));
            let first: Vec<Activity> = first.iter().map(record).collect();
            let stored = tallies(&first).kept(start, start + Duration::minutes(240));
            let mut now: Vec<Activity> = first.clone();
            for index in &dropped {
                if !now.is_empty() {
                    now.remove(index.index(now.len()));
                }
            }
            let late: Vec<Activity> = late.iter().map(record).collect();
            now.extend(late.iter().cloned());
            let now = tallies(&now);
            for record in &late {
                prop_assert!(!already_applied(Some(&stored), &now, slice_of(record.at)));
            }
        }
    }
}
