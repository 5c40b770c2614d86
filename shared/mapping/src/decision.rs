//! Member status refresh (PRODUCT.md §3.3): from a member's current state and a batch of new
//! activity, the member's next state and the reason.
//!
//! Three rules meet here:
//! - **Activity Date guard** ([`activity_date_guard`]): an activity may change anything only if
//!   the member's Activity Date is empty or earlier, or equal with a kind that ranks higher than
//!   the kind kept beside the date. Late or replayed activity never overwrites a newer state.
//! - **Order independence**: activities are applied in (date, rank) order, so the result does not
//!   depend on the order or page boundaries they arrive in.
//! - **"Sent" is a starting status** in every mode: it sets the Status of a member the sync adds
//!   or of one still in a starting status (the campaign's default, or the mapped "Sent" label),
//!   and never replaces any other Status, so a rep's hand-set status survives a first sync.
//! - **The refresh mode** (`status_refresh`): `never`, `always`, `once_only`, `forward_only`.
//!   `once_only` takes the earliest interaction, ties broken by rank like the rest; the moment it
//!   used its single update is kept on the member, so an interaction at that same moment that
//!   ranks higher refines it whether it arrives in the same sync or a later one.
//!   `forward_only` only climbs `status_rank`; a Status the mapping does not name (set by hand,
//!   or by another process) ranks above every mapped activity, unless it is a starting status.
//!
//! The Activity Date and its kind advance to the newest activity that passes the guard whatever
//! the mode. Activities with no mapping are ignored entirely: they change no status and do not
//! move the Activity Date (so they cannot block a mapped activity through the guard).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::{ActivityKind, Occurrence};
use crate::settings::{Settings, StatusRank, StatusRefresh};

/// The per-member state the rules read and write, kept on the SF CampaignMember
/// (`Status` and the three `member_fields`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberState {
    /// `CampaignMember.Status`.
    pub status: String,
    /// The Activity Date: time of the latest activity applied.
    pub activity_date: Option<DateTime<Utc>>,
    /// The kind of that activity (tie-break for equal dates).
    pub activity_kind: Option<ActivityKind>,
    /// `once_only`: the date of the interaction that used the single update (`None`: unused).
    pub once_only_at: Option<DateTime<Utc>>,
    /// The engagement detail fields the settings name (the rest stay `None`).
    #[serde(default)]
    pub detail: crate::engagement::EngagementDetail,
}

impl MemberState {
    /// The state of a member about to be added, in the given starting status.
    pub fn new_member(status: impl Into<String>) -> MemberState {
        MemberState {
            status: status.into(),
            activity_date: None,
            activity_kind: None,
            once_only_at: None,
            detail: Default::default(),
        }
    }

    /// `once_only` has used its single update.
    pub fn once_only_used(&self) -> bool {
        self.once_only_at.is_some()
    }
}

/// Why the Status was left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StatusKept {
    /// `status_refresh` is `never`.
    RefreshNever,
    /// `once_only` has already made its one update for this member.
    OnceOnlyUsed,
    /// `forward_only`: the activity ranks no higher than the current Status.
    NotHigherRank,
    /// `forward_only`: the Status is one the mapping does not name (set by hand, or by another
    /// process); it ranks above every mapped activity.
    UnmappedStatus,
    /// "Sent" sets only a starting status (a new member's, or the campaign's default); the
    /// member's Status is another one (set by hand, or by an interaction).
    NotAStartingStatus,
    /// The member already has the label the activity maps to.
    AlreadyInStatus,
    /// Every activity was dated before the Activity Date (or equal with a kind ranked no higher).
    GuardRefused {
        /// The member's Activity Date that refused them.
        activity_date: Option<DateTime<Utc>>,
    },
    /// None of the activities is mapped to a status.
    NoMappedActivity,
}

/// The reason attached to a member decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DecisionReason {
    /// The Status changed; this is the activity that set the final value.
    StatusChanged {
        /// The activity kind.
        by: ActivityKind,
        /// Its time.
        at: DateTime<Utc>,
    },
    /// The Status did not change.
    StatusKept {
        /// Why.
        why: StatusKept,
    },
}

