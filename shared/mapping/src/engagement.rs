//! Engagement detail on the member (first and last opened, first and last clicked, the last
//! clicked URL, the bounce type): a few fields on the CampaignMember instead of a Salesforce row
//! per open or click. Each field is a minimum or a maximum over the member's activity, so
//! merging activity in is idempotent and order-independent, like the Status: re-reading,
//! replaying or splitting the activity across syncs ends in the same values.
//!
//! Only the fields the settings name are computed (an unnamed one stays `None`, is never read
//! or written, and so never makes a write).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, ActivityDetail, ActivityKind};
use crate::settings::MemberDetailFields;
use crate::text::neutralise_formula;

/// The longest text a shipped detail field holds (`CM_Last_Clicked_URL__c` is Text(255)); a
/// longer URL is cut, the same way at every merge, so the stored value compares equal.
pub const MAX_DETAIL_TEXT: usize = 255;

/// The engagement detail kept on one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngagementDetail {
    /// The earliest open.
    pub first_opened: Option<DateTime<Utc>>,
    /// The latest open.
    pub last_opened: Option<DateTime<Utc>>,
    /// The earliest click.
    pub first_clicked: Option<DateTime<Utc>>,
    /// The latest click.
    pub last_clicked: Option<DateTime<Utc>>,
    /// The URL of the latest click (of equal times, the greatest URL: a fixed choice).
    pub last_clicked_url: Option<String>,
    /// The most severe bounce type seen (`Hard` over `Soft` over anything else).
    pub bounce_type: Option<String>,
}

/// The detail fields, as the settings name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DetailField {
    /// `first_opened`.
    FirstOpened,
    /// `last_opened`.
    LastOpened,
    /// `first_clicked`.
    FirstClicked,
    /// `last_clicked`.
    LastClicked,
    /// `last_clicked_url`.
    LastClickedUrl,
    /// `bounce_type`.
    BounceType,
}

impl DetailField {
    /// Every detail field.
    pub const ALL: [DetailField; 6] = [
        DetailField::FirstOpened,
        DetailField::LastOpened,
        DetailField::FirstClicked,
        DetailField::LastClicked,
        DetailField::LastClickedUrl,
        DetailField::BounceType,
    ];

    /// The settings key (`member_fields.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            DetailField::FirstOpened => "first_opened",
            DetailField::LastOpened => "last_opened",
            DetailField::FirstClicked => "first_clicked",
            DetailField::LastClicked => "last_clicked",
            DetailField::LastClickedUrl => "last_clicked_url",
            DetailField::BounceType => "bounce_type",
        }
    }

    /// The field shipped in `infra/salesforce` for it.
    pub fn shipped_field(self) -> &'static str {
        match self {
            DetailField::FirstOpened => "CM_First_Opened__c",
            DetailField::LastOpened => "CM_Last_Opened__c",
            DetailField::FirstClicked => "CM_First_Clicked__c",
            DetailField::LastClicked => "CM_Last_Clicked__c",
            DetailField::LastClickedUrl => "CM_Last_Clicked_URL__c",
            DetailField::BounceType => "CM_Bounce_Type__c",
        }
    }

    /// A date (else text).
    pub fn is_date(self) -> bool {
        !matches!(self, DetailField::LastClickedUrl | DetailField::BounceType)
    }
}

/// A detail field's value, as written to Salesforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailValue {
    /// A Date/Time.
    Date(DateTime<Utc>),
    /// Text.
    Text(String),
}

impl EngagementDetail {
    /// The value of one field.
    pub fn value(&self, field: DetailField) -> Option<DetailValue> {
        match field {
            DetailField::FirstOpened => self.first_opened.map(DetailValue::Date),
            DetailField::LastOpened => self.last_opened.map(DetailValue::Date),
            DetailField::FirstClicked => self.first_clicked.map(DetailValue::Date),
            DetailField::LastClicked => self.last_clicked.map(DetailValue::Date),
            DetailField::LastClickedUrl => self.last_clicked_url.clone().map(DetailValue::Text),
            DetailField::BounceType => self.bounce_type.clone().map(DetailValue::Text),
        }
    }

