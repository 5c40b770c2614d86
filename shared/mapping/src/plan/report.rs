//! The dry-run report: what a plan would change, in words an admin reads.

use std::fmt::Write as _;

use super::*;

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
            if campaign.hand_set_statuses_kept > 0 {
                let _ = writeln!(
                    out,
                    "    hand-set statuses left as they are: {} (statuses the mapping does not name)",
                    campaign.hand_set_statuses_kept
                );
            }
            if !campaign.choices.is_empty() {
                let _ = writeln!(
                    out,
                    "    emails shared by several people: {} (one chosen by match_preference; `cm-sf-admin run` lists them)",
                    campaign.choices.len()
                );
            }
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
                    "    members to add: {} ({}); about {} of Salesforce data storage",
                    campaign.members_to_add.len(),
                    count_by(campaign.members_to_add.iter().map(|m| m.state.status.as_str())),
                    storage(campaign.members_to_add.len())
                );
            }
            if campaign.recipients_not_added > 0 {
                let _ = writeln!(
                    out,
                    "    recipients not added (no engagement; add_missing_members: engaged): {}, about {} of storage saved",
                    campaign.recipients_not_added,
                    storage(campaign.recipients_not_added)
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

pub(super) fn needs_attention(reason: &SkipReason) -> bool {
    matches!(
        reason,
        SkipReason::UnmatchedEmail
            | SkipReason::AmbiguousMatch { .. }
            | SkipReason::StatusMissing { .. }
            | SkipReason::FieldMissing { .. }
    )
}

pub(super) fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> String {
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

pub(super) fn describe_ineligible(why: &Ineligible) -> String {
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
        Ineligible::NotConfigured => "not a campaign of a configured CM client".to_owned(),
    }
}

pub(super) fn describe_status_problem(problem: &crate::statuses::StatusProblem) -> String {
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

/// Salesforce counts about 2 KB of data storage per record, CampaignMembers included ("Data and
/// File Storage Allocations", Salesforce Help).
pub const SF_STORAGE_KB_PER_RECORD: f64 = 2.0;

/// About how much Salesforce data storage `members` CampaignMembers take.
fn storage(members: usize) -> String {
    let kb = members as f64 * SF_STORAGE_KB_PER_RECORD;
    if kb >= 1024.0 * 1024.0 {
        format!("{:.1} GB", kb / 1024.0 / 1024.0)
    } else if kb >= 1024.0 {
        format!("{:.1} MB", kb / 1024.0)
    } else {
        format!("{kb:.0} KB")
    }
}
