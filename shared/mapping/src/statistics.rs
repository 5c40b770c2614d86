//! Campaign statistics (PRODUCT.md §3.1): which CM summary values to write onto the linked SF
//! Campaign, writing only what changed since the last write.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// The numeric values of CM's campaign summary (`GET /campaigns/{id}/summary.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CampaignStat {
    /// Number of recipients.
    Recipients,
    /// Every recorded open, repeats included.
    TotalOpened,
    /// Recipients who opened at least once.
    UniqueOpened,
    /// Total recorded clicks.
    Clicks,
    /// Recipients who unsubscribed.
    Unsubscribed,
    /// Recipients who bounced.
    Bounced,
    /// Recipients who marked the campaign as spam.
    SpamComplaints,
    /// Forward-to-a-friend count.
    Forwards,
    /// Facebook likes (legacy).
    Likes,
    /// Tweets (legacy).
    Mentions,
}

impl CampaignStat {
    /// Every stat, in CM's summary order.
    pub const ALL: [CampaignStat; 10] = [
        CampaignStat::Recipients,
        CampaignStat::TotalOpened,
        CampaignStat::UniqueOpened,
        CampaignStat::Clicks,
        CampaignStat::Unsubscribed,
        CampaignStat::Bounced,
        CampaignStat::SpamComplaints,
        CampaignStat::Forwards,
        CampaignStat::Likes,
        CampaignStat::Mentions,
    ];

    /// Whether CM's activity records make this count grow (the legacy social counts do not
    /// come from the activity streams).
    pub fn counts_activity(self) -> bool {
        !matches!(
            self,
            CampaignStat::Forwards | CampaignStat::Likes | CampaignStat::Mentions
        )
    }

    /// The name CM uses in the summary JSON (and settings use as the map key).
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStat::Recipients => "Recipients",
            CampaignStat::TotalOpened => "TotalOpened",
            CampaignStat::UniqueOpened => "UniqueOpened",
            CampaignStat::Clicks => "Clicks",
            CampaignStat::Unsubscribed => "Unsubscribed",
            CampaignStat::Bounced => "Bounced",
            CampaignStat::SpamComplaints => "SpamComplaints",
            CampaignStat::Forwards => "Forwards",
            CampaignStat::Likes => "Likes",
            CampaignStat::Mentions => "Mentions",
        }
    }

    /// The SF Campaign field this stat lands in by default (custom fields shipped in
    /// `infra/salesforce`); `None` for the legacy social stats.
    pub fn default_field(self) -> Option<&'static str> {
        match self {
            CampaignStat::Recipients => Some("NumberSent"),
            CampaignStat::TotalOpened => Some("CM_Total_Opens__c"),
            CampaignStat::UniqueOpened => Some("CM_Unique_Opens__c"),
            CampaignStat::Clicks => Some("CM_Clicks__c"),
            CampaignStat::Unsubscribed => Some("CM_Unsubscribes__c"),
            CampaignStat::Bounced => Some("CM_Bounces__c"),
            CampaignStat::SpamComplaints => Some("CM_Spam_Complaints__c"),
            CampaignStat::Forwards | CampaignStat::Likes | CampaignStat::Mentions => None,
        }
    }
}

/// A CM campaign summary: the value of each stat CM reported.
pub type CampaignSummary = BTreeMap<CampaignStat, i64>;

/// One Campaign field to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticWrite {
    /// The stat.
    pub stat: CampaignStat,
    /// The SF Campaign field.
    pub field: String,
    /// The value to write.
    pub value: i64,
    /// The value last written, if any.
    pub previous: Option<i64>,
}

/// What to write onto one SF Campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticsPlan {
    /// Fields whose value changed since the last write.
    pub writes: Vec<StatisticWrite>,
    /// Mapped fields the org does not have (reported once per run; the others are still written).
    pub missing_fields: Vec<String>,
}

