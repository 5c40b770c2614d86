//! Campaign member statuses (PRODUCT.md §3.5): before member updates are written, every mapped
//! label must exist on the campaign with the mapped responded flag.
//!
//! Labels match as Salesforce compares text: ignoring case, so a campaign whose admin typed
//! `clicked` already has the mapped `Clicked` (Salesforce would refuse a second one as a
//! duplicate), and members are written with the org's own spelling ([`Spelling`]). Salesforce
//! gives every new campaign two stock statuses in the org's own language (one default, one
//! responded); they are recognised by their flags, never by their text, and are never renamed
//! or deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// A `CampaignMemberStatus` row as read from SF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingStatus {
    /// Record Id.
    pub id: String,
    /// `Label`.
    pub label: String,
    /// `HasResponded`.
    pub has_responded: bool,
    /// `IsDefault`.
    pub is_default: bool,
    /// `SortOrder`.
    pub sort_order: i32,
}

/// A status to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusToCreate {
    /// `Label`.
    pub label: String,
    /// `HasResponded`.
    pub has_responded: bool,
    /// `SortOrder`, unique within the campaign.
    pub sort_order: i32,
}

/// An existing status whose responded flag disagrees with the mapping, to be corrected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCorrection {
    /// Record Id.
    pub id: String,
    /// `Label` (for reports).
    pub label: String,
    /// The `HasResponded` value to set.
    pub has_responded: bool,
}

/// Why a mapped label cannot be used as-is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StatusProblem {
    /// The label does not exist and `auto_create_missing_statuses` is off: updates to it are
    /// skipped.
    Missing {
        /// The label.
        label: String,
    },
    /// The label exists with the other responded flag and auto-correction is off (the label is
    /// still used; the campaign's response counts will follow SF's flag).
    RespondedMismatch {
        /// The label.
        label: String,
        /// The flag in SF.
        in_salesforce: bool,
        /// The flag the mapping wants.
        mapped: bool,
    },
    /// Correcting this flag would leave the campaign without a responded status, which
    /// Salesforce forbids; it is left as it is.
    LastRespondedStatus {
        /// The label.
        label: String,
    },
}

/// What to do to one campaign's statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPlan {
    /// Statuses to create.
    pub create: Vec<StatusToCreate>,
    /// Statuses whose responded flag to correct.
    pub correct: Vec<StatusCorrection>,
    /// Problems to report.
    pub problems: Vec<StatusProblem>,
    /// Mapped labels the campaign has in another case.
    #[serde(default, skip_serializing_if = "is_default")]
    pub spelling: Spelling,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl StatusPlan {
    /// Whether members may be given `label` once this plan is applied.
    pub fn is_usable(&self, label: &str) -> bool {
        !self
            .problems
            .iter()
            .any(|p| matches!(p, StatusProblem::Missing { label: l } if l == label))
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.correct.is_empty()
    }
}

/// Whether two status labels are the same to Salesforce, which compares text ignoring case
/// (Unicode lower case: the locale rules of a few languages, such as Turkish dotted i, aside).
pub fn same_label(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// How the campaign spells mapped labels it has in another case (`Clicked` → `clicked`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spelling {
    /// Mapped label → the campaign's.
    pub org_of: BTreeMap<String, String>,
}

impl Spelling {
    /// The label as the campaign spells it (what a member is written with).
    pub fn to_org(&self, mapped: &str) -> String {
        self.org_of.get(mapped).cloned().unwrap_or_else(|| mapped.to_owned())
    }

    /// A member's Status as the mapping spells it (what the rules compare).
    pub fn to_mapped(&self, org: &str) -> String {
        self.org_of
            .iter()
            .find(|(_, spelled)| spelled.as_str() == org)
            .map_or_else(|| org.to_owned(), |(mapped, _)| mapped.clone())
    }
}

