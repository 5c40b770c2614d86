//! The sync plan (PRODUCT.md §5): everything a sync would change, each with its reason, and
//! everything it would skip, with its reason. Pure: computed from CM data, SF state, stored state
//! and settings; applying it is someone else's job. A dry run prints [`SyncPlan::report`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, ActivityDetail, ActivityKind, Occurrence};
use crate::autocreate::{
    DiscoveredCampaign, Eligibility, Ineligible, NewSfCampaign, auto_create_eligibility, render_campaign,
};
use crate::decision::{DecisionReason, MemberState, StatusKept, decide_member};
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

/// Plans discovery: which discovered campaigns get an SF Campaign (§3.2).
/// `links` maps CM campaign id → SF Campaign id for the campaigns already linked.
pub fn plan_discovery(
    discovered: &[DiscoveredCampaign],
    links: &BTreeMap<String, String>,
    settings: &Settings,
) -> (Vec<CampaignToCreate>, Vec<CampaignNotCreated>) {
    let mut create = Vec::new();
    let mut not_created = Vec::new();
    for campaign in discovered {
        match auto_create_eligibility(
            campaign,
            settings,
            links.get(&campaign.cm_campaign_id).map(String::as_str),
        ) {
            Eligibility::Eligible => create.push(CampaignToCreate {
                campaign: campaign.clone(),
                sf_campaign: render_campaign(campaign, &settings.campaign_template, &settings.campaign_link_field),
            }),
            Eligibility::Ineligible {
                why: Ineligible::AlreadyLinked { .. },
            } => {}
            Eligibility::Ineligible { why } => not_created.push(CampaignNotCreated {
                cm_campaign_id: campaign.cm_campaign_id.clone(),
                name: campaign.name.clone(),
                why,
            }),
        }
    }
    (create, not_created)
}

/// Plans one linked campaign: statuses (§3.5), statistics (§3.1), members (§3.6) with their
/// decisions (§3.3), and Lead/Contact opt-outs and bounces (§3.7).
pub fn plan_campaign(input: &CampaignSyncInput<'_>, settings: &Settings) -> CampaignPlan {
    // Statuses matter only for member writes: with no new activity there is nothing to prepare.
    let statuses = if input.activities.is_empty() {
        StatusPlan::default()
    } else {
        plan_statuses(input.statuses, settings)
    };
    let mut plan = CampaignPlan {
        link: input.link.clone(),
        statuses,
        members_to_add: Vec::new(),
        member_updates: Vec::new(),
        person_updates: Vec::new(),
        statistics: StatisticsPlan::default(),
        skips: Vec::new(),
    };

    if let Some(stats) = input.statistics {
        plan.statistics = plan_statistics(&stats.summary, &stats.last_written, settings, stats.org_fields.as_ref());
        for field in &plan.statistics.missing_fields {
            plan.skips.push(Skip {
                subject: field.clone(),
                reason: SkipReason::FieldMissing { field: field.clone() },
            });
        }
    }

    let mut by_email: BTreeMap<&str, Vec<&Activity>> = BTreeMap::new();
    for activity in input.activities {
        by_email.entry(activity.email.as_str()).or_default().push(activity);
    }

    // The status new members start in: the mapped "Sent" label, else the campaign's default.
    let default_label = input.statuses.iter().find(|s| s.is_default).map(|s| s.label.clone());
    let start_label = settings
        .label_for(ActivityKind::Sent)
        .filter(|label| plan.statuses.is_usable(label))
        .map(str::to_owned)
        .or(default_label);

    for (email, activities) in by_email {
        let candidates = input.people.get(email).map(Vec::as_slice).unwrap_or_default();
        let (person_id, person_kind) = match match_person(candidates, settings.match_preference) {
            MatchOutcome::Matched { id, kind } => (id, kind),
            MatchOutcome::Unmatched => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::UnmatchedEmail,
                });
                continue;
            }
            MatchOutcome::Ambiguous { candidates } => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::AmbiguousMatch { candidates },
                });
                continue;
            }
        };
        let occurrences: Vec<Occurrence> = activities.iter().map(|a| a.occurrence()).collect();
        plan_member(
            &mut plan,
            input,
            settings,
            email,
            &person_id,
            person_kind,
            &occurrences,
            start_label.as_deref(),
        );
        plan_person(&mut plan, input, settings, email, &person_id, person_kind, &activities);
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn plan_member(
    plan: &mut CampaignPlan,
    input: &CampaignSyncInput<'_>,
    settings: &Settings,
    email: &str,
    person_id: &str,
    person_kind: PersonKind,
    occurrences: &[Occurrence],
    start_label: Option<&str>,
) {
    let existing = input.members.get(person_id);
    let start = match (existing, start_label) {
        (Some(member), _) => member.state.clone(),
        (None, _) if !settings.add_missing_members => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::NotAMember,
            });
            return;
        }
        (None, Some(label)) => MemberState::new_member(label),
        (None, None) => {
            let label = settings.label_for(ActivityKind::Sent).unwrap_or("Sent").to_owned();
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::StatusMissing { label },
            });
            return;
        }
    };
    let decision = decide_member(&start, occurrences, settings);
    if !plan.statuses.is_usable(&decision.after.status) {
        let label = decision.after.status.clone();
        plan.skips.push(Skip {
            subject: email.to_owned(),
            reason: SkipReason::StatusMissing { label },
        });
        return;
    }
    match decision.reason {
        DecisionReason::StatusKept {
            why: StatusKept::GuardRefused { activity_date },
        } => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::GuardRefused { activity_date },
            });
        }
        DecisionReason::StatusKept {
            why: StatusKept::OnceOnlyUsed,
        } if !decision.needs_write() => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::OnceOnlyUsed,
            });
        }
        _ => {}
    }
    match existing {
        Some(member) if decision.needs_write() => plan.member_updates.push(MemberUpdate {
            member_id: member.member_id.clone(),
            email: email.to_owned(),
            before: decision.before,
            after: decision.after,
            reason: decision.reason,
        }),
        Some(_) => {}
        None => plan.members_to_add.push(MemberToAdd {
            person_id: person_id.to_owned(),
            person_kind,
            email: email.to_owned(),
            state: decision.after,
            reason: decision.reason,
        }),
    }
}

