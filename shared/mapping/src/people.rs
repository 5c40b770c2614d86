//! Unsubscribes and bounces onto the Lead/Contact (PRODUCT.md §3.7): `opt_out_policy` decides
//! `HasOptedOutOfEmail`, `record_bounces` decides `EmailBouncedDate` / `EmailBouncedReason`.
//! The same rules serve polled activity and webhook events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::settings::OptOutPolicy;

/// The standard Lead and Contact fields the opt-out and bounce rules write.
pub const PERSON_FIELDS_WRITTEN: [&str; 3] = ["HasOptedOutOfEmail", "EmailBouncedDate", "EmailBouncedReason"];

/// Salesforce's limit on `EmailBouncedReason`.
pub const MAX_BOUNCE_REASON_CHARS: usize = 255;

/// The bounce type given to a bounce CM's list shows (a list deactivation or the list
/// backstop): CM deactivates a subscriber as bounced only after hard bounces.
pub const LIST_BOUNCE_TYPE: &str = "Hard";

/// A CM subscriber's state on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriberState {
    /// Subscribed.
    Active,
    /// Awaiting confirmation (confirmed opt-in lists).
    Unconfirmed,
    /// Unsubscribed.
    Unsubscribed,
    /// Deactivated after bounces.
    Bounced,
    /// Deleted.
    Deleted,
}

/// The email fields of a Lead or Contact as read from SF.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonEmailState {
    /// `HasOptedOutOfEmail`.
    pub has_opted_out: bool,
    /// `EmailBouncedDate`.
    pub bounced_at: Option<DateTime<Utc>>,
}

/// Why an unsubscribe leaves `HasOptedOutOfEmail` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptOutKept {
    /// `opt_out_policy` is `never`.
    PolicyNever,
    /// `all_lists`: still subscribed to these configured lists.
    StillSubscribed {
        /// The lists.
        lists: Vec<String>,
    },
    /// Already opted out: nothing to write.
    AlreadyOptedOut,
}

/// What an unsubscribe does to the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum OptOutDecision {
    /// Set `HasOptedOutOfEmail = true`.
    OptOut,
    /// Leave it.
    Keep {
        /// Why.
        why: OptOutKept,
    },
}

/// Decides an unsubscribe. `other_lists` holds the person's state on the *other* configured
/// lists (the caller asks CM; with `any_list` or `never` it may pass nothing).
pub fn decide_opt_out(
    policy: OptOutPolicy,
    current: &PersonEmailState,
    other_lists: &[(String, SubscriberState)],
) -> OptOutDecision {
    let keep = |why| OptOutDecision::Keep { why };
    if policy == OptOutPolicy::Never {
        return keep(OptOutKept::PolicyNever);
    }
    if current.has_opted_out {
        return keep(OptOutKept::AlreadyOptedOut);
    }
    if policy == OptOutPolicy::AllLists {
        let still: Vec<String> = other_lists
            .iter()
            .filter(|(_, state)| matches!(state, SubscriberState::Active | SubscriberState::Unconfirmed))
            .map(|(list, _)| list.clone())
            .collect();
        if !still.is_empty() {
            return keep(OptOutKept::StillSubscribed { lists: still });
        }
    }
    OptOutDecision::OptOut
}

/// How serious a bounce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BounceSeverity {
    /// A hard bounce, or CM deactivated the subscriber as bounced (webhook `State: Bounced`).
    Hard,
    /// A soft bounce: transient (mailbox full, ...).
    Soft,
}

/// Why a bounce leaves the person alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKept {
    /// `record_bounces` is off.
    RecordingOff,
    /// Soft bounces are transient; marking the address bounced would stop a good address.
    SoftBounce,
    /// A bounce at the same time or later is recorded already.
    AlreadyRecorded,
}

/// What a bounce does to the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum BounceDecision {
    /// Set `EmailBouncedDate` and `EmailBouncedReason`.
    Record {
        /// The bounce time.
        at: DateTime<Utc>,
        /// The reason, cut to 255 characters.
        reason: String,
    },
    /// Leave it.
    Keep {
        /// Why.
        why: BounceKept,
    },
}