/// The outcome for one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDecision {
    /// The state before.
    pub before: MemberState,
    /// The state after; equal to `before` when nothing needs writing.
    pub after: MemberState,
    /// Why the Status is what it is.
    pub reason: DecisionReason,
    /// Mapped activities that passed the guard.
    pub applied: usize,
    /// Mapped activities the guard refused.
    pub refused_by_guard: usize,
    /// Activities ignored because their kind has no mapping.
    pub unmapped: usize,
}

impl MemberDecision {
    /// Something on the member must be written.
    pub fn needs_write(&self) -> bool {
        self.before != self.after
    }

    /// The Status itself changes.
    pub fn status_changed(&self) -> bool {
        self.before.status != self.after.status
    }
}

/// The Activity Date guard: may an activity at `at` of `kind` change a member whose Activity
/// Date is `date` with kept kind `kept`?
///
/// Passes when the date is empty or earlier, or equal and `kind` ranks higher than `kept`
/// (CM dates are often whole minutes). An equal date with no kept kind (a date an admin set by
/// hand) does not pass: the seed's rule is "later than".
pub fn activity_date_guard(
    date: Option<DateTime<Utc>>,
    kept: Option<ActivityKind>,
    kind: ActivityKind,
    at: DateTime<Utc>,
    rank: &StatusRank,
) -> bool {
    match date {
        None => true,
        Some(date) if at > date => true,
        Some(date) if at == date => kept.is_some_and(|kept| rank.of(kind) > rank.of(kept)),
        Some(_) => false,
    }
}

/// Decides one member's next state from its current state and a batch of its activities, for a
/// campaign whose default status is the mapped "Sent" label (the stock campaign). See
/// [`decide_member_in`].
pub fn decide_member(current: &MemberState, activities: &[Occurrence], settings: &Settings) -> MemberDecision {
    decide_member_in(current, activities, settings, None)
}

/// Whether a Status is a starting status: empty, the campaign's default (`default_status`), or
/// the label "Sent" maps to. Only a starting status is set by "Sent"; in `forward_only` an
/// unmapped starting status ranks below every activity.
pub fn is_starting_status(status: &str, default_status: Option<&str>, settings: &Settings) -> bool {
    status.is_empty() || Some(status) == default_status || Some(status) == settings.label_for(ActivityKind::Sent)
}