fn plan_person(
    plan: &mut CampaignPlan,
    input: &CampaignSyncInput<'_>,
    settings: &Settings,
    email: &str,
    person_id: &str,
    person_kind: PersonKind,
    activities: &[&Activity],
) {
    let current = input.person_states.get(person_id).cloned().unwrap_or_default();
    let mut update = PersonUpdate {
        person_id: person_id.to_owned(),
        person_kind,
        email: email.to_owned(),
        opt_out: false,
        bounce: None,
    };
    // A spam complaint is the strongest unsubscribe; CM deactivates the subscriber for both.
    if activities
        .iter()
        .any(|a| matches!(a.kind, ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam))
    {
        let other_lists = match settings.opt_out_policy {
            OptOutPolicy::AllLists => input.other_lists.get(email).map(Vec::as_slice).unwrap_or_default(),
            _ => &[],
        };
        match decide_opt_out(settings.opt_out_policy, &current, other_lists) {
            OptOutDecision::OptOut => update.opt_out = true,
            OptOutDecision::Keep {
                why: OptOutKept::AlreadyOptedOut,
            } => {}
            OptOutDecision::Keep { why } => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::OptOutKept { why },
                });
            }
        }
    }
    // The latest hard bounce counts.
    let latest_bounce = activities
        .iter()
        .filter(|a| a.kind == ActivityKind::Bounced)
        .max_by_key(|a| (severity(a) == BounceSeverity::Hard, a.at));
    if let Some(bounce) = latest_bounce {
        let reason = match &bounce.detail {
            ActivityDetail::Bounce { reason, .. } => reason.as_str(),
            _ => "",
        };
        match decide_bounce(settings.record_bounces, severity(bounce), &current, bounce.at, reason) {
            BounceDecision::Record { at, reason } => update.bounce = Some((at, reason)),
            BounceDecision::Keep {
                why: BounceKept::AlreadyRecorded,
            } => {}
            BounceDecision::Keep { why } => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::BounceKept { why },
                });
            }
        }
    }
    if update.opt_out || update.bounce.is_some() {
        plan.person_updates.push(update);
    }
}

fn severity(activity: &Activity) -> BounceSeverity {
    match &activity.detail {
        ActivityDetail::Bounce { bounce_type, .. } if bounce_type.eq_ignore_ascii_case("soft") => BounceSeverity::Soft,
        _ => BounceSeverity::Hard,
    }
}

/// How emails appear in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmailDisplay {
    /// `j***@example.com` (the default: reports end up in logs and tickets).
    #[default]
    Redacted,
    /// The whole address, for an admin fixing unmatched emails.
    Full,
}

impl SyncPlan {
    /// The plan as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Nothing would be written to SF.
    pub fn writes_nothing(&self) -> bool {
        self.campaigns_to_create.is_empty() && self.campaigns.iter().all(|c| c.write_count() == 0)
    }