/// Plans the statuses of one campaign (§3.5).
pub fn plan_statuses(existing: &[ExistingStatus], settings: &Settings) -> StatusPlan {
    let mut plan = StatusPlan::default();
    let by_label: BTreeMap<String, &ExistingStatus> = existing.iter().map(|s| (s.label.to_lowercase(), s)).collect();
    let mut next_sort_order = existing
        .iter()
        .map(|s| s.sort_order)
        .max()
        .unwrap_or(0)
        .saturating_add(1);

    for (label, responded) in settings.mapped_labels() {
        let found = by_label.get(&label.to_lowercase());
        if let Some(status) = found.filter(|status| status.label != label) {
            plan.spelling.org_of.insert(label.clone(), status.label.clone());
        }
        match found {
            None if settings.auto_create_missing_statuses => {
                plan.create.push(StatusToCreate {
                    label,
                    has_responded: responded,
                    sort_order: next_sort_order,
                });
                next_sort_order = next_sort_order.saturating_add(1);
            }
            None => plan.problems.push(StatusProblem::Missing { label }),
            Some(status) if status.has_responded != responded => {
                if settings.auto_create_missing_statuses {
                    plan.correct.push(StatusCorrection {
                        id: status.id.clone(),
                        label,
                        has_responded: responded,
                    });
                } else {
                    plan.problems.push(StatusProblem::RespondedMismatch {
                        label,
                        in_salesforce: status.has_responded,
                        mapped: responded,
                    });
                }
            }
            Some(_) => {}
        }
    }

    // Salesforce requires at least one responded status per campaign. If the corrections would
    // remove the last one, keep the stock one(s) as they are.
    let responded_after = existing
        .iter()
        .filter(|s| {
            plan.correct
                .iter()
                .find(|c| c.id == s.id)
                .map_or(s.has_responded, |c| c.has_responded)
        })
        .count()
        + plan.create.iter().filter(|c| c.has_responded).count();
    if responded_after == 0 {
        let (kept, corrections): (Vec<_>, Vec<_>) = plan.correct.into_iter().partition(|c| !c.has_responded);
        plan.correct = corrections;
        plan.problems.extend(
            kept.into_iter()
                .map(|c| StatusProblem::LastRespondedStatus { label: c.label }),
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::ActivityKind;
    use crate::settings::StatusMappingEntry;

    fn settings() -> Settings {
        Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC)
    }

    fn status(id: &str, label: &str, responded: bool, default: bool, order: i32) -> ExistingStatus {
        ExistingStatus {
            id: id.into(),
            label: label.into(),
            has_responded: responded,
            is_default: default,
            sort_order: order,
        }
    }

    /// What Salesforce gives a new campaign in a Japanese org.
    fn japanese_stock() -> Vec<ExistingStatus> {
        vec![
            status("01Y1", "送信", false, true, 1),
            status("01Y2", "レスポンスあり", true, false, 2),
        ]
    }

    #[test]
    fn a_new_campaign_gets_every_mapped_label_with_unique_sort_orders() {
        let plan = plan_statuses(&japanese_stock(), &settings());
        let created: Vec<(&str, bool, i32)> = plan
            .create
            .iter()
            .map(|c| (c.label.as_str(), c.has_responded, c.sort_order))
            .collect();
        assert_eq!(
            created,
            [
                ("Sent", false, 3),
                ("Bounced", false, 4),
                ("Opened", true, 5),
                ("Clicked", true, 6),
                ("Unsubscribed", false, 7),
                ("Marked as Spam", false, 8)
            ]
        );
        assert!(plan.correct.is_empty() && plan.problems.is_empty());
    }

    #[test]
    fn existing_labels_are_matched_ignoring_case_and_flags_corrected() {
        let existing = vec![
            status("01Y1", "Sent", false, true, 1),
            status("01Y2", "Responded", true, false, 2),
            status("01Y3", "Opened", false, false, 3), // wrong flag
            status("01Y4", "clicked", true, false, 4), // the same label to Salesforce
        ];
        let plan = plan_statuses(&existing, &settings());
        assert_eq!(
            plan.correct,
            vec![StatusCorrection {
                id: "01Y3".into(),
                label: "Opened".into(),
                has_responded: true
            }]
        );
        let created: Vec<(&str, i32)> = plan.create.iter().map(|c| (c.label.as_str(), c.sort_order)).collect();
        assert_eq!(created, [("Bounced", 5), ("Unsubscribed", 6), ("Marked as Spam", 7)]);
        assert!(!plan.create.iter().any(|c| c.label == "Sent"));
        assert_eq!(
            plan.spelling.to_org("Clicked"),
            "clicked",
            "members are written as the org spells it"
        );
        assert_eq!(plan.spelling.to_mapped("clicked"), "Clicked");
        assert_eq!(plan.spelling.to_org("Opened"), "Opened");
    }

    #[test]
    fn with_auto_create_off_missing_labels_are_reported_and_unusable() {
        let mut s = settings();
        s.auto_create_missing_statuses = false;
        let existing = vec![
            status("01Y1", "Sent", false, true, 1),
            status("01Y3", "Opened", false, false, 3),
        ];
        let plan = plan_statuses(&existing, &s);
        assert!(plan.is_empty());
        assert!(!plan.is_usable("Clicked"));
        assert!(plan.is_usable("Opened"));
        assert!(plan.problems.contains(&StatusProblem::RespondedMismatch {
            label: "Opened".into(),
            in_salesforce: false,
            mapped: true
        }));
    }

    #[test]
    fn the_last_responded_status_is_never_switched_off() {
        let mut s = settings();
        s.status_mapping = vec![StatusMappingEntry {
            activity: ActivityKind::Opened,
            status: "Responded".into(),
            responded: false,
        }];
        let plan = plan_statuses(
            &[
                status("01Y1", "Sent", false, true, 1),
                status("01Y2", "Responded", true, false, 2),
            ],
            &s,
        );
        assert!(plan.correct.is_empty());
        assert_eq!(
            plan.problems,
            vec![StatusProblem::LastRespondedStatus {
                label: "Responded".into()
            }]
        );
    }

    #[test]
    fn a_complete_campaign_needs_nothing() {
        let mut existing = vec![status("01Y1", "送信", false, true, 1)];
        for (i, (label, responded)) in settings().mapped_labels().into_iter().enumerate() {
            existing.push(status(&format!("01Z{i}"), &label, responded, false, 10 + i as i32));
        }
        assert_eq!(plan_statuses(&existing, &settings()), StatusPlan::default());
    }
}