    /// Sets one field from what Salesforce holds (the text as read: it was cut and neutralised
    /// when written).
    pub fn set(&mut self, field: DetailField, value: Option<DetailValue>) {
        let date = |v: &Option<DetailValue>| match v {
            Some(DetailValue::Date(at)) => Some(*at),
            _ => None,
        };
        let text = |v: Option<DetailValue>| match v {
            Some(DetailValue::Text(t)) if !t.is_empty() => Some(t),
            _ => None,
        };
        match field {
            DetailField::FirstOpened => self.first_opened = date(&value),
            DetailField::LastOpened => self.last_opened = date(&value),
            DetailField::FirstClicked => self.first_clicked = date(&value),
            DetailField::LastClicked => self.last_clicked = date(&value),
            DetailField::LastClickedUrl => self.last_clicked_url = text(value),
            DetailField::BounceType => self.bounce_type = text(value),
        }
    }

    /// This detail with `activities` merged in, for the fields `fields` names (the others are
    /// left as they are: `None`, never read or written).
    pub fn merged<'a>(&self, activities: impl IntoIterator<Item = &'a Activity>, fields: &MemberDetailFields) -> Self {
        let on = |field: DetailField| fields.field(field).is_some();
        let mut next = self.clone();
        for activity in activities {
            let at = Some(activity.at);
            match (&activity.kind, &activity.detail) {
                (ActivityKind::Opened, _) => {
                    if on(DetailField::FirstOpened) {
                        next.first_opened = min(next.first_opened, at);
                    }
                    if on(DetailField::LastOpened) {
                        next.last_opened = next.last_opened.max(at);
                    }
                }
                (ActivityKind::Clicked, detail) => {
                    if on(DetailField::FirstClicked) {
                        next.first_clicked = min(next.first_clicked, at);
                    }
                    if on(DetailField::LastClickedUrl) {
                        let url = match detail {
                            ActivityDetail::Click { url } => Some(detail_text(url)),
                            _ => None,
                        };
                        // The stored URL belongs to the stored last click.
                        let (kept_at, kept_url) = (next.last_clicked, next.last_clicked_url.clone());
                        if (at, url.clone()) > (kept_at, kept_url) {
                            next.last_clicked_url = url;
                        }
                    }
                    if on(DetailField::LastClicked) {
                        next.last_clicked = next.last_clicked.max(at);
                    }
                }
                (ActivityKind::Bounced, ActivityDetail::Bounce { bounce_type, .. }) if on(DetailField::BounceType) => {
                    let seen = detail_text(bounce_type);
                    let kept = next.bounce_type.take();
                    next.bounce_type = match kept {
                        Some(kept) if (severity(&kept), &kept) >= (severity(&seen), &seen) => Some(kept),
                        _ => Some(seen),
                    };
                }
                _ => {}
            }
        }
        next
    }
}

