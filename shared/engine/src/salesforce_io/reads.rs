//! Reading what a plan needs from Salesforce: a campaign's members with new activity, the
//! Leads and Contacts an address may mean, their email fields, the campaign's statuses and
//! statistics fields.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use mapping::decision::MemberState;
use mapping::engagement::{DetailValue, EngagementDetail};
use mapping::matching::{PersonCandidate, PersonKind};
use mapping::people::PersonEmailState;
use mapping::plan::ExistingMember;
use mapping::settings::{MemberDetailFields, Settings};
use mapping::statuses::ExistingStatus;
use mapping::{ActivityKind, email::normalize_email};
use salesforce::soql::quote;
use salesforce::{SfClient, SfError};
use serde_json::Value;

fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn time(value: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = value.get(field)?.as_str()?;
    // Salesforce writes `2026-11-27T10:00:00.000+0000`: RFC 3339 but for the offset's colon.
    if let Some(utc) = text.strip_suffix("+0000")
        && let Ok(at) = DateTime::parse_from_rfc3339(&format!("{utc}Z"))
    {
        return Some(at.with_timezone(&Utc));
    }
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The engagement detail fields the settings name, as the member holds them.
fn read_detail(row: &Value, fields: &MemberDetailFields) -> EngagementDetail {
    let mut detail = EngagementDetail::default();
    for (field, name) in fields.fields() {
        let value = if field.is_date() {
            time(row, name).map(DetailValue::Date)
        } else {
            text(row, name).map(DetailValue::Text)
        };
        detail.set(field, value);
    }
    detail
}

/// A member's Lead or Contact: the email it stands for, and which of the two it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberPerson {
    pub email: String,
    pub kind: PersonKind,
}

/// Members of the campaign, keyed by person Id, with the person each stands for.
#[derive(Default)]
pub(crate) struct Members {
    pub by_person: BTreeMap<String, ExistingMember>,
    pub person: BTreeMap<String, MemberPerson>,
}

/// Reads the members of a campaign with the given emails.
pub(crate) async fn read_members(
    sf: &SfClient,
    settings: &Settings,
    campaign_id: &str,
    emails: &[String],
) -> Result<Members, SfError> {
    let fields = &settings.member_fields;
    let detail: String = settings
        .member_detail_fields
        .fields()
        .map(|(_, name)| format!(", {name}"))
        .collect();
    let select = format!(
        "SELECT Id, ContactId, LeadId, Email, Status, {}, {}, {}{detail} FROM CampaignMember WHERE CampaignId = {}",
        fields.activity_date,
        fields.activity_kind,
        fields.once_only_marker,
        quote(campaign_id)
    );
    let mut members = Members::default();
    sf.query_in_each(&format!("{select} AND Email IN "), emails, "", |row| {
        // A converted Lead's member names both: the Contact is the person now.
        let (person, person_kind) = match (text(&row, "ContactId"), text(&row, "LeadId")) {
            (Some(contact), _) => (contact, PersonKind::Contact),
            (None, Some(lead)) => (lead, PersonKind::Lead),
            (None, None) => return,
        };
        let kind = text(&row, &fields.activity_kind).and_then(|k| k.parse::<ActivityKind>().ok());
        let state = MemberState {
            status: text(&row, "Status").unwrap_or_default(),
            activity_date: time(&row, &fields.activity_date),
            activity_kind: kind,
            once_only_at: time(&row, &fields.once_only_marker),
            detail: read_detail(&row, &settings.member_detail_fields),
        };
        if let Some(email) = text(&row, "Email") {
            members.person.insert(
                person.clone(),
                MemberPerson {
                    email: normalize_email(&email),
                    kind: person_kind,
                },
            );
        }
        members.by_person.insert(
            person.clone(),
            ExistingMember {
                member_id: text(&row, "Id").unwrap_or_default(),
                person_id: person,
                state,
            },
        );
    })
    .await?;
    Ok(members)
}

/// Leads and Contacts with the given emails, and their email fields.
pub(crate) async fn read_people(
    sf: &SfClient,
    emails: &[String],
) -> Result<
    (
        BTreeMap<String, Vec<PersonCandidate>>,
        BTreeMap<String, PersonEmailState>,
    ),
    SfError,
