//! The settings document (PRODUCT.md §2): one per deployment, JSON in and out, validated before
//! it is stored.
//!
//! [`Settings::from_json`] parses strictly (unknown fields are refused) and validates;
//! every error names the offending field by its path, e.g. `status_mapping[2].status`.
//! [`Settings::prepare_update`] applies the system-owned rules of an update (the
//! `auto_create_enabled_at` clock) against the stored document.

pub mod document;
mod fields;
mod members;
mod validate;

pub use fields::{FieldKind, RequiredField};
pub use members::{MemberDetailFields, MemberFields};
pub use validate::{is_cm_id, is_org_id, is_salesforce_id};

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::activity::ActivityKind;
use crate::statistics::CampaignStat;

/// Salesforce's limit on a CampaignMember Status picklist value.
pub const MAX_STATUS_LABEL_CHARS: usize = 40;

/// Salesforce's limit on a Campaign name.
pub const MAX_CAMPAIGN_NAME_CHARS: usize = 80;

/// When a member's Status is rewritten (PRODUCT.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusRefresh {
    /// The sync never touches the Status.
    Never,
    /// The Status follows the member's latest activity.
    #[default]
    Always,
    /// The Status is set once, by the first interaction found, and never again.
    OnceOnly,
    /// The Status only ever moves up `status_rank`.
    ForwardOnly,
}

/// Which matched recipients who are not members of the linked campaign are added (PRODUCT.md
/// §2, §3.6). Salesforce counts about 2 KB of data storage per member: a 1,000,000-recipient send
/// is about 2 GB as members, the engaged few a fraction of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddMissingMembers {
    /// Every matched recipient (the "Sent" status, or that of their activity).
    #[default]
    AllRecipients,
    /// Only recipients with an open, click, bounce, unsubscribe or spam complaint; the others
    /// are counted in the campaign's statistics, not added.
    Engaged,
    /// None: only existing members are updated.
    Never,
}

impl<'de> Deserialize<'de> for AddMissingMembers {
    /// The choice by name, or the boolean of earlier settings documents (`true` is
    /// `all_recipients`, `false` is `never`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Before(bool),
            Named(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Before(true) => Ok(AddMissingMembers::AllRecipients),
            Written::Before(false) => Ok(AddMissingMembers::Never),
            Written::Named(name) => match name.as_str() {
                "all_recipients" => Ok(AddMissingMembers::AllRecipients),
                "engaged" => Ok(AddMissingMembers::Engaged),
                "never" => Ok(AddMissingMembers::Never),
                other => Err(serde::de::Error::custom(format!(
                    "unknown choice `{other}`: all_recipients, engaged or never"
                ))),
            },
        }
    }
}

/// Which SF person an email means when several match (PRODUCT.md §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchPreference {
    /// The Lead or Contact modified most recently.
    #[default]
    MostRecentlyModified,
    /// A Contact if there is one, else a Lead.
    ContactFirst,
    /// A Lead if there is one, else a Contact.
    LeadFirst,
}

/// When an unsubscribe sets `HasOptedOutOfEmail` (PRODUCT.md §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutPolicy {
    /// Unsubscribes never opt the person out.
    Never,
    /// An unsubscribe from any configured list opts the person out.
    AnyList,
    /// Only once the person is subscribed to none of the configured lists.
    #[default]
    AllLists,
}

/// One row of the status mapping: which SF label a CM activity sets, and whether that label
/// counts as a response (PRODUCT.md §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMappingEntry {
    /// The CM activity.
    pub activity: ActivityKind,
    /// The SF CampaignMember Status label it sets (at most 40 characters).
    pub status: String,
    /// Whether members in that status count as responded (`CampaignMemberStatus.HasResponded`).
    pub responded: bool,
}

/// How auto-created SF Campaigns look (PRODUCT.md §2 `campaign_template`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignTemplate {
    /// Campaign name; placeholders `{name}`, `{subject}`, `{sent_date}` (YYYY-MM-DD, UTC) and
    /// `{campaign_id}`. The result is cut to 80 characters.
    pub name_pattern: String,
    /// Campaign `Type` picklist value; `None` leaves the org default.
    #[serde(rename = "type")]
    pub campaign_type: Option<String>,
    /// Campaign `Status` picklist value; `None` leaves the org default.
    pub status: Option<String>,
    /// Campaign `IsActive`.
    pub is_active: bool,
    /// Parent Campaign Id (`ParentId`), if auto-created campaigns sit under one.
    pub parent_id: Option<String>,
}

