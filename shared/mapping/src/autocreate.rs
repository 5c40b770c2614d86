//! Campaign auto-creation and linking (PRODUCT.md §3.2): which discovered CM campaigns get an SF
//! Campaign, and what that Campaign looks like.
//!
//! Auto-creation is not retrospective: only campaigns created after `auto_create_enabled_at`
//! qualify. The separate, explicit backfill uses [`backfill_eligibility`] over a chosen window.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::settings::{CampaignTemplate, MAX_CAMPAIGN_NAME_CHARS, Settings};

/// How a CM campaign came to be linked to an SF Campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOrigin {
    /// Auto-created by the sync.
    AutoCreated,
    /// Created by the explicit backfill command.
    Backfill,
    /// Linked by an admin.
    Manual,
    /// Found on an SF Campaign whose link field an admin filled in.
    FoundInSalesforce,
}

/// Where a CM campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmCampaignState {
    /// Sent (`campaigns.json`): carries `SentDate` only.
    Sent,
    /// Scheduled (`scheduled.json`): carries `DateCreated`.
    Scheduled,
    /// Draft (`drafts.json`): carries `DateCreated`.
    Draft,
}

/// A CM campaign found by discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredCampaign {
    /// CM CampaignID.
    pub cm_campaign_id: String,
    /// CM client it belongs to.
    pub cm_client_id: String,
    /// Campaign name.
    pub name: String,
    /// Email subject.
    pub subject: String,
    /// Sent, scheduled or draft.
    pub state: CmCampaignState,
    /// `DateCreated`, in UTC, when CM gives it (drafts and scheduled campaigns).
    pub created_at: Option<DateTime<Utc>>,
    /// `SentDate`, in UTC, for sent campaigns.
    pub sent_at: Option<DateTime<Utc>>,
}

impl DiscoveredCampaign {
    /// The campaign's creation moment for eligibility: the creation date when CM gives it, else
    /// the sent date (the sent list carries no creation date).
    pub fn created_or_sent(&self) -> Option<DateTime<Utc>> {
        self.created_at.or(self.sent_at)
    }
}

/// Why a discovered campaign gets no SF Campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ineligible {
    /// `auto_create_campaigns` is off.
    AutoCreateOff,
    /// It is linked already.
    AlreadyLinked {
        /// The linked SF Campaign.
        sf_campaign_id: String,
    },
    /// It was created before auto-creation was switched on (not retrospective).
    CreatedBeforeEnabled {
        /// Its creation (or sent) moment.
        created: DateTime<Utc>,
        /// When auto-creation was switched on.
        enabled_at: DateTime<Utc>,
    },
    /// Outside the backfill window.
    OutsideWindow {
        /// Its creation (or sent) moment.
        created: DateTime<Utc>,
    },
    /// CM gave neither a creation nor a sent date, so eligibility cannot be shown.
    NoDate,
    /// Not a campaign of a configured client (an id not of CM's form, or another client's):
    /// a `campaign-discovered` event naming one was not made by discovery.
    NotConfigured,
}

/// Whether a discovered campaign gets an SF Campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "eligibility", rename_all = "snake_case")]
pub enum Eligibility {
    /// Create and link it.
    Eligible,
    /// Leave it.
    Ineligible {
        /// Why.
        why: Ineligible,
    },
}

/// Auto-creation eligibility (§3.2): on, unlinked, and created strictly after
/// `auto_create_enabled_at`.
pub fn auto_create_eligibility(
    campaign: &DiscoveredCampaign,
    settings: &Settings,
    linked_to: Option<&str>,
) -> Eligibility {
    let ineligible = |why| Eligibility::Ineligible { why };
    if !crate::settings::is_cm_id(&campaign.cm_campaign_id)
        || !settings
            .cm_clients
            .iter()
            .any(|client| client.eq_ignore_ascii_case(&campaign.cm_client_id))
    {
        return ineligible(Ineligible::NotConfigured);
    }
    if !settings.auto_create_campaigns {
        return ineligible(Ineligible::AutoCreateOff);
    }
    if let Some(sf_campaign_id) = linked_to {
        return ineligible(Ineligible::AlreadyLinked {
            sf_campaign_id: sf_campaign_id.to_owned(),
        });
    }
    let (Some(created), Some(enabled_at)) = (campaign.created_or_sent(), settings.auto_create_enabled_at) else {
        // Without the enabled moment (a document not stored through prepare_update) nothing
        // qualifies: creating retrospectively by accident is the failure to avoid.
        return ineligible(if campaign.created_or_sent().is_none() {
            Ineligible::NoDate
        } else {
            Ineligible::AutoCreateOff
        });
    };
    if created > enabled_at {
        Eligibility::Eligible
    } else {
        ineligible(Ineligible::CreatedBeforeEnabled { created, enabled_at })
    }
}