    /// A short human-readable report: what a dry run shows.
    pub fn report(&self, emails: EmailDisplay) -> String {
        let show = |subject: &str| match emails {
            EmailDisplay::Redacted if subject.contains('@') => redact_email(subject),
            _ => subject.to_owned(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "Sync plan");
        if !self.campaigns_to_create.is_empty() || !self.campaigns_not_created.is_empty() {
            let _ = writeln!(out, "  Campaigns to create: {}", self.campaigns_to_create.len());
            for create in &self.campaigns_to_create {
                let _ = writeln!(
                    out,
                    "    + \"{}\" for CM campaign {}",
                    create.sf_campaign.name, create.campaign.cm_campaign_id
                );
            }
            for left in &self.campaigns_not_created {
                let _ = writeln!(
                    out,
                    "    - \"{}\" not created: {}",
                    left.name,
                    describe_ineligible(&left.why)
                );
            }
        }
        for campaign in &self.campaigns {
            let _ = writeln!(
                out,
                "  Campaign \"{}\" (CM {} → SF {})",
                campaign.link.name, campaign.link.cm_campaign_id, campaign.link.sf_campaign_id
            );
            if campaign.write_count() == 0 && campaign.skips.is_empty() {
                let _ = writeln!(out, "    nothing to change");
                continue;
            }
            for status in &campaign.statuses.create {
                let _ = writeln!(
                    out,
                    "    status + \"{}\" ({})",
                    status.label,
                    if status.has_responded {
                        "responded"
                    } else {
                        "not responded"
                    }
                );
            }
            for fix in &campaign.statuses.correct {
                let _ = writeln!(out, "    status ~ \"{}\" responded → {}", fix.label, fix.has_responded);
            }
            for write in &campaign.statistics.writes {
                let previous = write.previous.map_or("—".to_owned(), |v| v.to_string());
                let _ = writeln!(out, "    stat {} = {} (was {previous})", write.field, write.value);
            }
            if !campaign.members_to_add.is_empty() {
                let _ = writeln!(
                    out,
                    "    members to add: {} ({})",
                    campaign.members_to_add.len(),
                    count_by(campaign.members_to_add.iter().map(|m| m.state.status.as_str()))
                );
            }
            let status_changes: Vec<&MemberUpdate> = campaign
                .member_updates
                .iter()
                .filter(|u| u.before.status != u.after.status)
                .collect();
            if !campaign.member_updates.is_empty() {
                let _ = writeln!(
                    out,
                    "    members to update: {} ({} status changes: {}; {} Activity Date only)",
                    campaign.member_updates.len(),
                    status_changes.len(),
                    count_by(status_changes.iter().map(|u| u.after.status.as_str())),
                    campaign.member_updates.len() - status_changes.len()
                );
            }
            let opt_outs = campaign.person_updates.iter().filter(|p| p.opt_out).count();
            let bounces = campaign.person_updates.iter().filter(|p| p.bounce.is_some()).count();
            if opt_outs + bounces > 0 {
                let _ = writeln!(out, "    people: {opt_outs} opted out, {bounces} bounces recorded");
            }
            for problem in &campaign.statuses.problems {
                let _ = writeln!(out, "    ! {}", describe_status_problem(problem));
            }
            if !campaign.skips.is_empty() {
                let _ = writeln!(
                    out,
                    "    skipped: {} ({})",
                    campaign.skips.len(),
                    count_by(campaign.skips.iter().map(|s| s.reason.label()))
                );
                let attention: Vec<&Skip> = campaign.skips.iter().filter(|s| needs_attention(&s.reason)).collect();
                let with_email = attention.iter().filter(|s| s.subject.contains('@')).count();
                for skip in attention
                    .iter()
                    .filter(|s| emails == EmailDisplay::Full || !s.subject.contains('@'))
                    .take(20)
                {
                    let _ = writeln!(out, "      {}: {}", show(&skip.subject), skip.reason.label());
                }
                if emails == EmailDisplay::Redacted && with_email > 0 {
                    let _ = writeln!(
                        out,
                        "      ({with_email} addresses need attention; `cm-sf-admin sync --dry-run` lists them)"
                    );
                }
            }
        }
        out
    }
}

fn needs_attention(reason: &SkipReason) -> bool {
    matches!(
        reason,
        SkipReason::UnmatchedEmail
            | SkipReason::AmbiguousMatch { .. }
            | SkipReason::StatusMissing { .. }
            | SkipReason::FieldMissing { .. }
    )
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_ineligible(why: &Ineligible) -> String {
    match why {
        Ineligible::AutoCreateOff => "auto-create is off".to_owned(),
        Ineligible::AlreadyLinked { sf_campaign_id } => format!("already linked to {sf_campaign_id}"),
        Ineligible::CreatedBeforeEnabled { created, enabled_at } => format!(
            "created {} before auto-create was switched on ({}); use backfill",
            created.format("%Y-%m-%d %H:%M UTC"),
            enabled_at.format("%Y-%m-%d %H:%M UTC")
        ),
        Ineligible::OutsideWindow { created } => {
            format!("created {}, outside the window", created.format("%Y-%m-%d %H:%M UTC"))
        }
        Ineligible::NoDate => "CM gave no creation or sent date".to_owned(),
    }
}

fn describe_status_problem(problem: &crate::statuses::StatusProblem) -> String {
    use crate::statuses::StatusProblem;
    match problem {
        StatusProblem::Missing { label } => {
            format!("status \"{label}\" is missing and auto-create of statuses is off: members needing it are skipped")
        }
        StatusProblem::RespondedMismatch {
            label,
            in_salesforce,
            mapped,
        } => {
            format!("status \"{label}\" has responded={in_salesforce} in Salesforce, mapping says {mapped}")
        }
        StatusProblem::LastRespondedStatus { label } => {
            format!("status \"{label}\" kept responded: a campaign needs one responded status")
        }
    }
}