impl Default for CampaignTemplate {
    fn default() -> Self {
        CampaignTemplate {
            name_pattern: "{name}".to_owned(),
            campaign_type: Some("Email".to_owned()),
            status: Some("Completed".to_owned()),
            is_active: true,
            parent_id: None,
        }
    }
}

/// The placeholders `name_pattern` may use.
pub const TEMPLATE_PLACEHOLDERS: [&str; 4] = ["name", "subject", "sent_date", "campaign_id"];

/// The IANA zone CM's offset-less dates are read in. Serialized as its IANA name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmTimezone(pub Tz);

impl Serialize for CmTimezone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for CmTimezone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<Tz>().map(CmTimezone).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{name}` is not an IANA time zone name; use a name such as \"Australia/Sydney\" \
                 (CM shows the zone as \"(GMT+10:00) Canberra, Melbourne, Sydney\")"
            ))
        })
    }
}

fn yes() -> bool {
    true
}

fn default_link_field() -> String {
    "CM_Campaign_ID__c".to_owned()
}

/// The default `statistics_fields`: Recipients → the standard `NumberSent`, the rest → custom
/// Campaign fields shipped in `infra/salesforce`; legacy social stats unmapped.
pub fn default_statistics_fields() -> BTreeMap<CampaignStat, Option<String>> {
    CampaignStat::ALL
        .into_iter()
        .map(|stat| (stat, stat.default_field().map(str::to_owned)))
        .collect()
}

/// The default mapping of PRODUCT.md §3.4: each activity to its own label; Opened and Clicked
/// count as responded.
pub fn default_status_mapping() -> Vec<StatusMappingEntry> {
    ActivityKind::ALL
        .into_iter()
        .map(|activity| StatusMappingEntry {
            activity,
            status: match activity {
                ActivityKind::MarkedAsSpam => "Marked as Spam".to_owned(),
                other => other.as_str().to_owned(),
            },
            responded: matches!(activity, ActivityKind::Opened | ActivityKind::Clicked),
        })
        .collect()
}

/// The default rank: Sent < Bounced < Opened < Clicked < Unsubscribed < MarkedAsSpam.
pub fn default_status_rank() -> Vec<ActivityKind> {
    ActivityKind::ALL.to_vec()
}

/// The whole settings document of a deployment (PRODUCT.md §2).
///
/// `cm_clients` and `cm_timezone` have no default: a wrong zone would silently shift every
/// activity by hours, so the admin must say it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Write CM campaign statistics onto the linked SF Campaign at every sync (§3.1).
    #[serde(default = "yes")]
    pub update_campaign_statistics: bool,
    /// CM summary stat → SF Campaign field API name; `null` means "not written".
    #[serde(default = "default_statistics_fields")]
    pub statistics_fields: BTreeMap<CampaignStat, Option<String>>,
    /// Create an SF Campaign for each new CM campaign and link them (§3.2).
    #[serde(default)]
    pub auto_create_campaigns: bool,
    /// Set by the system when auto-creation is switched on; only CM campaigns created after it
    /// qualify. See [`Settings::prepare_update`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_enabled_at: Option<DateTime<Utc>>,
    /// How auto-created SF Campaigns look.
    #[serde(default)]
    pub campaign_template: CampaignTemplate,
    /// When a member's Status is rewritten (§3.3).
    #[serde(default)]
    pub status_refresh: StatusRefresh,
    /// Create mapped statuses missing from a campaign; correct wrong responded flags (§3.5).
    #[serde(default = "yes")]
    pub auto_create_missing_statuses: bool,
    /// Which activity sets which label, and which labels count as responded (§3.4).
    #[serde(default = "default_status_mapping")]
    pub status_mapping: Vec<StatusMappingEntry>,
    /// Lowest to highest: the order `forward_only` climbs and the tie-break for equal times.
    #[serde(default = "default_status_rank")]
    pub status_rank: Vec<ActivityKind>,
    /// Which matched recipients who are not yet members of the linked campaign are added (§3.6).
    #[serde(default)]
    pub add_missing_members: AddMissingMembers,
    /// Which SF person an email means when several match (§3.6).
    #[serde(default)]
    pub match_preference: MatchPreference,
    /// When an unsubscribe sets `HasOptedOutOfEmail` (§3.7).
    #[serde(default)]
    pub opt_out_policy: OptOutPolicy,
    /// A bounce sets `EmailBouncedDate` / `EmailBouncedReason` (§3.7).
    #[serde(default = "yes")]
    pub record_bounces: bool,
    /// CM client ids whose campaigns are synced (32 hex characters each).
    pub cm_clients: Vec<String>,
    /// CM list ids that may post webhooks.
    #[serde(default)]
    pub cm_lists: Vec<String>,
    /// The IANA zone CM's dates are in.
    pub cm_timezone: CmTimezone,
    /// The custom CampaignMember fields the rules need.
    #[serde(default)]
    pub member_fields: MemberFields,
    /// Opt-in engagement detail on the member (none by default).
    #[serde(default, skip_serializing_if = "MemberDetailFields::is_empty")]
    pub member_detail_fields: MemberDetailFields,
    /// External-id field on SF Campaign holding the CM campaign id.
    #[serde(default = "default_link_field")]
    pub campaign_link_field: String,
    /// How often the schedule syncs a linked campaign, by its age.
    #[serde(default)]
    pub sync_cadence: crate::cadence::SyncCadence,
    /// Days a run record (with its per-record failures) is kept before DynamoDB deletes it.
    #[serde(default = "default_run_retention_days")]
    pub run_retention_days: u32,
    /// How far behind the newest date read each activity stream is read again, in minutes
    /// (PRODUCT.md §2 `activity_overlap`): CM records that become visible late are still read.
    #[serde(default = "default_activity_overlap_minutes")]
    pub activity_overlap_minutes: u32,
}

/// How long run records are kept by default: long enough to look back over a quarter.
pub const DEFAULT_RUN_RETENTION_DAYS: u32 = 90;
/// The longest retention accepted (ten years).
pub const MAX_RUN_RETENTION_DAYS: u32 = 3650;

fn default_run_retention_days() -> u32 {
    DEFAULT_RUN_RETENTION_DAYS
}

/// The default activity overlap: six hours. CM does not document when a record becomes
/// visible; re-reading costs CM calls only (see [`crate::overlap`]).
pub const DEFAULT_ACTIVITY_OVERLAP_MINUTES: u32 = 360;
/// The longest overlap accepted (two days).
pub const MAX_ACTIVITY_OVERLAP_MINUTES: u32 = 2880;

fn default_activity_overlap_minutes() -> u32 {
    DEFAULT_ACTIVITY_OVERLAP_MINUTES
}

impl Settings {
    /// When a run record started at `started_at` expires.
    pub fn run_expires_at(&self, started_at: DateTime<Utc>) -> DateTime<Utc> {
        started_at + chrono::Duration::days(i64::from(self.run_retention_days))
    }

    /// The activity overlap.
    pub fn activity_overlap(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.activity_overlap_minutes))
    }
}

/// One problem with a settings document, naming the field by its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `status_mapping[2].status`.
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Why a settings document was refused. Nothing is stored when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The JSON did not fit the document's shape (unknown field, wrong type, bad value).
    #[error("invalid settings: {0}")]
    Malformed(FieldError),
    /// The document parsed but breaks one or more rules.
    #[error("invalid settings: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl SettingsError {
    /// Every problem found, each naming its field.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            SettingsError::Malformed(error) => vec![error.clone()],
            SettingsError::Invalid(errors) => errors.clone(),
        }
    }
}

impl Settings {
    /// A document with every default and the two required values.
    pub fn new(cm_clients: Vec<String>, cm_timezone: Tz) -> Settings {
        Settings {
            update_campaign_statistics: true,
            statistics_fields: default_statistics_fields(),
            auto_create_campaigns: false,
            auto_create_enabled_at: None,
            campaign_template: CampaignTemplate::default(),
            status_refresh: StatusRefresh::default(),
            auto_create_missing_statuses: true,
            status_mapping: default_status_mapping(),
            status_rank: default_status_rank(),
            add_missing_members: AddMissingMembers::AllRecipients,
            match_preference: MatchPreference::default(),
            opt_out_policy: OptOutPolicy::default(),
            record_bounces: true,
            cm_clients,
            cm_lists: Vec::new(),
            cm_timezone: CmTimezone(cm_timezone),
            member_fields: MemberFields::default(),
            member_detail_fields: MemberDetailFields::default(),
            campaign_link_field: default_link_field(),
            sync_cadence: crate::cadence::SyncCadence::default(),
            run_retention_days: DEFAULT_RUN_RETENTION_DAYS,
            activity_overlap_minutes: DEFAULT_ACTIVITY_OVERLAP_MINUTES,
        }
    }

    /// Parses and validates a JSON settings document.
    pub fn from_json(json: &str) -> Result<Settings, SettingsError> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let settings: Settings = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            // serde_path_to_error writes `?` for a map key it could not read.
            let path = error.path().to_string().trim_end_matches(".?").to_owned();
            SettingsError::Malformed(FieldError {
                field: if path == "." { "(document)".to_owned() } else { path },
                problem: error.into_inner().to_string(),
            })
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The document as pretty JSON (what `settings show` prints and the store keeps).
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Prepares a submitted document for storage over the stored one (`previous`), applying the
    /// rules the system owns, then validates it:
    /// - `auto_create_enabled_at` is set by the system, never by the admin: a submitted value that
    ///   differs from the stored one is refused;
    /// - switching `auto_create_campaigns` on records `now`; switching it off and on again moves
    ///   the moment forward, never back (so a campaign refused once is never created later by a
    ///   toggle); while it stays on, the moment is kept.
    pub fn prepare_update(
        mut self,
        previous: Option<&Settings>,
        now: DateTime<Utc>,
    ) -> Result<Settings, SettingsError> {
        let stored_at = previous.and_then(|p| p.auto_create_enabled_at);
        if self.auto_create_enabled_at.is_some() && self.auto_create_enabled_at != stored_at {
            return Err(SettingsError::Invalid(vec![FieldError {
                field: "auto_create_enabled_at".to_owned(),
                problem: "is set by the system when auto_create_campaigns is switched on; remove it \
                          (use the backfill command for campaigns created earlier)"
                    .to_owned(),
            }]));
        }
        let was_on = previous.is_some_and(|p| p.auto_create_campaigns);
        self.auto_create_enabled_at = match (was_on, self.auto_create_campaigns, stored_at) {
            (true, true, Some(at)) => Some(at),
            (_, true, stored) => Some(stored.map_or(now, |at| at.max(now))),
            (_, false, stored) => stored,
        };
        self.validate()?;
        Ok(self)
    }

    /// The rank lookup for `status_rank`.
    pub fn rank(&self) -> StatusRank {
        StatusRank::new(&self.status_rank)
    }

    /// The mapped label and responded flag of an activity, if it is mapped.
    pub fn mapping_for(&self, activity: ActivityKind) -> Option<&StatusMappingEntry> {
        self.status_mapping.iter().find(|entry| entry.activity == activity)
    }

    /// The SF label an activity sets, if mapped.
    pub fn label_for(&self, activity: ActivityKind) -> Option<&str> {
        self.mapping_for(activity).map(|entry| entry.status.as_str())
    }

    /// The highest rank among the activities mapped to `label`; `None` for a label outside the
    /// mapping (a stock or hand-made status), which ranks below every activity.
    pub fn rank_of_label(&self, label: &str) -> Option<u8> {
        let rank = self.rank();
        self.status_mapping
            .iter()
            .filter(|entry| entry.status == label)
            .map(|entry| rank.of(entry.activity))
            .max()
    }

    /// The distinct mapped labels with their responded flag, in rank order of the lowest
    /// activity that uses each (the order new statuses are created in).
    pub fn mapped_labels(&self) -> Vec<(String, bool)> {
        let rank = self.rank();
        let mut entries: Vec<&StatusMappingEntry> = self.status_mapping.iter().collect();
        entries.sort_by_key(|entry| rank.of(entry.activity));
        let mut labels: Vec<(String, bool)> = Vec::new();
        for entry in entries {
            if !labels.iter().any(|(label, _)| *label == entry.status) {
                labels.push((entry.status.clone(), entry.responded));
            }
        }
        labels
    }

    /// The zone CM dates are read in.
    pub fn zone(&self) -> Tz {
        self.cm_timezone.0
    }
}

/// `status_rank` as a lookup table: a higher number ranks higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRank([u8; ActivityKind::COUNT]);

impl StatusRank {
    /// Builds the table; kinds missing from `order` (only possible before validation) rank
    /// after the listed ones in default order.
    pub fn new(order: &[ActivityKind]) -> StatusRank {
        let mut table = [u8::MAX; ActivityKind::COUNT];
        let mut next = 0u8;
        for kind in order.iter().chain(ActivityKind::ALL.iter()) {
            if table[kind.index()] == u8::MAX {
                table[kind.index()] = next;
                next += 1;
            }
        }
        StatusRank(table)
    }

    /// The rank of an activity kind.
    pub fn of(&self, kind: ActivityKind) -> u8 {
        self.0[kind.index()]
    }
}

impl Default for StatusRank {
    fn default() -> Self {
        StatusRank::new(&ActivityKind::ALL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "0123456789abcdef0123456789abcdef";

    fn minimal_json() -> String {
        format!(r#"{{"cm_clients":["{CLIENT}"],"cm_timezone":"Australia/Sydney"}}"#)
    }

    fn errors_of(json: &str) -> Vec<FieldError> {
        match Settings::from_json(json) {
            Ok(_) => Vec::new(),
            Err(error) => error.field_errors(),
        }
    }

    fn with(patch: &str) -> String {
        let mut doc: serde_json::Value = serde_json::from_str(&minimal_json()).unwrap_or_default();
        let patch: serde_json::Value = serde_json::from_str(patch).unwrap_or_default();
        if let (Some(doc), Some(patch)) = (doc.as_object_mut(), patch.as_object()) {
            for (key, value) in patch {
                doc.insert(key.clone(), value.clone());
            }
        }
        doc.to_string()
    }

    fn assert_refused(json: &str, field: &str, words: &str) {
        let errors = errors_of(json);
        assert!(
            errors.iter().any(|e| e.field == field && e.problem.contains(words)),
            "expected an error on `{field}` mentioning \"{words}\", got {errors:?}"
        );
    }

    #[test]
    fn engagement_detail_fields_are_opt_in_and_checked_like_the_other_member_fields() {
        let settings = Settings::from_json(&minimal_json()).unwrap_or_else(|e| panic!("{e}"));
        assert!(settings.member_detail_fields.is_empty(), "off unless named");
        assert!(!settings.to_json().contains("member_detail_fields"));
        let on = Settings::from_json(&with(
            r#"{"member_detail_fields": {"first_opened": "CM_First_Opened__c", "last_clicked": "CM_Last_Clicked__c", "last_clicked_url": "CM_Last_Clicked_URL__c"}}"#,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let named: Vec<&str> = on.member_detail_fields.fields().map(|(_, name)| name).collect();
        assert_eq!(
            named,
            ["CM_First_Opened__c", "CM_Last_Clicked__c", "CM_Last_Clicked_URL__c"]
        );
        assert!(
            on.required_fields()
                .iter()
                .any(|f| f.field == "CM_Last_Clicked_URL__c" && f.kind == FieldKind::Text),
            "doctor checks the fields that are on"
        );
        assert_refused(
            &with(r#"{"member_detail_fields": {"last_clicked_url": "CM_Last_Clicked_URL__c"}}"#),
            "member_detail_fields.last_clicked_url",
            "needs `last_clicked`",
        );
        assert_refused(
            &with(r#"{"member_detail_fields": {"last_opened": "CM_Activity_Date__c"}}"#),
            "member_detail_fields.last_opened",
            "used for two member fields",
        );
        assert_refused(
            &with(r#"{"member_detail_fields": {"bounce_type": "Bounce Type"}}"#),
            "member_detail_fields.bounce_type",
            "",
        );
        assert_refused(
            &with(r#"{"member_detail_fields": {"first_open": "X__c"}}"#),
            "member_detail_fields.first_open",
            "expected one of `first_opened`",
        );
    }

    #[test]
    fn run_retention_is_90_days_unless_set_and_refused_outside_1_to_3650() {
        let settings = Settings::from_json(&minimal_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.run_retention_days, 90);
        let start = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        assert_eq!(settings.run_expires_at(start).to_rfc3339(), "2027-03-01T10:00:00+00:00");
        let kept = Settings::from_json(&with(r#"{"run_retention_days": 7}"#)).map(|s| s.run_retention_days);
        assert_eq!(kept.ok(), Some(7));
        assert_refused(
            &with(r#"{"run_retention_days": 0}"#),
            "run_retention_days",
            "between 1 and 3650",
        );
        assert_refused(
            &with(r#"{"run_retention_days": 4000}"#),
            "run_retention_days",
            "between 1 and 3650",
        );
    }

    #[test]
    fn the_activity_overlap_is_six_hours_unless_set_and_at_most_two_days() {
        let settings = Settings::from_json(&minimal_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.activity_overlap(), chrono::Duration::hours(6));
        let kept = Settings::from_json(&with(r#"{"activity_overlap_minutes": 0}"#)).map(|s| s.activity_overlap());
        assert_eq!(kept.ok(), Some(chrono::Duration::zero()));
        assert_refused(
            &with(r#"{"activity_overlap_minutes": 3000}"#),
            "activity_overlap_minutes",
            "at most 2880 minutes",
        );
    }

    #[test]
    fn defaults_fill_everything_but_the_required_values() {
        let settings = Settings::from_json(&minimal_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            settings,
            Settings::new(vec![CLIENT.to_owned()], chrono_tz::Australia::Sydney)
        );
        assert!(settings.update_campaign_statistics);
        assert_eq!(settings.status_refresh, StatusRefresh::Always);
        assert_eq!(settings.opt_out_policy, OptOutPolicy::AllLists);
        assert_eq!(settings.match_preference, MatchPreference::MostRecentlyModified);
        assert_eq!(
            settings.statistics_fields.get(&CampaignStat::Recipients),
            Some(&Some("NumberSent".to_owned()))
        );
        assert_eq!(settings.label_for(ActivityKind::MarkedAsSpam), Some("Marked as Spam"));
        let responded: Vec<_> = settings
            .status_mapping
            .iter()
            .filter(|e| e.responded)
            .map(|e| e.activity)
            .collect();
        assert_eq!(responded, vec![ActivityKind::Opened, ActivityKind::Clicked]);
        assert_eq!(settings.campaign_link_field, "CM_Campaign_ID__c");
    }

    #[test]
    fn round_trips_through_json() {
        let mut settings = Settings::new(vec![CLIENT.to_owned()], chrono_tz::Europe::London);
        settings.status_refresh = StatusRefresh::ForwardOnly;
        settings.cm_lists = vec!["fedcba9876543210fedcba9876543210".to_owned()];
        settings
            .statistics_fields
            .insert(CampaignStat::Forwards, Some("CM_Forwards__c".to_owned()));
        let json = settings.to_json();
        assert_eq!(Settings::from_json(&json), Ok(settings));
        assert!(json.contains("\"cm_timezone\": \"Europe/London\""));
    }

    #[test]
    fn required_values_are_required() {
        assert_refused(r#"{"cm_timezone":"UTC"}"#, "(document)", "missing field `cm_clients`");
        assert_refused(
            &format!(r#"{{"cm_clients":["{CLIENT}"]}}"#),
            "(document)",
            "cm_timezone",
        );
        assert_refused(&with(r#"{"cm_clients":[]}"#), "cm_clients", "at least one");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        assert_refused(
            &with(r#"{"update_campaign_stats":true}"#),
            "update_campaign_stats",
            "unknown field `update_campaign_stats`",
        );
        assert_refused(
            &with(r#"{"campaign_template":{"colour":"red"}}"#),
            "campaign_template.colour",
            "unknown field `colour`",
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_refused(
            &with(r#"{"cm_timezone":"Mars/Olympus"}"#),
            "cm_timezone",
            "not an IANA time zone",
        );
        assert_refused(
            &with(r#"{"cm_timezone":"(GMT+10:00) Canberra, Melbourne, Sydney"}"#),
            "cm_timezone",
            "Australia/Sydney",
        );
        assert_refused(
            &with(r#"{"status_refresh":"sometimes"}"#),
            "status_refresh",
            "unknown variant",
        );
        assert_refused(
            &with(r#"{"status_mapping":[{"activity":"Forwarded","status":"Fwd","responded":false}]}"#),
            "status_mapping[0].activity",
            "unknown variant `Forwarded`",
        );
        assert_refused(&with(r#"{"record_bounces":"yes"}"#), "record_bounces", "invalid type");
        assert_refused(&with(r#"{"cm_clients":["abc"]}"#), "cm_clients[0]", "32 hexadecimal");
        assert_refused(
            &with(&format!(r#"{{"cm_clients":["{CLIENT}","{CLIENT}"]}}"#)),
            "cm_clients[1]",
            "twice",
        );
    }

    #[test]
    fn status_labels_are_checked() {
        let long = "x".repeat(41);
        assert_refused(
            &with(&format!(
                r#"{{"status_mapping":[{{"activity":"Opened","status":"{long}","responded":true}}]}}"#
            )),
            "status_mapping[0].status",
            "41 characters",
        );
        let forty = "é".repeat(40); // characters, not bytes
        assert!(
            errors_of(&with(&format!(
                r#"{{"status_mapping":[{{"activity":"Opened","status":"{forty}","responded":true}}]}}"#
            )))
            .is_empty()
        );
        assert_refused(
            &with(r#"{"status_mapping":[{"activity":"Opened","status":"  ","responded":true}]}"#),
            "status_mapping[0].status",
            "empty",
        );
        assert_refused(
            &with(r#"{"status_mapping":[{"activity":"Opened","status":"Opened ","responded":true}]}"#),
            "status_mapping[0].status",
            "trailing spaces",
        );
    }

    #[test]
    fn a_shared_label_needs_one_responded_flag() {
        let json = with(
            r#"{"status_mapping":[
                {"activity":"Opened","status":"Engaged","responded":true},
                {"activity":"Clicked","status":"Engaged","responded":true},
                {"activity":"Bounced","status":"Engaged","responded":false}]}"#,
        );
        assert_refused(&json, "status_mapping[2].responded", "one responded flag");
        let fine = with(
            r#"{"status_mapping":[
                {"activity":"Opened","status":"Engaged","responded":true},
                {"activity":"Clicked","status":"Engaged","responded":true}]}"#,
        );
        assert!(errors_of(&fine).is_empty());
    }

    #[test]
    fn an_activity_is_mapped_at_most_once() {
        let json = with(
            r#"{"status_mapping":[
                {"activity":"Opened","status":"Opened","responded":true},
                {"activity":"Opened","status":"Read","responded":true}]}"#,
        );
        assert_refused(&json, "status_mapping[1].activity", "already mapped");
    }

    #[test]
    fn rank_must_be_a_permutation() {
        assert_refused(
            &with(r#"{"status_rank":["Sent","Opened"]}"#),
            "status_rank",
            "missing: Bounced, Clicked",
        );
        assert_refused(
            &with(r#"{"status_rank":["Sent","Sent","Bounced","Opened","Clicked","Unsubscribed","MarkedAsSpam"]}"#),
            "status_rank",
            "exactly once",
        );
        let reordered = with(r#"{"status_rank":["Sent","Opened","Clicked","Bounced","Unsubscribed","MarkedAsSpam"]}"#);
        let settings = Settings::from_json(&reordered).unwrap_or_else(|e| panic!("{e}"));
        assert!(settings.rank().of(ActivityKind::Bounced) > settings.rank().of(ActivityKind::Clicked));
    }

    #[test]
    fn field_names_are_checked() {
        assert_refused(
            &with(r#"{"statistics_fields":{"Clicks":"Email Clicks"}}"#),
            "statistics_fields.Clicks",
            "not a Salesforce field API name",
        );
        assert_refused(
            &with(r#"{"statistics_fields":{"Clicks":"NumberOfResponses"}}"#),
            "statistics_fields.Clicks",
            "computed by Salesforce",
        );
        assert_refused(
            &with(r#"{"statistics_fields":{"Clicks":"X__c","Bounced":"X__c"}}"#),
            "statistics_fields.Bounced",
            "already the target of Clicks",
        );
        assert_refused(
            &with(
                r#"{"member_fields":{"activity_date":"ActivityDate","activity_kind":"K__c","once_only_marker":"M__c"}}"#,
            ),
            "member_fields.activity_date",
            "custom field",
        );
        assert_refused(
            &with(r#"{"campaign_link_field":"CM__Id__c"}"#),
            "campaign_link_field",
            "API name",
        );
        assert_refused(
            &with(r#"{"statistics_fields":{"Clikcs":"X__c"}}"#),
            "statistics_fields",
            "unknown variant",
        );
    }

    #[test]
    fn template_is_checked() {
        assert_refused(
            &with(r#"{"campaign_template":{"name_pattern":"CM: {title}"}}"#),
            "campaign_template.name_pattern",
            "unknown placeholder {title}",
        );
        assert_refused(
            &with(r#"{"campaign_template":{"name_pattern":"CM: {name"}}"#),
            "campaign_template.name_pattern",
            "without a matching",
        );
        assert_refused(
            &with(r#"{"campaign_template":{"name_pattern":"x","parent_id":"003000000000001"}}"#),
            "campaign_template.parent_id",
            "Campaign Id",
        );
        assert!(
            errors_of(&with(
                r#"{"campaign_template":{"name_pattern":"CM {sent_date}: {name}","parent_id":"701000000000001AAA"}}"#
            ))
            .is_empty()
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let json = with(r#"{"cm_clients":["nope"],"status_rank":["Sent"],"campaign_link_field":"bad name"}"#);
        let fields: Vec<String> = errors_of(&json).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["status_rank", "cm_clients[0]", "campaign_link_field"]);
    }

    fn at(hour: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(hour, 0, 0))
            .map(|n| n.and_utc())
            .unwrap_or_default()
    }

    fn base() -> Settings {
        Settings::new(vec![CLIENT.to_owned()], chrono_tz::UTC)
    }

    #[test]
    fn switching_auto_create_on_records_the_moment() {
        let mut on = base();
        on.auto_create_campaigns = true;
        let stored = on
            .clone()
            .prepare_update(Some(&base()), at(9))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.auto_create_enabled_at, Some(at(9)));

        // Staying on keeps the original moment.
        let again = stored
            .clone()
            .prepare_update(Some(&stored), at(12))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.auto_create_enabled_at, Some(at(9)));

        // Off keeps it (history); on again moves it forward.
        let mut off = again.clone();
        off.auto_create_campaigns = false;
        let off = off
            .prepare_update(Some(&again), at(13))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.auto_create_enabled_at, Some(at(9)));
        let mut on_again = off.clone();
        on_again.auto_create_campaigns = true;
        let on_again = on_again
            .prepare_update(Some(&off), at(15))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_again.auto_create_enabled_at, Some(at(15)));
    }

    #[test]
    fn the_enabled_moment_never_moves_back() {
        // A clock that runs behind (another machine) cannot pull the moment back.
        let mut stored = base();
        stored.auto_create_enabled_at = Some(at(15));
        let mut on = stored.clone();
        on.auto_create_campaigns = true;
        let updated = on
            .prepare_update(Some(&stored), at(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(updated.auto_create_enabled_at, Some(at(15)));
    }

    #[test]
    fn the_admin_cannot_set_the_enabled_moment() {
        let mut on = base();
        on.auto_create_campaigns = true;
        on.auto_create_enabled_at = Some(at(1));
        let refused = on.prepare_update(Some(&base()), at(9));
        assert!(matches!(refused, Err(SettingsError::Invalid(ref e)) if e[0].field == "auto_create_enabled_at"));
    }

    #[test]
    fn mapped_labels_follow_rank_and_collapse_shared_labels() {
        let mut settings = base();
        settings.status_mapping = vec![
            StatusMappingEntry {
                activity: ActivityKind::Clicked,
                status: "Engaged".into(),
                responded: true,
            },
            StatusMappingEntry {
                activity: ActivityKind::Opened,
                status: "Engaged".into(),
                responded: true,
            },
            StatusMappingEntry {
                activity: ActivityKind::Sent,
                status: "Sent".into(),
                responded: false,
            },
        ];
        assert_eq!(
            settings.mapped_labels(),
            vec![("Sent".to_owned(), false), ("Engaged".to_owned(), true)]
        );
        assert_eq!(
            settings.rank_of_label("Engaged"),
            Some(settings.rank().of(ActivityKind::Clicked))
        );
        assert_eq!(settings.rank_of_label("Responded"), None);
    }
}
