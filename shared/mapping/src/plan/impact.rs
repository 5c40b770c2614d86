//! What a campaign's plan would do, in the few numbers an admin compares when previewing a
//! settings change (the console shows one beside the other: current settings, proposed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CampaignPlan, SkipReason};
use crate::email::redact_email;

/// Examples of status changes kept per plan.
const EXAMPLES: usize = 3;

/// One plan, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanImpact {
    /// Members whose Status would change.
    pub status_updates: usize,
    /// Member statuses that would be created on the campaign.
    pub statuses_to_create: Vec<String>,
    /// Members that would be added.
    pub members_to_add: usize,
    /// Records skipped, by reason.
    pub skips: BTreeMap<String, usize>,
    /// A few status changes, the address redacted: `j***@example.com: Sent → Clicked`.
    pub examples: Vec<String>,
}

fn reason_words(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::UnmatchedEmail => "no Lead or Contact has the address",
        SkipReason::AmbiguousMatch { .. } => "several people match",
        SkipReason::NotAMember => "not a member (adding members is off)",
        SkipReason::GuardRefused { .. } => "Activity Date is newer",
        SkipReason::OnceOnlyUsed => "Once Only already used",
        SkipReason::StatusMissing { .. } => "status missing on the campaign",
        _ => "other",
    }
}

impl PlanImpact {
    /// The impact of `plan`.
    pub fn of(plan: &CampaignPlan) -> PlanImpact {
        let changes: Vec<_> = plan
            .member_updates
            .iter()
            .filter(|u| u.before.status != u.after.status)
            .collect();
        let mut skips = BTreeMap::new();
        for skip in &plan.skips {
            *skips.entry(reason_words(&skip.reason).to_owned()).or_insert(0) += 1;
        }
        PlanImpact {
            status_updates: changes.len(),
            statuses_to_create: plan.statuses.create.iter().map(|s| s.label.clone()).collect(),
            members_to_add: plan.members_to_add.len(),
            skips,
            examples: changes
                .iter()
                .take(EXAMPLES)
                .map(|u| format!("{}: {} → {}", redact_email(&u.email), u.before.status, u.after.status))
                .collect(),
        }
    }
}
