//! Reading what a campaign's plan needs from Salesforce, and writing the plan back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use mapping::decision::MemberState;
use mapping::engagement::{DetailValue, EngagementDetail};
use mapping::matching::{PersonCandidate, PersonKind};
use mapping::people::PersonEmailState;
use mapping::plan::{CampaignPlan, ExistingMember, PersonUpdate};
use mapping::settings::{MemberDetailFields, Settings};
use mapping::statuses::{ExistingStatus, StatusToCreate};
use mapping::{ActivityKind, email::normalize_email};
use salesforce::soql::quote;
use salesforce::{Operation, RecordOutcome, SfClient, SfError, WriteOptions};
use serde_json::{Map, Value, json};
use state::RunFailure;

use crate::campaign::RunCounts;

fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn time(value: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = value.get(field)?.as_str()?;
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

/// Members of the campaign, keyed by person Id, with the email each stands for.
#[derive(Default)]
pub(crate) struct Members {
    pub by_person: BTreeMap<String, ExistingMember>,
    pub email_of_person: BTreeMap<String, String>,
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
    let rows = sf.query_in(&format!("{select} AND Email IN "), emails, "").await?;
    let mut members = Members {
        by_person: BTreeMap::new(),
        email_of_person: BTreeMap::new(),
    };
    for row in rows {
        let Some(person) = text(&row, "ContactId").or_else(|| text(&row, "LeadId")) else {
            continue;
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
            members.email_of_person.insert(person.clone(), normalize_email(&email));
        }
        members.by_person.insert(
            person.clone(),
            ExistingMember {
                member_id: text(&row, "Id").unwrap_or_default(),
                person_id: person,
                state,
            },
        );
    }
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
        for row in sf.query_in(&before, emails, extra).await? {
            let (Some(id), Some(email)) = (text(&row, "Id"), text(&row, "Email")) else {
                continue;
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
        }
    }
    Ok((candidates, states))
}

/// Email fields of people already known by Id (members with unsubscribes or bounces).
pub(crate) async fn read_person_states(
    sf: &SfClient,
    ids: &[String],
) -> Result<BTreeMap<String, PersonEmailState>, SfError> {
    let mut states = BTreeMap::new();
    for (object, prefix) in [("Contact", "003"), ("Lead", "00Q")] {
        let ids: Vec<String> = ids.iter().filter(|id| id.starts_with(prefix)).cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let before = format!("SELECT Id, HasOptedOutOfEmail, EmailBouncedDate FROM {object} WHERE Id IN ");
        for row in sf.query_in(&before, &ids, "").await? {
            if let Some(id) = text(&row, "Id") {
                states.insert(
                    id,
                    PersonEmailState {
                        has_opted_out: row.get("HasOptedOutOfEmail").and_then(Value::as_bool).unwrap_or(false),
                        bounced_at: time(&row, "EmailBouncedDate"),
                    },
                );
            }
        }
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

/// What applying a plan left to report (its counts go straight into the run's [`RunCounts`]).
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub failures: Vec<RunFailure>,
    /// A failure not tied to one person (a status, the statistics) was transient (still
    /// failing after the retries): keep the watermarks.
    pub transient_failures: bool,
    /// People whose writes failed with a transient error, still after the retries (their
    /// [`mapping::email::person_key`]s: no address is kept in a checkpoint).
    pub transient_people: BTreeSet<String>,
    /// The statistics write failed.
    pub statistics_failed: bool,
}

fn member_fields(settings: &Settings, state: &MemberState, record: &mut Map<String, Value>) {
    let fields = &settings.member_fields;
    record.insert("Status".into(), json!(state.status));
    record.insert(
        fields.activity_date.clone(),
        state.activity_date.map_or(Value::Null, |d| json!(d.to_rfc3339())),
    );
    record.insert(
        fields.activity_kind.clone(),
        state.activity_kind.map_or(Value::Null, |k| json!(k.as_str())),
    );
    record.insert(
        fields.once_only_marker.clone(),
        state.once_only_at.map_or(Value::Null, |d| json!(d.to_rfc3339())),
    );
    for (field, name) in settings.member_detail_fields.fields() {
        let value = match state.detail.value(field) {
            Some(DetailValue::Date(at)) => json!(at.to_rfc3339()),
            Some(DetailValue::Text(text)) => json!(text),
            None => Value::Null,
        };
        record.insert(name.to_owned(), value);
    }
}

fn note(applied: &mut Applied, subject: &str, outcome: &RecordOutcome) -> bool {
    match outcome {
        RecordOutcome::Failed(error) => {
            let failure = RunFailure::new(subject, &error.message, Some(&error.code));
            if salesforce::is_transient_code(&error.code) {
                match &failure.person {
                    Some(person) => {
                        applied.transient_people.insert(person.clone());
                    }
                    None => applied.transient_failures = true,
                }
            }
            applied.failures.push(failure);
            false
        }
        _ => true,
    }
}

/// The statuses to create on a campaign; one made by a concurrent run is as good as ours.
pub(crate) async fn create_statuses(
    sf: &SfClient,
    campaign_id: &str,
    statuses: &[StatusToCreate],
) -> Result<Vec<salesforce::RecordResult>, SfError> {
    let records: Vec<Map<String, Value>> = statuses
        .iter()
        .map(|s| {
            [
                ("CampaignId".to_owned(), json!(campaign_id)),
                ("Label".to_owned(), json!(s.label)),
                ("HasResponded".to_owned(), json!(s.has_responded)),
                ("SortOrder".to_owned(), json!(s.sort_order)),
            ]
            .into_iter()
            .collect()
        })
        .collect();
    let options = WriteOptions {
        duplicate_is_success: true,
        ..WriteOptions::default()
    };
    sf.write("CampaignMemberStatus", &Operation::Create, &records, &options)
        .await
}

/// Applies a campaign plan: statuses first (members need them), then members, people and
/// statistics. Per-record failures are collected; they never stop the other records.
pub(crate) async fn apply(
    sf: &SfClient,
    settings: &Settings,
    plan: &CampaignPlan,
    counts: &mut RunCounts,
) -> Result<Applied, SfError> {
    let mut applied = Applied::default();
    let missing = apply_statuses(sf, plan, &mut applied, counts).await?;
    apply_members(sf, settings, plan, &missing, &mut applied, counts).await?;
    apply_people(sf, plan, &mut applied, counts).await?;
    apply_statistics(sf, plan, &mut applied, counts).await?;
    counts.failed += applied.failures.len() as u64;
    Ok(applied)
}

/// The code a run record gives a member not written because its status could not be created.
pub const STATUS_MISSING: &str = "STATUS_MISSING";

/// Creates and corrects the campaign's statuses; returns the labels that could not be created.
async fn apply_statuses(
    sf: &SfClient,
    plan: &CampaignPlan,
    applied: &mut Applied,
    counts: &mut RunCounts,
) -> Result<BTreeSet<String>, SfError> {
    let campaign_id = &plan.link.sf_campaign_id;
    let mut missing = BTreeSet::new();
    if !plan.statuses.create.is_empty() {
        let results = create_statuses(sf, campaign_id, &plan.statuses.create).await?;
        for (status, result) in plan.statuses.create.iter().zip(results) {
            if note(applied, &format!("status {}", status.label), &result.outcome) {
                counts.statuses_created += 1;
            } else {
                missing.insert(status.label.clone());
            }
        }
    }
    if !plan.statuses.correct.is_empty() {
        let records: Vec<Map<String, Value>> = plan
            .statuses
            .correct
            .iter()
            .map(|c| {
                [
                    ("Id".to_owned(), json!(c.id)),
                    ("HasResponded".to_owned(), json!(c.has_responded)),
                ]
                .into_iter()
                .collect()
            })
            .collect();
        let results = sf
            .write(
                "CampaignMemberStatus",
                &Operation::Update,
                &records,
                &WriteOptions::default(),
            )
            .await?;
        for (status, result) in plan.statuses.correct.iter().zip(results) {
            if note(applied, &format!("status {}", status.label), &result.outcome) {
                counts.statuses_corrected += 1;
            }
        }
    }
    Ok(missing)
}

/// A member whose status is missing on the campaign is not written: Salesforce could refuse it,
/// or give it the campaign's default status (its API guides say so of an unknown value), which
/// would count as "not responded" every run. It is reported, and read again once the status
/// exists (a transient failure keeps the watermarks; `cm-sf-admin retry` after a permanent one).
fn skip_for_missing_status(applied: &mut Applied, email: &str, status: &str) {
    applied.failures.push(RunFailure::new(
        email,
        &format!("not written: its status \"{status}\" could not be created on the campaign"),
        Some(STATUS_MISSING),
    ));
}

async fn apply_members(
    sf: &SfClient,
    settings: &Settings,
    plan: &CampaignPlan,
    missing: &BTreeSet<String>,
    applied: &mut Applied,
    counts: &mut RunCounts,
) -> Result<(), SfError> {
    let mut to_add = Vec::with_capacity(plan.members_to_add.len());
    for member in &plan.members_to_add {
        if missing.contains(&member.state.status) {
            skip_for_missing_status(applied, &member.email, &member.state.status);
        } else {
            to_add.push(member);
        }
    }
    let mut updates = Vec::with_capacity(plan.member_updates.len());
    for update in &plan.member_updates {
        if update.before.status != update.after.status && missing.contains(&update.after.status) {
            skip_for_missing_status(applied, &update.email, &update.after.status);
        } else {
            updates.push(update);
        }
    }
    if !to_add.is_empty() {
        let records: Vec<Map<String, Value>> = to_add
            .iter()
            .map(|m| {
                let mut r = Map::new();
                r.insert("CampaignId".into(), json!(plan.link.sf_campaign_id));
                let person_field = if m.person_kind == PersonKind::Contact {
                    "ContactId"
                } else {
                    "LeadId"
                };
                r.insert(person_field.into(), json!(m.person_id));
                member_fields(settings, &m.state, &mut r);
                r
            })
            .collect();
        let options = WriteOptions {
            duplicate_is_success: true,
            ..WriteOptions::default()
        };
        let results = sf
            .write("CampaignMember", &Operation::Create, &records, &options)
            .await?;
        for (member, result) in to_add.iter().zip(results) {
            if note(applied, &member.email, &result.outcome) {
                counts.members_added += 1;
            }
        }
    }
    if !updates.is_empty() {
        let records: Vec<Map<String, Value>> = updates
            .iter()
            .map(|u| {
                let mut r = Map::new();
                r.insert("Id".into(), json!(u.member_id));
                member_fields(settings, &u.after, &mut r);
                if u.before.status == u.after.status {
                    r.remove("Status"); // only the Activity Date moved: leave the Status alone
                }
                r
            })
            .collect();
        let results = sf
            .write("CampaignMember", &Operation::Update, &records, &WriteOptions::default())
            .await?;
        for (update, result) in updates.iter().zip(results) {
            if note(applied, &update.email, &result.outcome) {
                counts.members_updated += 1;
            }
        }
    }
    Ok(())
}

async fn apply_people(
    sf: &SfClient,
    plan: &CampaignPlan,
    applied: &mut Applied,
    counts: &mut RunCounts,
) -> Result<(), SfError> {
    let outcomes = write_people(sf, &plan.person_updates).await?;
    for (person, outcome) in plan.person_updates.iter().zip(outcomes) {
        if note(applied, &person.email, &outcome) {
            counts.people_updated += 1;
        }
    }
    Ok(())
}

/// Writes opt-outs and bounces to Leads and Contacts (Collections of 200, Bulk from the
/// threshold): one outcome per update, in the caller's order. The one writer of people, for a
/// campaign's plan and a list's own events alike.
pub(crate) async fn write_people(sf: &SfClient, updates: &[PersonUpdate]) -> Result<Vec<RecordOutcome>, SfError> {
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; updates.len()];
    for (object, kind) in [("Contact", PersonKind::Contact), ("Lead", PersonKind::Lead)] {
        let indexes: Vec<usize> = (0..updates.len()).filter(|&i| updates[i].person_kind == kind).collect();
        if indexes.is_empty() {
            continue;
        }
        let records: Vec<Map<String, Value>> = indexes
            .iter()
            .map(|&i| {
                let p = &updates[i];
                let mut r = Map::new();
                r.insert("Id".into(), json!(p.person_id));
                if p.opt_out {
                    r.insert("HasOptedOutOfEmail".into(), json!(true));
                }
                if let Some((at, reason)) = &p.bounce {
                    r.insert("EmailBouncedDate".into(), json!(at.to_rfc3339()));
                    r.insert("EmailBouncedReason".into(), json!(reason));
                }
                r
            })
            .collect();
        let results = sf
            .write(object, &Operation::Update, &records, &WriteOptions::default())
            .await?;
        for (&i, result) in indexes.iter().zip(results) {
            outcomes[i] = Some(result.outcome);
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(RecordOutcome::Failed(salesforce::RecordError {
                code: "NOT_PROCESSED".into(),
                message: "no result".into(),
                fields: vec![],
            }))
        })
        .collect())
}

async fn apply_statistics(
    sf: &SfClient,
    plan: &CampaignPlan,
    applied: &mut Applied,
    counts: &mut RunCounts,
) -> Result<(), SfError> {
    if plan.statistics.writes.is_empty() {
        return Ok(());
    }
    let campaign_id = &plan.link.sf_campaign_id;
    let mut record = Map::new();
    record.insert("Id".into(), json!(campaign_id));
    for write in &plan.statistics.writes {
        record.insert(write.field.clone(), json!(write.value));
    }
    let results = sf
        .write("Campaign", &Operation::Update, &[record], &WriteOptions::default())
        .await?;
    if results
        .first()
        .is_some_and(|r| note(applied, &format!("campaign {campaign_id} statistics"), &r.outcome))
    {
        counts.stats_written += plan.statistics.writes.len() as u64;
    } else {
        applied.statistics_failed = true;
    }
    Ok(())
}