/// Decides one member's next state from its current state and a batch of its activities, in a
/// campaign whose default member status is `default_status` (found by `IsDefault`, whatever its
/// label in the org's language).
pub fn decide_member_in(
    current: &MemberState,
    activities: &[Occurrence],
    settings: &Settings,
    default_status: Option<&str>,
) -> MemberDecision {
    let rank = settings.rank();
    let mut ordered: Vec<Occurrence> = activities
        .iter()
        .filter(|o| settings.label_for(o.kind).is_some())
        .copied()
        .collect();
    let unmapped = activities.len() - ordered.len();
    ordered.sort_by_key(|o| (o.at, rank.of(o.kind)));
    ordered.dedup();

    let mut state = current.clone();
    let mut status_rank = settings.rank_of_label(&state.status);
    let mut last_change: Option<Occurrence> = None;
    let mut last_kept: Option<StatusKept> = None;
    let (mut applied, mut refused) = (0, 0);

    for occurrence in &ordered {
        if !activity_date_guard(
            state.activity_date,
            state.activity_kind,
            occurrence.kind,
            occurrence.at,
            &rank,
        ) {
            refused += 1;
            continue;
        }
        applied += 1;
        state.activity_date = Some(occurrence.at);
        state.activity_kind = Some(occurrence.kind);
        let Some(label) = settings.label_for(occurrence.kind) else {
            continue;
        };

        let starting = is_starting_status(&state.status, default_status, settings);
        let allowed = match settings.status_refresh {
            StatusRefresh::Never => Err(StatusKept::RefreshNever),
            _ if !occurrence.kind.is_interaction() => {
                if starting {
                    Ok(())
                } else {
                    Err(StatusKept::NotAStartingStatus)
                }
            }
            StatusRefresh::Always => Ok(()),
            // The guard passed, so an interaction at the moment that used the single update
            // ranks higher than it: it refines the choice, in this sync or a later one.
            StatusRefresh::OnceOnly => match state.once_only_at {
                Some(moment) if moment != occurrence.at => Err(StatusKept::OnceOnlyUsed),
                _ => {
                    state.once_only_at = Some(occurrence.at);
                    Ok(())
                }
            },
            StatusRefresh::ForwardOnly => match status_rank {
                Some(current) if rank.of(occurrence.kind) <= current => Err(StatusKept::NotHigherRank),
                None if !starting => Err(StatusKept::UnmappedStatus),
                _ => Ok(()),
            },
        };
        match allowed {
            Ok(()) if state.status != label => {
                state.status = label.to_owned();
                status_rank = settings.rank_of_label(label);
                last_change = Some(*occurrence);
                last_kept = None;
            }
            Ok(()) => last_kept = Some(StatusKept::AlreadyInStatus),
            Err(why) => last_kept = Some(why),
        }
    }

    let reason = match (last_change, last_kept) {
        _ if state.status == current.status && last_change.is_some() => {
            // Changed and changed back within the batch: nothing to report as a change.
            DecisionReason::StatusKept {
                why: StatusKept::AlreadyInStatus,
            }
        }
        (Some(change), _) => DecisionReason::StatusChanged {
            by: change.kind,
            at: change.at,
        },
        (None, Some(why)) => DecisionReason::StatusKept { why },
        (None, None) if refused > 0 => DecisionReason::StatusKept {
            why: StatusKept::GuardRefused {
                activity_date: current.activity_date,
            },
        },
        (None, None) => DecisionReason::StatusKept {
            why: StatusKept::NoMappedActivity,
        },
    };

    MemberDecision {
        before: current.clone(),
        after: state,
        reason,
        applied,
        refused_by_guard: refused,
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::StatusMappingEntry;
    use chrono::TimeZone;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 5, hour, minute, 0)
            .single()
            .unwrap_or_default()
    }

    fn settings(mode: StatusRefresh) -> Settings {
        let mut settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC);
        settings.status_refresh = mode;
        settings
    }

    fn kept(why: StatusKept) -> DecisionReason {
        DecisionReason::StatusKept { why }
    }

    fn occ(kind: ActivityKind, hour: u32, minute: u32) -> Occurrence {
        Occurrence {
            kind,
            at: at(hour, minute),
        }
    }

    #[test]
    fn a_click_and_an_open_in_the_same_minute_give_clicked_in_any_order() {
        let s = settings(StatusRefresh::Always);
        let start = MemberState::new_member("Sent");
        for batch in [
            [occ(ActivityKind::Opened, 10, 0), occ(ActivityKind::Clicked, 10, 0)],
            [occ(ActivityKind::Clicked, 10, 0), occ(ActivityKind::Opened, 10, 0)],
        ] {
            let decision = decide_member(&start, &batch, &s);
            assert_eq!(decision.after.status, "Clicked");
            assert_eq!(decision.after.activity_kind, Some(ActivityKind::Clicked));
        }
    }

    #[test]
    fn same_minute_activity_split_over_two_syncs_gives_the_same_result() {
        let s = settings(StatusRefresh::Always);
        let start = MemberState::new_member("Sent");
        let click_first = decide_member(&start, &[occ(ActivityKind::Clicked, 10, 0)], &s);
        let then_open = decide_member(&click_first.after, &[occ(ActivityKind::Opened, 10, 0)], &s);
        assert_eq!(then_open.after.status, "Clicked");
        assert!(!then_open.needs_write());
        assert_eq!(
            then_open.reason,
            kept(StatusKept::GuardRefused {
                activity_date: Some(at(10, 0))
            })
        );

        let open_first = decide_member(&start, &[occ(ActivityKind::Opened, 10, 0)], &s);
        let then_click = decide_member(&open_first.after, &[occ(ActivityKind::Clicked, 10, 0)], &s);
        assert_eq!(then_click.after, then_open.after);
    }

    #[test]
    fn late_activity_never_overwrites_a_newer_state() {
        let s = settings(StatusRefresh::Always);
        let current = MemberState {
            status: "Clicked".into(),
            activity_date: Some(at(12, 0)),
            activity_kind: Some(ActivityKind::Clicked),
            once_only_at: None,
            detail: Default::default(),
        };
        let decision = decide_member(&current, &[occ(ActivityKind::Opened, 11, 0)], &s);
        assert!(!decision.needs_write());
        assert_eq!(decision.refused_by_guard, 1);
    }

    #[test]
    fn a_hand_set_activity_date_refuses_equal_times() {
        let rank = StatusRank::default();
        assert!(!activity_date_guard(
            Some(at(9, 0)),
            None,
            ActivityKind::MarkedAsSpam,
            at(9, 0),
            &rank
        ));
        assert!(activity_date_guard(
            Some(at(9, 0)),
            None,
            ActivityKind::Sent,
            at(9, 1),
            &rank
        ));
        assert!(activity_date_guard(None, None, ActivityKind::Sent, at(0, 0), &rank));
        assert!(!activity_date_guard(
            Some(at(9, 0)),
            Some(ActivityKind::Clicked),
            ActivityKind::Opened,
            at(9, 0),
            &rank
        ));
    }

    #[test]
    fn unmapped_activity_changes_nothing() {
        let mut s = settings(StatusRefresh::Always);
        s.status_mapping.retain(|entry| entry.activity != ActivityKind::Bounced);
        let decision = decide_member(
            &MemberState::new_member("Sent"),
            &[occ(ActivityKind::Bounced, 9, 0)],
            &s,
        );
        assert!(!decision.needs_write());
        assert_eq!(decision.unmapped, 1);
        assert_eq!(decision.reason, kept(StatusKept::NoMappedActivity));
    }

    #[test]
    fn once_only_waits_for_an_interaction_and_then_locks() {
        let s = settings(StatusRefresh::OnceOnly);
        let sent = decide_member(&MemberState::new_member("Sent"), &[occ(ActivityKind::Sent, 8, 0)], &s);
        assert_eq!(sent.after.status, "Sent");
        assert!(!sent.after.once_only_used(), "Sent must not use up the one update");

        let bounced = decide_member(&sent.after, &[occ(ActivityKind::Bounced, 8, 1)], &s);
        assert_eq!(bounced.after.status, "Bounced");
        assert_eq!(bounced.after.once_only_at, Some(at(8, 1)));

        // An admin changes the status by hand; the sync leaves it alone from now on.
        let mut hand_set = bounced.after.clone();
        hand_set.status = "Registered".into();
        let later = decide_member(&hand_set, &[occ(ActivityKind::Clicked, 9, 0)], &s);
        assert_eq!(later.after.status, "Registered");
        assert_eq!(later.reason, kept(StatusKept::OnceOnlyUsed));
        assert_eq!(
            later.after.activity_date,
            Some(at(9, 0)),
            "the Activity Date still advances"
        );
    }

    #[test]
    fn once_only_takes_the_highest_ranked_of_the_earliest_interactions() {
        let s = settings(StatusRefresh::OnceOnly);
        let batch = [
            occ(ActivityKind::Clicked, 10, 0),
            occ(ActivityKind::Opened, 10, 0),
            occ(ActivityKind::Unsubscribed, 10, 1),
        ];
        let decision = decide_member(&MemberState::new_member("Sent"), &batch, &s);
        assert_eq!(decision.after.status, "Clicked");
        assert_eq!(decision.after.activity_date, Some(at(10, 1)));
        assert_eq!(decision.after.once_only_at, Some(at(10, 0)));
    }

    #[test]
    fn once_only_is_refined_by_a_higher_ranked_interaction_at_its_moment_in_a_later_sync() {
        let s = settings(StatusRefresh::OnceOnly);
        let open = decide_member(
            &MemberState::new_member("Sent"),
            &[occ(ActivityKind::Opened, 10, 0)],
            &s,
        );
        let click = decide_member(&open.after, &[occ(ActivityKind::Clicked, 10, 0)], &s);
        assert_eq!(click.after.status, "Clicked", "as if both had come in one sync");
        // Once the Activity Date moved past the moment, an equal-time click elsewhere does not.
        let later = decide_member(&open.after, &[occ(ActivityKind::Opened, 11, 0)], &s);
        let click_later = decide_member(&later.after, &[occ(ActivityKind::Clicked, 11, 0)], &s);
        assert_eq!(click_later.after.status, "Opened");
        assert_eq!(click_later.reason, kept(StatusKept::OnceOnlyUsed));
    }

    #[test]
    fn sent_sets_only_a_starting_status_in_every_mode() {
        for mode in [
            StatusRefresh::Always,
            StatusRefresh::OnceOnly,
            StatusRefresh::ForwardOnly,
        ] {
            let s = settings(mode);
            let hand_set = MemberState::new_member("Responded - Called");
            let decision = decide_member(&hand_set, &[occ(ActivityKind::Sent, 8, 0)], &s);
            assert_eq!(decision.after.status, "Responded - Called", "{mode:?}");
            assert_eq!(decision.reason, kept(StatusKept::NotAStartingStatus));
            assert_eq!(
                decision.after.activity_date,
                Some(at(8, 0)),
                "the Activity Date advances"
            );
            // The campaign's default (here in Japanese) is a starting status.
            let default = MemberState::new_member("送信");
            let decision = decide_member_in(&default, &[occ(ActivityKind::Sent, 8, 0)], &s, Some("送信"));
            assert_eq!(decision.after.status, "Sent", "{mode:?}");
            // An interaction's status is not.
            let opened = MemberState::new_member("Opened");
            let decision = decide_member(&opened, &[occ(ActivityKind::Sent, 8, 0)], &s);
            assert_eq!(decision.after.status, "Opened", "{mode:?}");
        }
    }

    #[test]
    fn forward_only_keeps_a_status_the_mapping_does_not_name() {
        let s = settings(StatusRefresh::ForwardOnly);
        let start = MemberState::new_member("Responded - Called");
        let decision = decide_member(&start, &[occ(ActivityKind::Clicked, 8, 0)], &s);
        assert_eq!(decision.after.status, "Responded - Called");
        assert_eq!(decision.reason, kept(StatusKept::UnmappedStatus));
        // The campaign's default ranks at the bottom instead.
        let default = MemberState::new_member("送信");
        let decision = decide_member_in(&default, &[occ(ActivityKind::Opened, 8, 0)], &s, Some("送信"));
        assert_eq!(decision.after.status, "Opened");
    }

    #[test]
    fn labels_shared_by_activities_rank_by_their_highest_activity() {
        let mut s = settings(StatusRefresh::ForwardOnly);
        s.status_mapping = vec![
            StatusMappingEntry {
                activity: ActivityKind::Opened,
                status: "Engaged".into(),
                responded: true,
            },
            StatusMappingEntry {
                activity: ActivityKind::Clicked,
                status: "Engaged".into(),
                responded: true,
            },
            StatusMappingEntry {
                activity: ActivityKind::Bounced,
                status: "Bounced".into(),
                responded: false,
            },
        ];
        let engaged = MemberState::new_member("Engaged");
        // Bounced ranks below Clicked, the highest activity behind "Engaged".
        let decision = decide_member(&engaged, &[occ(ActivityKind::Bounced, 9, 0)], &s);
        assert_eq!(decision.after.status, "Engaged");
        assert_eq!(decision.reason, kept(StatusKept::NotHigherRank));
    }

    #[test]
    fn replayed_batches_are_no_ops() {
        for mode in [
            StatusRefresh::Never,
            StatusRefresh::Always,
            StatusRefresh::OnceOnly,
            StatusRefresh::ForwardOnly,
        ] {
            let s = settings(mode);
            let batch = [
                occ(ActivityKind::Opened, 10, 0),
                occ(ActivityKind::Clicked, 10, 5),
                occ(ActivityKind::Opened, 10, 5),
            ];
            let first = decide_member(&MemberState::new_member("Sent"), &batch, &s);
            let replay = decide_member(&first.after, &batch, &s);
            assert!(!replay.needs_write(), "{mode:?}: a replay must write nothing");
        }
    }
}
