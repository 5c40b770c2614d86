//! The sync plan (PRODUCT.md §5): everything a sync would change, each with its reason, and
//! everything it would skip, with its reason. Pure: computed from CM data, SF state, stored state
//! and settings; applying it is someone else's job. A dry run prints [`SyncPlan::report`].

mod build;
pub mod impact;
mod report;

pub use build::{plan_campaign, plan_discovery, plan_list_changes};
pub use report::{EmailDisplay, SF_STORAGE_KB_PER_RECORD};

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, ActivityDetail, ActivityKind, Occurrence};
use crate::autocreate::{
    DiscoveredCampaign, Eligibility, Ineligible, NewSfCampaign, auto_create_eligibility, render_campaign,
};
use crate::decision::{DecisionReason, MemberState, StatusKept, decide_member_in, is_starting_status};
use crate::email::redact_email;
use crate::matching::{MatchOutcome, PersonCandidate, PersonKind, match_person};
use crate::people::{
    BounceDecision, BounceKept, BounceSeverity, OptOutDecision, OptOutKept, PersonEmailState, SubscriberState,
    decide_bounce, decide_opt_out,
};
use crate::settings::{OptOutPolicy, Settings};
use crate::statistics::{CampaignSummary, StatisticsPlan, plan_statistics};
use crate::statuses::{ExistingStatus, StatusPlan, plan_statuses};

/// A CM campaign linked to an SF Campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignLink {
    /// CM CampaignID.
    pub cm_campaign_id: String,
    /// SF Campaign Id.
    pub sf_campaign_id: String,
    /// Display name.
    pub name: String,
}

/// An existing CampaignMember of the linked campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingMember {
    /// CampaignMember Id.
    pub member_id: String,
    /// The Lead or Contact Id.
    pub person_id: String,
    /// Status and the member fields.
    pub state: MemberState,
}

/// What the statistics rule needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticsInput {
    /// CM's summary.
    pub summary: CampaignSummary,
    /// Field → value as last written by us.
    pub last_written: BTreeMap<String, i64>,
    /// Writable Campaign fields in the org, if known.
    pub org_fields: Option<BTreeSet<String>>,
}

/// Everything one campaign's plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct CampaignSyncInput<'a> {
    /// The link.
    pub link: &'a CampaignLink,
    /// New activity since the watermarks (emails normalised).
    pub activities: &'a [Activity],
    /// SF Leads/Contacts by normalised email, for the emails with new activity.
    pub people: &'a BTreeMap<String, Vec<PersonCandidate>>,
    /// Existing members of the campaign by person Id, for those people.
    pub members: &'a BTreeMap<String, ExistingMember>,
    /// The campaign's member statuses.
    pub statuses: &'a [ExistingStatus],
    /// Statistics input, when statistics are synced this run.
    pub statistics: Option<&'a StatisticsInput>,
    /// Email fields of the people, by person Id.
    pub person_states: &'a BTreeMap<String, PersonEmailState>,
    /// For `all_lists`: each email's state on the other configured lists.
    pub other_lists: &'a BTreeMap<String, Vec<(String, SubscriberState)>>,
}

/// A list's own unsubscribes and bounces to plan (webhook deliveries, the list backstop).
#[derive(Debug, Clone, Copy)]
pub struct ListChangesInput<'a> {
    /// The events, as activities: `Unsubscribed` or `Bounced` (emails normalised).
    pub activities: &'a [Activity],
    /// SF Leads/Contacts by normalised email.
    pub people: &'a BTreeMap<String, Vec<PersonCandidate>>,
    /// Email fields of the people, by person Id.
    pub person_states: &'a BTreeMap<String, PersonEmailState>,
    /// For `all_lists`: each email's state on the other configured lists.
    pub other_lists: &'a BTreeMap<String, Vec<(String, SubscriberState)>>,
}

/// What a list's own events change on Leads and Contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChangesPlan {
    /// Opt-outs and bounces to write.
    pub person_updates: Vec<PersonUpdate>,
    /// What is kept, with why (an address nobody has; a person kept opted in).
    pub skips: Vec<Skip>,
}

/// A member to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberToAdd {
    /// The Lead or Contact.
    pub person_id: String,
    /// Lead or Contact.
    pub person_kind: PersonKind,
    /// The recipient's email.
    pub email: String,
    /// The state to create the member in.
    pub state: MemberState,
    /// Why it has that Status.
    pub reason: DecisionReason,
}

/// A member to update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUpdate {
    /// CampaignMember Id.
    pub member_id: String,
    /// The recipient's email.
    pub email: String,
    /// State before.
    pub before: MemberState,
    /// State to write.
    pub after: MemberState,
    /// Why.
    pub reason: DecisionReason,
}

/// A Lead/Contact email-field update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonUpdate {
    /// Lead or Contact Id.
    pub person_id: String,
    /// Lead or Contact.
    pub person_kind: PersonKind,
    /// The email.
    pub email: String,
    /// Set `HasOptedOutOfEmail = true`.
    pub opt_out: bool,
    /// Set `EmailBouncedDate` / `EmailBouncedReason`.
    pub bounce: Option<(DateTime<Utc>, String)>,
}

