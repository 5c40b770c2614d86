//! What a sync with nothing new may skip (issue #20): CM's campaign summary counts every open,
//! click, bounce, unsubscribe and complaint, so while its counts stay as they were the activity
//! streams hold nothing new; and statistics already written need no Salesforce call.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::ActivityKind;
use crate::statistics::{CampaignStat, CampaignSummary};

/// How far every stream of a campaign has been read: the earliest watermark of its activity
/// streams; `None` while one of them (or the recipients) was never read.
pub fn read_up_to(watermarks: &BTreeMap<String, DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let mut earliest: Option<DateTime<Utc>> = None;
    for kind in ActivityKind::ALL {
        let at = *watermarks.get(kind.as_str())?;
        if kind.is_interaction() {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

/// The activity counts of a campaign summary as a sync last saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityProbe {
    /// Stat name → count.
    pub counts: BTreeMap<String, i64>,
    /// The first moment (CM's clock, in UTC) these counts were seen: every record they count
    /// is dated at or before it.
    pub seen_at: DateTime<Utc>,
}

fn activity_counts(summary: &CampaignSummary) -> BTreeMap<String, i64> {
    CampaignStat::ALL
        .iter()
        .filter(|stat| stat.counts_activity())
        .filter_map(|stat| summary.get(stat).map(|count| (stat.as_str().to_owned(), *count)))
        .collect()
}

/// However quiet a campaign, its streams are read at least this often: a safety net for what
/// the counts cannot show (a record dated ahead of CM's clock, as a client in another time
/// zone than `cm_timezone` can produce, is read once the watermarks pass its date).
pub const FULL_READ_AT_LEAST_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// Whether the activity streams can be skipped: the summary counts are those last seen, every
/// stream has been read up to the moment they were first seen (`read_up_to`: the earliest
/// watermark of the activity streams, `None` when one was never read), and that read is less
/// than [`FULL_READ_AT_LEAST_EVERY`] before `now`. Records counted but not read yet (the settle
/// lag) keep the streams read until they are; new records change the counts.
pub fn activity_unchanged(
    last: Option<&ActivityProbe>,
    summary: &CampaignSummary,
    read_up_to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    nothing_new_since(last, summary, read_up_to)
        && read_up_to.is_some_and(|read_up_to| now - read_up_to < FULL_READ_AT_LEAST_EVERY)
}

/// Whether a retired campaign's daily check finds nothing to sync: the summary counts are those
/// last seen and every stream has been read up to the moment they were first seen.
pub fn nothing_new_since(
    last: Option<&ActivityProbe>,
    summary: &CampaignSummary,
    read_up_to: Option<DateTime<Utc>>,
) -> bool {
    match (last, read_up_to) {
        (Some(last), Some(read_up_to)) => last.counts == activity_counts(summary) && read_up_to >= last.seen_at,
        _ => false,
    }
}

/// Whether the summary shows activity since `last` was seen (`false` when nothing was seen
/// before: a first sync is not "active again").
pub fn counts_changed(last: Option<&ActivityProbe>, summary: &CampaignSummary) -> bool {
    last.is_some_and(|last| last.counts != activity_counts(summary))
}

/// The probe to keep after reading the streams with `summary` seen at `cm_now`: unchanged
/// counts keep the moment they were first seen (else a campaign read every run would never
/// catch up with its own counts).
pub fn next_probe(last: Option<&ActivityProbe>, summary: &CampaignSummary, cm_now: DateTime<Utc>) -> ActivityProbe {
    let counts = activity_counts(summary);
    match last {
        Some(last) if last.counts == counts => last.clone(),
        _ => ActivityProbe {
            counts,
            seen_at: cm_now,
        },
    }
}

/// The statistics as written onto a Salesforce Campaign by the last sync that wrote them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenStatistics {
    /// The SF Campaign.
    pub sf_campaign_id: String,
    /// Field → value.
    pub values: BTreeMap<String, i64>,
}

/// Whether the statistics `target` (from [`crate::statistics::statistics_target`]) are what the
/// last sync wrote onto the same SF Campaign: then nothing is read or written. A change of
/// the mapping, the link or a value reads Salesforce and writes what differs.
pub fn statistics_unchanged(
    last: Option<&WrittenStatistics>,
    sf_campaign_id: &str,
    target: &BTreeMap<String, i64>,
) -> bool {
    last.is_some_and(|last| last.sf_campaign_id == sf_campaign_id && &last.values == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-20T10:{minute:02}:00Z"))
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn summary(opens: i64) -> CampaignSummary {
        CampaignSummary::from([
            (CampaignStat::Recipients, 1000),
            (CampaignStat::TotalOpened, opens),
            (CampaignStat::Clicks, 10),
            (CampaignStat::Forwards, 3),
        ])
    }

    #[test]
    fn streams_are_read_until_they_cover_the_moment_the_counts_were_seen() {
        let now = at(40);
        // First sync: nothing seen before.
        assert!(!activity_unchanged(None, &summary(5), Some(at(30)), now));
        let probe = next_probe(None, &summary(5), at(10));
        // Read up to 10:05 (CM's clock less the settle lag): records counted at 10:10 may be unread.
        assert!(!activity_unchanged(Some(&probe), &summary(5), Some(at(5)), now));
        // The next run read past 10:10 with the same counts: they are kept from 10:10 ...
        let kept = next_probe(Some(&probe), &summary(5), at(25));
        assert_eq!(kept.seen_at, at(10));
        // ... so the one after skips the streams.
        assert!(activity_unchanged(Some(&kept), &summary(5), Some(at(20)), now));
        assert!(!counts_changed(Some(&kept), &summary(5)) && !counts_changed(None, &summary(6)));
        assert!(counts_changed(Some(&kept), &summary(6)));
        // One new open reads them again; a stream never read reads them.
        assert!(!activity_unchanged(Some(&kept), &summary(6), Some(at(20)), now));
        assert!(!activity_unchanged(Some(&kept), &summary(5), None, now));
        // A day after the last read they are read whatever the counts say.
        let tomorrow = at(20) + FULL_READ_AT_LEAST_EVERY;
        assert!(!activity_unchanged(Some(&kept), &summary(5), Some(at(20)), tomorrow));
    }

    #[test]
    fn counts_that_do_not_come_from_activity_do_not_read_the_streams() {
        let probe = next_probe(None, &summary(5), at(0));
        let mut forwarded = summary(5);
        forwarded.insert(CampaignStat::Forwards, 4);
        assert!(activity_unchanged(Some(&probe), &forwarded, Some(at(5)), at(6)));
    }

    #[test]
    fn statistics_are_unchanged_only_on_the_same_campaign_with_the_same_values() {
        let values = BTreeMap::from([("CM_Clicks__c".to_owned(), 10)]);
        let last = WrittenStatistics {
            sf_campaign_id: "701A".into(),
            values: values.clone(),
        };
        assert!(statistics_unchanged(Some(&last), "701A", &values));
        assert!(!statistics_unchanged(Some(&last), "701B", &values));
        assert!(!statistics_unchanged(None, "701A", &values));
        let more = BTreeMap::from([("CM_Clicks__c".to_owned(), 11)]);
        assert!(!statistics_unchanged(Some(&last), "701A", &more));
    }
}