/// Backfill eligibility: unlinked and created (or sent) within `[from, to]`, whatever the
/// auto-create setting says. This is the explicit, bounded retrospective creation.
pub fn backfill_eligibility(
    campaign: &DiscoveredCampaign,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    linked_to: Option<&str>,
) -> Eligibility {
    let ineligible = |why| Eligibility::Ineligible { why };
    if let Some(sf_campaign_id) = linked_to {
        return ineligible(Ineligible::AlreadyLinked {
            sf_campaign_id: sf_campaign_id.to_owned(),
        });
    }
    match campaign.created_or_sent() {
        None => ineligible(Ineligible::NoDate),
        Some(created) if created < from || created > to => ineligible(Ineligible::OutsideWindow { created }),
        Some(_) => Eligibility::Eligible,
    }
}

/// A backfill's window of whole days `[from 00:00, to 24:00)` in the CM time zone, in UTC:
/// what `cm-sf-admin backfill --from --to` and the console's backfill both mean by a range.
pub fn backfill_window(
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    zone: chrono_tz::Tz,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    use chrono::TimeZone;
    if from > to {
        return Err(format!("from ({from}) is after to ({to})"));
    }
    let start = |day: chrono::NaiveDate| {
        zone.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{day} has no midnight in {zone}"))
    };
    let end = to.succ_opt().ok_or_else(|| format!("to ({to}) is out of range"))?;
    Ok((start(from)?, start(end)? - chrono::Duration::milliseconds(1)))
}

/// The SF Campaign to create for a CM campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSfCampaign {
    /// `Name`, at most 80 characters.
    pub name: String,
    /// `Type`.
    pub campaign_type: Option<String>,
    /// `Status`.
    pub status: Option<String>,
    /// `IsActive`.
    pub is_active: bool,
    /// `ParentId`.
    pub parent_id: Option<String>,
    /// `StartDate` (YYYY-MM-DD), the sent date when known.
    pub start_date: Option<String>,
    /// The link field's API name.
    pub link_field: String,
    /// The CM campaign id stored in the link field (the upsert key).
    pub cm_campaign_id: String,
}