/// Why a record is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// No Lead or Contact has the email.
    UnmatchedEmail,
    /// Several people match and `match_preference` cannot choose.
    AmbiguousMatch {
        /// Their Ids.
        candidates: Vec<String>,
    },
    /// Matched, not a member, and `add_missing_members` is off.
    NotAMember,
    /// The Activity Date guard refused every activity.
    GuardRefused {
        /// The member's Activity Date.
        activity_date: Option<DateTime<Utc>>,
    },
    /// `once_only` has used its update for this member.
    OnceOnlyUsed,
    /// The Status the activity maps to is missing and may not be created.
    StatusMissing {
        /// The label.
        label: String,
    },
    /// An unsubscribe left the opt-out alone.
    OptOutKept {
        /// Why.
        why: OptOutKept,
    },
    /// A bounce was not recorded.
    BounceKept {
        /// Why.
        why: BounceKept,
    },
    /// A mapped Campaign field does not exist in the org.
    FieldMissing {
        /// The field.
        field: String,
    },
}

impl SkipReason {
    /// A short label for counts in reports.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::UnmatchedEmail => "unmatched email",
            SkipReason::AmbiguousMatch { .. } => "several matches",
            SkipReason::NotAMember => "not a member (adding is off)",
            SkipReason::GuardRefused { .. } => "guard refused (older than Activity Date)",
            SkipReason::OnceOnlyUsed => "once-only used",
            SkipReason::StatusMissing { .. } => "status missing",
            SkipReason::OptOutKept { .. } => "opt-out kept",
            SkipReason::BounceKept { .. } => "bounce not recorded",
            SkipReason::FieldMissing { .. } => "field missing in org",
        }
    }
}

/// One skipped record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The email or field concerned.
    pub subject: String,
    /// Why.
    pub reason: SkipReason,
}

/// Several Leads/Contacts have one email and `match_preference` chose one (§3.3): recorded so
/// an admin can find the duplicates to merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchChoice {
    /// The email.
    pub email: String,
    /// The person chosen.
    pub chosen: String,
    /// The others with the email.
    pub passed_over: Vec<String>,
}

impl MatchChoice {
    /// The sentence the run record and the report keep.
    pub fn describe(&self, preference: crate::settings::MatchPreference) -> String {
        let why = match preference {
            crate::settings::MatchPreference::MostRecentlyModified => "the most recently modified",
            crate::settings::MatchPreference::ContactFirst => "contact_first",
            crate::settings::MatchPreference::LeadFirst => "lead_first",
        };
        format!(
            "several people have this email: chose {} ({why}) over {}; merge the duplicates in Salesforce",
            self.chosen,
            self.passed_over.join(", ")
        )
    }
}

/// The plan for one linked campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignPlan {
    /// The campaign.
    pub link: CampaignLink,
    /// Statuses to create or correct first.
    pub statuses: StatusPlan,
    /// Members to add.
    pub members_to_add: Vec<MemberToAdd>,
    /// Members to update.
    pub member_updates: Vec<MemberUpdate>,
    /// Leads/Contacts to update.
    pub person_updates: Vec<PersonUpdate>,
    /// Statistics to write.
    pub statistics: StatisticsPlan,
    /// Everything skipped.
    pub skips: Vec<Skip>,
    /// Choices among several people with one email.
    #[serde(default)]
    pub choices: Vec<MatchChoice>,
    /// Members whose Status is one the mapping does not name (set by hand, or by another
    /// process) and that the sync leaves as it is.
    #[serde(default)]
    pub hand_set_statuses_kept: usize,
    /// Matched recipients not added because they did not engage (`add_missing_members:
    /// engaged`).
    #[serde(default)]
    pub recipients_not_added: usize,
}

impl CampaignPlan {
    /// Adds the plan of one part of a large campaign (its people are in no other part). The
    /// campaign-wide items, statuses and statistics, come from the first part.
    pub fn absorb(&mut self, part: CampaignPlan, first: bool) {
        if first {
            self.statuses = part.statuses;
            self.statistics = part.statistics;
        }
        self.members_to_add.extend(part.members_to_add);
        self.member_updates.extend(part.member_updates);
        self.person_updates.extend(part.person_updates);
        self.skips.extend(part.skips);
        self.choices.extend(part.choices);
        self.hand_set_statuses_kept += part.hand_set_statuses_kept;
        self.recipients_not_added += part.recipients_not_added;
    }

    /// The number of SF records this plan writes.
    pub fn write_count(&self) -> usize {
        self.statuses.create.len()
            + self.statuses.correct.len()
            + self.members_to_add.len()
            + self.member_updates.len()
            + self.person_updates.len()
            + usize::from(!self.statistics.writes.is_empty())
    }
}

/// An SF Campaign to create for a discovered CM campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignToCreate {
    /// The CM campaign.
    pub campaign: DiscoveredCampaign,
    /// The SF Campaign to upsert on the link field.
    pub sf_campaign: NewSfCampaign,
}

/// A discovered campaign left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignNotCreated {
    /// CM CampaignID.
    pub cm_campaign_id: String,
    /// Name.
    pub name: String,
    /// Why.
    pub why: Ineligible,
}

/// A whole sync's plan: discovery, then each linked campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlan {
    /// SF Campaigns to create and link.
    pub campaigns_to_create: Vec<CampaignToCreate>,
    /// Discovered campaigns not created (with why), except those already linked.
    pub campaigns_not_created: Vec<CampaignNotCreated>,
    /// The linked campaigns.
    pub campaigns: Vec<CampaignPlan>,
}