/// Decides a bounce.
pub fn decide_bounce(
    record_bounces: bool,
    severity: BounceSeverity,
    current: &PersonEmailState,
    at: DateTime<Utc>,
    reason: &str,
) -> BounceDecision {
    let keep = |why| BounceDecision::Keep { why };
    if !record_bounces {
        keep(BounceKept::RecordingOff)
    } else if severity == BounceSeverity::Soft {
        keep(BounceKept::SoftBounce)
    } else if current.bounced_at.is_some_and(|recorded| recorded >= at) {
        keep(BounceKept::AlreadyRecorded)
    } else {
        let reason = if reason.trim().is_empty() {
            "Bounced (Campaign Monitor)"
        } else {
            reason.trim()
        };
        BounceDecision::Record {
            at,
            reason: crate::text::neutralise_formula(reason)
                .chars()
                .take(MAX_BOUNCE_REASON_CHARS)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn lists(states: &[SubscriberState]) -> Vec<(String, SubscriberState)> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("list{i}"), *s))
            .collect()
    }

    #[test]
    fn all_lists_waits_until_no_list_is_left() {
        let fresh = PersonEmailState::default();
        assert_eq!(
            decide_opt_out(
                OptOutPolicy::AllLists,
                &fresh,
                &lists(&[SubscriberState::Unsubscribed, SubscriberState::Active])
            ),
            OptOutDecision::Keep {
                why: OptOutKept::StillSubscribed {
                    lists: vec!["list1".into()]
                }
            }
        );
        assert_eq!(
            decide_opt_out(
                OptOutPolicy::AllLists,
                &fresh,
                &lists(&[SubscriberState::Unsubscribed, SubscriberState::Deleted])
            ),
            OptOutDecision::OptOut
        );
        assert_eq!(
            decide_opt_out(OptOutPolicy::AllLists, &fresh, &[]),
            OptOutDecision::OptOut
        );
    }

    #[test]
    fn any_list_and_never_do_what_they_say() {
        let fresh = PersonEmailState::default();
        let elsewhere = lists(&[SubscriberState::Active]);
        assert_eq!(
            decide_opt_out(OptOutPolicy::AnyList, &fresh, &elsewhere),
            OptOutDecision::OptOut
        );
        assert_eq!(
            decide_opt_out(OptOutPolicy::Never, &fresh, &[]),
            OptOutDecision::Keep {
                why: OptOutKept::PolicyNever
            }
        );
        let opted = PersonEmailState {
            has_opted_out: true,
            bounced_at: None,
        };
        assert_eq!(
            decide_opt_out(OptOutPolicy::AnyList, &opted, &[]),
            OptOutDecision::Keep {
                why: OptOutKept::AlreadyOptedOut
            }
        );
    }

    #[test]
    fn hard_bounces_are_recorded_once() {
        let at = Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).single().unwrap_or_default();
        let fresh = PersonEmailState::default();
        assert_eq!(
            decide_bounce(
                true,
                BounceSeverity::Hard,
                &fresh,
                at,
                "Hard Bounce - Mailbox does not exist"
            ),
            BounceDecision::Record {
                at,
                reason: "Hard Bounce - Mailbox does not exist".into()
            }
        );
        let recorded = PersonEmailState {
            has_opted_out: false,
            bounced_at: Some(at),
        };
        assert_eq!(
            decide_bounce(true, BounceSeverity::Hard, &recorded, at, "x"),
            BounceDecision::Keep {
                why: BounceKept::AlreadyRecorded
            }
        );
        assert_eq!(
            decide_bounce(true, BounceSeverity::Soft, &fresh, at, "Soft Bounce - General"),
            BounceDecision::Keep {
                why: BounceKept::SoftBounce
            }
        );
        assert_eq!(
            decide_bounce(false, BounceSeverity::Hard, &fresh, at, "x"),
            BounceDecision::Keep {
                why: BounceKept::RecordingOff
            }
        );
        let BounceDecision::Record { reason, .. } =
            decide_bounce(true, BounceSeverity::Hard, &fresh, at, &"r".repeat(400))
        else {
            panic!("expected a record");
        };
        assert_eq!(reason.len(), MAX_BOUNCE_REASON_CHARS);
        let BounceDecision::Record { reason, .. } =
            decide_bounce(true, BounceSeverity::Hard, &fresh, at, "=cmd|' /C calc'!A0")
        else {
            panic!("expected a record");
        };
        assert_eq!(reason, "'=cmd|' /C calc'!A0", "inert in a spreadsheet");
    }
}