/// Renders the template for a campaign. Placeholder values are inserted verbatim; the result is
/// cut to 80 characters (on a character boundary).
pub fn render_campaign(campaign: &DiscoveredCampaign, template: &CampaignTemplate, link_field: &str) -> NewSfCampaign {
    let sent_date = campaign.sent_at.map(|at| at.format("%Y-%m-%d").to_string());
    let mut name = String::new();
    let mut rest = template.name_pattern.as_str();
    while let Some(open) = rest.find('{') {
        name.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = &rest[open..];
            break;
        };
        match &after[..close] {
            "name" => name.push_str(&campaign.name),
            "subject" => name.push_str(&campaign.subject),
            "sent_date" => name.push_str(sent_date.as_deref().unwrap_or("unsent")),
            "campaign_id" => name.push_str(&campaign.cm_campaign_id),
            other => {
                name.push('{');
                name.push_str(other);
                name.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    name.push_str(rest);
    let name = crate::text::neutralise_formula(name.trim());
    let mut name: String = name.chars().take(MAX_CAMPAIGN_NAME_CHARS).collect();
    if name.is_empty() {
        name = format!("CM campaign {}", campaign.cm_campaign_id);
    }
    NewSfCampaign {
        name,
        campaign_type: template.campaign_type.clone(),
        status: template.status.clone(),
        is_active: template.is_active,
        parent_id: template.parent_id.clone(),
        start_date: sent_date,
        link_field: link_field.to_owned(),
        cm_campaign_id: campaign.cm_campaign_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_window_covers_whole_days_in_the_cm_time_zone() {
        let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap_or_default();
        let Ok((from, to)) = backfill_window(day("2026-01-01"), day("2026-01-31"), chrono_tz::Australia::Sydney) else {
            panic!("a window of January")
        };
        assert_eq!(from.to_rfc3339(), "2025-12-31T13:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-01-31T12:59:59.999+00:00");
        assert!(backfill_window(day("2026-02-01"), day("2026-01-01"), chrono_tz::UTC).is_err());
    }
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, d, 12, 0, 0).single().unwrap_or_default()
    }

    fn campaign(state: CmCampaignState, created: Option<u32>, sent: Option<u32>) -> DiscoveredCampaign {
        DiscoveredCampaign {
            cm_campaign_id: "c0ffee00c0ffee00c0ffee00c0ffee00".into(),
            cm_client_id: "0123456789abcdef0123456789abcdef".into(),
            name: "May newsletter".into(),
            subject: "News for May".into(),
            state,
            created_at: created.map(day),
            sent_at: sent.map(day),
        }
    }

    fn enabled_on(d: u32) -> Settings {
        let mut s = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC);
        s.auto_create_campaigns = true;
        s.auto_create_enabled_at = Some(day(d));
        s
    }

    #[test]
    fn only_campaigns_created_after_switch_on_qualify() {
        let s = enabled_on(10);
        assert_eq!(
            auto_create_eligibility(&campaign(CmCampaignState::Sent, None, Some(11)), &s, None),
            Eligibility::Eligible
        );
        assert_eq!(
            auto_create_eligibility(&campaign(CmCampaignState::Sent, None, Some(9)), &s, None),
            Eligibility::Ineligible {
                why: Ineligible::CreatedBeforeEnabled {
                    created: day(9),
                    enabled_at: day(10)
                }
            }
        );
        // The same instant is not "after".
        assert!(matches!(
            auto_create_eligibility(&campaign(CmCampaignState::Sent, None, Some(10)), &s, None),
            Eligibility::Ineligible { .. }
        ));
    }

    #[test]
    fn the_creation_date_wins_over_the_sent_date() {
        let s = enabled_on(10);
        // Drafted before the switch, sent after: not new, so not created.
        let drafted_early = campaign(CmCampaignState::Sent, Some(9), Some(12));
        assert!(matches!(
            auto_create_eligibility(&drafted_early, &s, None),
            Eligibility::Ineligible { .. }
        ));
        let draft = campaign(CmCampaignState::Draft, Some(11), None);
        assert_eq!(auto_create_eligibility(&draft, &s, None), Eligibility::Eligible);
    }

    #[test]
    fn linked_off_or_undated_campaigns_are_left() {
        let s = enabled_on(10);
        let c = campaign(CmCampaignState::Sent, None, Some(11));
        assert!(matches!(
            auto_create_eligibility(&c, &s, Some("701000000000001")),
            Eligibility::Ineligible {
                why: Ineligible::AlreadyLinked { .. }
            }
        ));
        let mut off = s.clone();
        off.auto_create_campaigns = false;
        assert_eq!(
            auto_create_eligibility(&c, &off, None),
            Eligibility::Ineligible {
                why: Ineligible::AutoCreateOff
            }
        );
        assert_eq!(
            auto_create_eligibility(&campaign(CmCampaignState::Draft, None, None), &s, None),
            Eligibility::Ineligible {
                why: Ineligible::NoDate
            }
        );
    }

    #[test]
    fn backfill_takes_a_window_regardless_of_the_setting() {
        let c = campaign(CmCampaignState::Sent, None, Some(5));
        assert_eq!(backfill_eligibility(&c, day(1), day(9), None), Eligibility::Eligible);
        assert!(matches!(
            backfill_eligibility(&c, day(6), day(9), None),
            Eligibility::Ineligible { .. }
        ));
    }

    #[test]
    fn the_template_renders_and_fits_salesforce() {
        let template = CampaignTemplate {
            name_pattern: "CM {sent_date}: {name} ({subject})".into(),
            ..Default::default()
        };
        let rendered = render_campaign(
            &campaign(CmCampaignState::Sent, None, Some(3)),
            &template,
            "CM_Campaign_ID__c",
        );
        assert_eq!(rendered.name, "CM 2026-05-03: May newsletter (News for May)");
        assert_eq!(rendered.start_date.as_deref(), Some("2026-05-03"));
        assert_eq!(rendered.cm_campaign_id, "c0ffee00c0ffee00c0ffee00c0ffee00");

        let mut long = campaign(CmCampaignState::Draft, Some(3), None);
        long.name = "é".repeat(200);
        let rendered = render_campaign(&long, &CampaignTemplate::default(), "CM_Campaign_ID__c");
        assert_eq!(rendered.name.chars().count(), 80);

        let mut formula = campaign(CmCampaignState::Sent, None, Some(3));
        formula.name = "=HYPERLINK(\"https://evil.example\",\"Open\")".into();
        let rendered = render_campaign(&formula, &CampaignTemplate::default(), "CM_Campaign_ID__c");
        assert!(rendered.name.starts_with("'="), "{}", rendered.name);
    }
}