fn min(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How a bounce type ranks: hard over soft over anything else.
fn severity(bounce_type: &str) -> u8 {
    if bounce_type.eq_ignore_ascii_case("hard") {
        2
    } else if bounce_type.eq_ignore_ascii_case("soft") {
        1
    } else {
        0
    }
}

/// CM text as a detail field holds it: inert for spreadsheets, at most [`MAX_DETAIL_TEXT`]
/// characters.
fn detail_text(text: &str) -> String {
    neutralise_formula(text).chars().take(MAX_DETAIL_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000) + chrono::Duration::minutes(minute)
    }

    fn activity(kind: ActivityKind, minute: i64, detail: ActivityDetail) -> Activity {
        Activity {
            kind,
            email: "jo@example.com".into(),
            at: at(minute),
            list_id: "l".into(),
            detail,
        }
    }

    fn click(minute: i64, url: &str) -> Activity {
        activity(ActivityKind::Clicked, minute, ActivityDetail::Click { url: url.into() })
    }

    fn all_fields() -> MemberDetailFields {
        MemberDetailFields::every_shipped()
    }

    #[test]
    fn first_and_last_dates_the_last_url_and_the_worst_bounce() {
        let activities = [
            activity(ActivityKind::Opened, 10, ActivityDetail::None),
            click(12, "https://example.com/a"),
            activity(ActivityKind::Opened, 30, ActivityDetail::None),
            click(31, "https://example.com/b"),
            activity(
                ActivityKind::Bounced,
                40,
                ActivityDetail::Bounce {
                    bounce_type: "Soft".into(),
                    reason: "full".into(),
                },
            ),
            activity(ActivityKind::Sent, 0, ActivityDetail::None),
        ];
        let detail = EngagementDetail::default().merged(&activities, &all_fields());
        assert_eq!(detail.first_opened, Some(at(10)));
        assert_eq!(detail.last_opened, Some(at(30)));
        assert_eq!(detail.first_clicked, Some(at(12)));
        assert_eq!(detail.last_clicked, Some(at(31)));
        assert_eq!(detail.last_clicked_url.as_deref(), Some("https://example.com/b"));
        assert_eq!(detail.bounce_type.as_deref(), Some("Soft"));
        let hard = activity(
            ActivityKind::Bounced,
            5,
            ActivityDetail::Bounce {
                bounce_type: "Hard".into(),
                reason: "no such user".into(),
            },
        );
        assert_eq!(
            detail.merged([&hard], &all_fields()).bounce_type.as_deref(),
            Some("Hard")
        );
    }

    #[test]
    fn only_the_fields_the_settings_name_are_computed() {
        let fields = MemberDetailFields {
            last_clicked: Some("Last__c".into()),
            ..MemberDetailFields::default()
        };
        let detail = EngagementDetail::default().merged(
            &[
                click(1, "https://x"),
                activity(ActivityKind::Opened, 2, ActivityDetail::None),
            ],
            &fields,
        );
        assert_eq!(
            detail,
            EngagementDetail {
                last_clicked: Some(at(1)),
                ..EngagementDetail::default()
            }
        );
    }

    #[test]
    fn a_long_or_formula_like_url_is_cut_and_made_inert_the_same_way_every_time() {
        let long = format!("=https://example.com/{}", "x".repeat(400));
        let once = EngagementDetail::default().merged(&[click(1, &long)], &all_fields());
        let url = once.last_clicked_url.clone().unwrap_or_default();
        assert_eq!(url.chars().count(), MAX_DETAIL_TEXT);
        assert!(url.starts_with("'="));
        assert_eq!(
            once.merged(&[click(1, &long)], &all_fields()),
            once,
            "read again: no change"
        );
    }

    fn arbitrary_activity() -> impl Strategy<Value = Activity> {
        (0..4usize, 0..50i64, 0..3usize).prop_map(|(kind, minute, url)| match kind {
            0 => activity(ActivityKind::Opened, minute, ActivityDetail::None),
            1 => click(minute, ["https://a", "https://b", "https://c"][url]),
            2 => activity(
                ActivityKind::Bounced,
                minute,
                ActivityDetail::Bounce {
                    bounce_type: ["Soft", "Hard", "Unknown"][url].into(),
                    reason: String::new(),
                },
            ),
            _ => activity(ActivityKind::Sent, minute, ActivityDetail::None),
        })
    }

    proptest! {
        /// Any split into two syncs, in any order, read once or twice, ends the same.
        #[test]
        fn merging_is_idempotent_and_order_independent(
            activities in proptest::collection::vec(arbitrary_activity(), 0..30),
            split in 0usize..30,
            seed in any::<u64>(),
        ) {
            let fields = all_fields();
            let whole = EngagementDetail::default().merged(&activities, &fields);
            let split = split.min(activities.len());
            let (first, second) = activities.split_at(split);
            let in_two = EngagementDetail::default().merged(second, &fields).merged(first, &fields);
            prop_assert_eq!(&in_two, &whole);
            prop_assert_eq!(&whole.merged(&activities, &fields), &whole);
            let mut shuffled = activities.clone();
            let n = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % n);
            shuffled.reverse();
            prop_assert_eq!(&EngagementDetail::default().merged(&shuffled, &fields), &whole);
        }
    }
}