> {
    let mut candidates: BTreeMap<String, Vec<PersonCandidate>> = BTreeMap::new();
    let mut states = BTreeMap::new();
    if emails.is_empty() {
        return Ok((candidates, states));
    }
    for (object, kind, extra) in [
        ("Contact", PersonKind::Contact, ""),
        ("Lead", PersonKind::Lead, " AND IsConverted = false"),
    ] {
        let before = format!(
            "SELECT Id, Email, LastModifiedDate, HasOptedOutOfEmail, EmailBouncedDate FROM {object} WHERE Email IN "
        );
        sf.query_in_each(&before, emails, extra, |row| {
            let (Some(id), Some(email)) = (text(&row, "Id"), text(&row, "Email")) else {
                return;
            };
            states.insert(
                id.clone(),
                PersonEmailState {
                    has_opted_out: row.get("HasOptedOutOfEmail").and_then(Value::as_bool).unwrap_or(false),
                    bounced_at: time(&row, "EmailBouncedDate"),
                },
            );
            candidates
                .entry(normalize_email(&email))
                .or_default()
                .push(PersonCandidate {
                    id,
                    kind,
                    last_modified: time(&row, "LastModifiedDate").unwrap_or_default(),
                    is_member: false,
                });
        })
        .await?;
    }
    Ok((candidates, states))
}

/// Email fields of people already known by Id and kind (members with unsubscribes or bounces).
pub(crate) async fn read_person_states(
    sf: &SfClient,
    people: &[(String, PersonKind)],
) -> Result<BTreeMap<String, PersonEmailState>, SfError> {
    let mut states = BTreeMap::new();
    for (object, kind) in [("Contact", PersonKind::Contact), ("Lead", PersonKind::Lead)] {
        let ids: Vec<String> = people
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let before = format!("SELECT Id, HasOptedOutOfEmail, EmailBouncedDate FROM {object} WHERE Id IN ");
        sf.query_in_each(&before, &ids, "", |row| {
            if let Some(id) = text(&row, "Id") {
                states.insert(
                    id,
                    PersonEmailState {
                        has_opted_out: row.get("HasOptedOutOfEmail").and_then(Value::as_bool).unwrap_or(false),
                        bounced_at: time(&row, "EmailBouncedDate"),
                    },
                );
            }
        })
        .await?;
    }
    Ok(states)
}

/// The campaign's member statuses.
pub(crate) async fn read_statuses(sf: &SfClient, campaign_id: &str) -> Result<Vec<ExistingStatus>, SfError> {
    let rows = sf
        .query_all(&format!(
            "SELECT Id, Label, HasResponded, IsDefault, SortOrder FROM CampaignMemberStatus WHERE CampaignId = {}",
            quote(campaign_id)
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|row| ExistingStatus {
            id: text(row, "Id").unwrap_or_default(),
            label: text(row, "Label").unwrap_or_default(),
            has_responded: row.get("HasResponded").and_then(Value::as_bool).unwrap_or(false),
            is_default: row.get("IsDefault").and_then(Value::as_bool).unwrap_or(false),
            sort_order: row.get("SortOrder").and_then(Value::as_f64).unwrap_or(0.0) as i32,
        })
        .collect())
}

/// The current values of the mapped statistics fields on the campaign, and the fields that
/// exist (when a mapped field does not, describe tells which).
pub(crate) async fn read_campaign_stats(
    sf: &SfClient,
    settings: &Settings,
    campaign_id: &str,
) -> Result<(BTreeMap<String, i64>, Option<BTreeSet<String>>), SfError> {
    let mapped: Vec<String> = settings.statistics_fields.values().flatten().cloned().collect();
    if mapped.is_empty() {
        return Ok((BTreeMap::new(), None));
    }
    let query = |fields: &[String]| {
        format!(
            "SELECT Id, {} FROM Campaign WHERE Id = {}",
            fields.join(", "),
            quote(campaign_id)
        )
    };
    let (rows, existing) = match sf.query_all(&query(&mapped)).await {
        Ok(rows) => (rows, None),
        Err(SfError::Api { code, .. }) if code == "INVALID_FIELD" => {
            let describe = sf.describe("Campaign").await?;
            let existing: BTreeSet<String> = mapped
                .iter()
                .filter(|f| describe.field(f).is_some_and(|d| d.updateable))
                .cloned()
                .collect();
            let fields: Vec<String> = existing.iter().cloned().collect();
            let rows = if fields.is_empty() {
                Vec::new()
            } else {
                sf.query_all(&query(&fields)).await?
            };
            (rows, Some(existing))
        }
        Err(error) => return Err(error),
    };
    let mut current = BTreeMap::new();
    if let Some(row) = rows.first() {
        for field in &mapped {
            if let Some(value) = row.get(field).and_then(Value::as_f64) {
                current.insert(field.clone(), value.round() as i64);
            }
        }
    }
    Ok((current, existing))
}