/// The mapped Campaign fields and the values the summary gives them (empty when statistics are
/// not synced): what Salesforce holds once the statistics are written.
pub fn statistics_target(summary: &CampaignSummary, settings: &Settings) -> BTreeMap<String, i64> {
    if !settings.update_campaign_statistics {
        return BTreeMap::new();
    }
    settings
        .statistics_fields
        .iter()
        .filter_map(|(stat, field)| Some((field.clone()?, *summary.get(stat)?)))
        .collect()
}

/// Plans the statistics write of §3.1.
///
/// - `last_written`: field → value as last written by us (empty on the first sync).
/// - `org_fields`: the Campaign fields that exist and are writable in the org (from describe), or
///   `None` when unknown, in which case every mapped field is assumed to exist.
pub fn plan_statistics(
    summary: &CampaignSummary,
    last_written: &BTreeMap<String, i64>,
    settings: &Settings,
    org_fields: Option<&BTreeSet<String>>,
) -> StatisticsPlan {
    let mut plan = StatisticsPlan::default();
    if !settings.update_campaign_statistics {
        return plan;
    }
    for (stat, field) in &settings.statistics_fields {
        let Some(field) = field else { continue };
        let Some(&value) = summary.get(stat) else { continue };
        if org_fields.is_some_and(|fields| !fields.contains(field)) {
            plan.missing_fields.push(field.clone());
            continue;
        }
        let previous = last_written.get(field).copied();
        if previous != Some(value) {
            plan.writes.push(StatisticWrite {
                stat: *stat,
                field: field.clone(),
                value,
                previous,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC)
    }

    fn summary() -> CampaignSummary {
        CampaignSummary::from([
            (CampaignStat::Recipients, 1000),
            (CampaignStat::TotalOpened, 700),
            (CampaignStat::UniqueOpened, 400),
            (CampaignStat::Clicks, 120),
            (CampaignStat::Unsubscribed, 3),
            (CampaignStat::Bounced, 12),
            (CampaignStat::SpamComplaints, 0),
            (CampaignStat::Forwards, 5),
        ])
    }

    #[test]
    fn first_sync_writes_every_mapped_stat() {
        let plan = plan_statistics(&summary(), &BTreeMap::new(), &settings(), None);
        let fields: Vec<&str> = plan.writes.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "NumberSent",
                "CM_Total_Opens__c",
                "CM_Unique_Opens__c",
                "CM_Clicks__c",
                "CM_Unsubscribes__c",
                "CM_Bounces__c",
                "CM_Spam_Complaints__c"
            ]
        );
        // Forwards is unmapped by default, so it is not written.
        assert!(plan.writes.iter().all(|w| w.stat != CampaignStat::Forwards));
    }

    #[test]
    fn only_changed_values_are_written() {
        let first = plan_statistics(&summary(), &BTreeMap::new(), &settings(), None);
        let written: BTreeMap<String, i64> = first.writes.iter().map(|w| (w.field.clone(), w.value)).collect();
        assert!(
            plan_statistics(&summary(), &written, &settings(), None)
                .writes
                .is_empty()
        );

        let mut later = summary();
        later.insert(CampaignStat::Clicks, 125);
        let plan = plan_statistics(&later, &written, &settings(), None);
        assert_eq!(
            plan.writes,
            vec![StatisticWrite {
                stat: CampaignStat::Clicks,
                field: "CM_Clicks__c".into(),
                value: 125,
                previous: Some(120)
            }]
        );
    }

    #[test]
    fn missing_fields_are_reported_and_the_rest_written() {
        let org: BTreeSet<String> = ["NumberSent", "CM_Clicks__c"].map(String::from).into();
        let plan = plan_statistics(&summary(), &BTreeMap::new(), &settings(), Some(&org));
        assert_eq!(plan.writes.len(), 2);
        assert_eq!(plan.missing_fields.len(), 5);
        assert!(plan.missing_fields.contains(&"CM_Total_Opens__c".to_owned()));
    }

    #[test]
    fn switched_off_writes_nothing() {
        let mut off = settings();
        off.update_campaign_statistics = false;
        assert_eq!(
            plan_statistics(&summary(), &BTreeMap::new(), &off, None),
            StatisticsPlan::default()
        );
    }
}
