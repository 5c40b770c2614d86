//! The value a campaign run's stages pass along: what the run is about, what it has read so far,
//! and what it has counted.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use mapping::Settings;
use mapping::plan::{CampaignLink, CampaignPlan};
use mapping::statuses::ExistingStatus;

use super::{Mode, RunCounts};

/// One campaign's run, from the first read to the commit.
pub(crate) struct CampaignRun<'a> {
    /// The settings of this invocation.
    pub settings: &'a Settings,
    /// CM campaign ↔ SF Campaign (the name is filled in from the summary).
    pub link: CampaignLink,
    /// The scheduled run this campaign run belongs to.
    pub run_id: String,
    /// `<run id>:<cm campaign id>`: the run record's id.
    pub record_id: String,
    /// Dry run or apply.
    pub mode: Mode,
    /// The watermarks as the run read them (under its lease: no other run commits meanwhile).
    pub watermarks: BTreeMap<String, DateTime<Utc>>,
    /// Where each activity stream's watermark moves when the run commits.
    pub next_watermarks: BTreeMap<String, DateTime<Utc>>,
    /// The campaign's sent date, once looked up (it takes a paged listing of sent campaigns).
    pub sent_at: Option<Option<DateTime<Utc>>>,
    /// The sent date the cadence schedules the next sync by, read before the writes.
    pub cadence_sent_at: Option<DateTime<Utc>>,
    /// People an admin queued for another attempt (their [`mapping::email::person_key`]s).
    pub retried: Vec<String>,
    /// The CM summary, read first: its counts tell whether the streams hold anything new.
    pub summary: Option<campaign_monitor::types::Summary>,
    /// What the last committed sync saw and wrote.
    pub progress: state::CampaignProgress,
    /// What this run commits for the next one.
    pub next_progress: state::CampaignProgress,
    /// CM's clock when the run read the summary.
    pub cm_now: Option<DateTime<Utc>>,
    /// CM's counts grew since the last sync: the campaign is active.
    pub found_new: bool,
    /// The statistics this run writes, kept once Salesforce took them all.
    pub statistics_target: Option<mapping::probe::WrittenStatistics>,
    /// The campaign's member statuses, read before the first part that needs them.
    pub statuses: Option<Vec<ExistingStatus>>,
    /// Parts to plan.
    pub part_count: usize,
    /// The next part is the first (statuses and statistics belong to it).
    pub first_part: bool,
    /// A part has been planned (the next may be planned before the first is written).
    pub planned_any: bool,
    /// Everything planned (a many-part apply keeps what an admin reads, not member rows).
    pub total: CampaignPlan,
    /// Counters.
    pub counts: RunCounts,
    /// A failure not tied to one person was transient: keep the watermarks so the work is
    /// read again.
    pub transient_failures: bool,
    /// People whose writes failed with a transient error (their person keys).
    pub transient_people: BTreeSet<String>,
    /// The recipients' read was cut: the page it would have read next.
    pub recipients_to_page: Option<i64>,
    /// Parts applied so far (by this invocation and those before it).
    pub parts_done: u32,
    /// What an earlier invocation of this run handed over.
    pub resumed: Option<state::RunCheckpoint>,
    /// The campaign's lease, held by this invocation (none for a dry run): the commit is
    /// conditional on it.
    pub lease: Option<state::Lease>,
}

impl<'a> CampaignRun<'a> {
    pub fn new(settings: &'a Settings, link: &state::LinkRecord, run_id: &str, mode: Mode) -> CampaignRun<'a> {
        let link = CampaignLink {
            cm_campaign_id: link.cm_campaign_id.clone(),
            sf_campaign_id: link.sf_campaign_id.clone(),
            name: String::new(),
        };
        CampaignRun {
            settings,
            record_id: format!("{run_id}:{}", link.cm_campaign_id),
            run_id: run_id.to_owned(),
            total: CampaignPlan {
                link: link.clone(),
                ..CampaignPlan::default()
            },
            link,
            mode,
            watermarks: BTreeMap::new(),
            next_watermarks: BTreeMap::new(),
            sent_at: None,
            cadence_sent_at: None,
            retried: Vec::new(),
            summary: None,
            progress: state::CampaignProgress::default(),
            next_progress: state::CampaignProgress::default(),
            statistics_target: None,
            cm_now: None,
            found_new: false,
            statuses: None,
            part_count: 0,
            first_part: true,
            planned_any: false,
            counts: RunCounts::default(),
            transient_failures: false,
            transient_people: BTreeSet::new(),
            recipients_to_page: None,
            parts_done: 0,
            resumed: None,
            lease: None,
        }
    }

    /// What an earlier invocation fixed for this run: the parts and where the watermarks go
    /// (none if it handed over before it had read everything).
    pub fn fixed_by_hand_over(&self) -> Option<&state::RunCheckpoint> {
        self.resumed.as_ref().filter(|c| c.part_count > 0)
    }

    /// What this invocation hands over: the parts done, and how often in a row none was.
    pub fn checkpoint(&self) -> state::RunCheckpoint {
        let before = self.resumed.as_ref();
        let progressed = self.parts_done > before.map_or(0, |c| c.parts_done);
        let read_whole = self.part_count > 0;
        state::RunCheckpoint {
            watermarks: if read_whole {
                self.next_watermarks.clone()
            } else {
                before.map(|c| c.watermarks.clone()).unwrap_or_default()
            },
            part_count: if read_whole {
                self.part_count as u32
            } else {
                before.map_or(0, |c| c.part_count)
            },
            parts_done: self.parts_done,
            counts: self.counts.to_map(),
            transient_people: self.transient_people.iter().cloned().collect(),
            transient_other: self.transient_failures,
            stalled: if progressed {
                0
            } else {
                before.map_or(0, |c| c.stalled) + 1
            },
            recipients_to_page: if read_whole {
                self.recipients_to_page
            } else {
                before.and_then(|c| c.recipients_to_page)
            },
        }
    }

    /// The CM campaign id.
    pub fn cm_id(&self) -> &str {
        &self.link.cm_campaign_id
    }

    /// Counts a part's plan and keeps it in the total.
    pub fn count_planned(&mut self, plan: &CampaignPlan) {
        self.counts.members_to_add += plan.members_to_add.len() as u64;
        self.counts.recipients_not_added += plan.recipients_not_added as u64;
        self.counts.member_updates += plan.member_updates.len() as u64;
        self.counts.skipped += plan.skips.len() as u64;
        self.counts.match_choices += plan.choices.len() as u64;
        self.counts.hand_set_statuses_kept += plan.hand_set_statuses_kept as u64;
    }

    /// A dry run's part: nothing is applied, so every part plans the same statuses: keep the
    /// first part's.
    pub fn absorb_planned(&mut self, plan: CampaignPlan) {
        self.total.absorb(plan, self.first_part);
        self.first_part = false;
    }
}
