//! The counters of a campaign run, typed, serialised under the keys run records have always used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::salesforce_io::writes::WriteCounts;

/// What one campaign run read, planned and applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    /// 1 when CM's summary counts were as last seen: the activity streams were not read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unchanged_in_cm: u64,
    /// CM activity records read.
    pub activities: u64,
    /// CM activity records read again in the overlap and left out: their quarter-hour holds no
    /// record the last sync did not apply.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_applied: u64,
    /// Streams this run read in part (a read too long for one invocation): what it read is
    /// applied and the next run, requested at once, goes on from there.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streams_read_in_part: u64,
    /// CM activity rows that could not be read (skipped; listed in the run record).
    pub unreadable_rows: u64,
    /// Parts the campaign was planned in (more than one for a campaign too large for memory).
    #[serde(default, skip_serializing_if = "at_most_one")]
    pub parts: u64,
    /// Members the plan adds.
    pub members_to_add: u64,
    /// Matched recipients not added because they did not engage (`add_missing_members:
    /// engaged`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recipients_not_added: u64,
    /// Member updates planned.
    pub member_updates: u64,
    /// Records skipped, each with a reason.
    pub skipped: u64,
    /// Emails shared by several people, where `match_preference` chose one (listed in the run).
    pub match_choices: u64,
    /// Members whose hand-set Status (one the mapping does not name) the sync left as it is.
    pub hand_set_statuses_kept: u64,
    /// Member statuses created.
    pub statuses_created: u64,
    /// Member statuses whose responded flag was corrected.
    pub statuses_corrected: u64,
    /// Members added.
    pub members_added: u64,
    /// Members updated.
    pub members_updated: u64,
    /// Leads and Contacts updated (opt-outs, bounces).
    pub people_updated: u64,
    /// Statistics fields written.
    pub stats_written: u64,
    /// Per-record failures.
    pub failed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn at_most_one(n: &u64) -> bool {
    *n <= 1
}

impl RunCounts {
    /// Adds what the writer wrote for one part.
    pub(crate) fn add_written(&mut self, written: &WriteCounts) {
        self.statuses_created += written.statuses_created;
        self.statuses_corrected += written.statuses_corrected;
        self.members_added += written.members_added;
        self.members_updated += written.members_updated;
        self.people_updated += written.people_updated;
        self.stats_written += written.stats_written;
        self.failed += written.failed;
    }

    /// The counters as the run record stores them.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// The counters a run record (or a hand-over) stored.
    pub fn from_map(map: &BTreeMap<String, u64>) -> RunCounts {
        serde_json::to_value(map)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_the_keys_run_records_always_had() {
        let counts = RunCounts {
            activities: 3,
            members_added: 2,
            failed: 1,
            ..RunCounts::default()
        };
        let map = counts.to_map();
        assert_eq!(map["activities"], 3);
        assert_eq!(map["members_added"], 2);
        assert_eq!(map["failed"], 1);
        assert!(!map.contains_key("parts"), "one part is not worth a key");
        let parted = RunCounts { parts: 4, ..counts }.to_map();
        assert_eq!(parted["parts"], 4);
        assert_eq!(
            RunCounts::from_map(&parted).members_added,
            2,
            "a hand-over reads them back"
        );
    }
}
