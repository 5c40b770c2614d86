//! Writing a plan to Salesforce: statuses first (members need them), then members, people
//! and statistics, in Collections of 200 (Bulk from the threshold). Per-record failures are
//! collected and never stop the other records; the writer counts what it wrote.

use std::collections::BTreeSet;

use mapping::decision::MemberState;
use mapping::engagement::DetailValue;
use mapping::matching::PersonKind;
use mapping::plan::{CampaignPlan, PersonUpdate};
use mapping::settings::Settings;
use mapping::statuses::StatusToCreate;
use salesforce::{Operation, RecordOutcome, SfClient, SfError, WriteOptions};
use serde_json::{Map, Value, json};
use state::RunFailure;

/// What the writer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteCounts {
    pub statuses_created: u64,
    pub statuses_corrected: u64,
    pub members_added: u64,
    pub members_updated: u64,
    pub people_updated: u64,
    pub stats_written: u64,
    pub failed: u64,
}

/// What applying a plan did: its counts, and what it left to report.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub counts: WriteCounts,
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

fn status_records(campaign_id: &str, statuses: &[StatusToCreate]) -> Vec<Map<String, Value>> {
    statuses
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
        .collect()
}

/// The statuses to create on a campaign; one made by a concurrent run is as good as ours.
/// Salesforce answers `DUPLICATE_VALUE` both for a label that exists and for a `SortOrder`
/// taken by another status, so a duplicate counts as "exists" only once the campaign's
/// statuses show the label; a clash of sort orders is created again after the highest one.
pub(crate) async fn create_statuses(
    sf: &SfClient,
    campaign_id: &str,
    statuses: &[StatusToCreate],
) -> Result<Vec<salesforce::RecordResult>, SfError> {
    let options = WriteOptions {
        duplicate_is_success: true,
        ..WriteOptions::default()
    };
    let records = status_records(campaign_id, statuses);
    let mut results = sf
        .write("CampaignMemberStatus", &Operation::Create, &records, &options)
        .await?;
    let duplicates: Vec<usize> = results
        .iter()
        .filter(|r| r.outcome == RecordOutcome::AlreadyExists)
        .map(|r| r.index)
        .collect();
    if duplicates.is_empty() {
        return Ok(results);
    }
    let existing = super::reads::read_statuses(sf, campaign_id).await?;
    let mut next_order = existing
        .iter()
        .map(|s| s.sort_order)
        .chain(statuses.iter().map(|s| s.sort_order))
        .max()
        .unwrap_or(0);
    let mut again = Vec::new();
    let mut again_at = Vec::new();
    for index in duplicates {
        let Some(status) = statuses.get(index) else { continue };
        if existing.iter().any(|e| e.label == status.label) {
            continue;
        }
        next_order += 1;
        again.push(StatusToCreate {
            sort_order: next_order,
            ..status.clone()
        });
        again_at.push(index);
    }
    if again.is_empty() {
        return Ok(results);
    }
    tracing::warn!(
        statuses = again.len(),
        "status sort orders taken on the campaign; created after the highest"
    );
    // No duplicate counts as success now: the label was not there a moment ago.
    let retried = sf
        .write(
            "CampaignMemberStatus",
            &Operation::Create,
            &status_records(campaign_id, &again),
            &WriteOptions::default(),
        )
        .await?;
    for (result, index) in retried.into_iter().zip(again_at) {
        if let Some(slot) = results.iter_mut().find(|r| r.index == index) {
            slot.outcome = result.outcome;
        }
    }
    Ok(results)
}

/// A plan's statuses, written: what that did, and the labels that could not be created.
#[derive(Debug)]
pub(crate) struct StatusesWritten {
    applied: Applied,
    missing: BTreeSet<String>,
}

/// Applies a campaign plan: statuses first (members need them), then members, people and
/// statistics. Per-record failures are collected; they never stop the other records.
pub(crate) async fn apply(sf: &SfClient, settings: &Settings, plan: &CampaignPlan) -> Result<Applied, SfError> {
    let statuses = write_statuses(sf, plan).await?;
    apply_after_statuses(sf, settings, plan, statuses).await
}

/// The first step of [`apply`]: the plan's statuses created and corrected.
pub(crate) async fn write_statuses(sf: &SfClient, plan: &CampaignPlan) -> Result<StatusesWritten, SfError> {
    let mut applied = Applied::default();
    let missing = apply_statuses(sf, plan, &mut applied).await?;
    Ok(StatusesWritten { applied, missing })
}

/// The rest of [`apply`], once the plan's statuses are written: members, people, statistics.
pub(crate) async fn apply_after_statuses(
    sf: &SfClient,
    settings: &Settings,
    plan: &CampaignPlan,
    statuses: StatusesWritten,
) -> Result<Applied, SfError> {
    let StatusesWritten { mut applied, missing } = statuses;
    apply_members(sf, settings, plan, &missing, &mut applied).await?;
    apply_people(sf, plan, &mut applied).await?;
    apply_statistics(sf, plan, &mut applied).await?;
    applied.counts.failed = applied.failures.len() as u64;
    Ok(applied)
}

/// The code a run record gives a member not written because its status could not be created.
pub const STATUS_MISSING: &str = "STATUS_MISSING";

/// Creates and corrects the campaign's statuses; returns the labels that could not be created.
async fn apply_statuses(
    sf: &SfClient,
    plan: &CampaignPlan,
    applied: &mut Applied,
) -> Result<BTreeSet<String>, SfError> {
    let campaign_id = &plan.link.sf_campaign_id;
    let mut missing = BTreeSet::new();
    if !plan.statuses.create.is_empty() {
        let results = create_statuses(sf, campaign_id, &plan.statuses.create).await?;
        for (status, result) in plan.statuses.create.iter().zip(results) {
            if note(applied, &format!("status {}", status.label), &result.outcome) {
                applied.counts.statuses_created += 1;
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
                applied.counts.statuses_corrected += 1;
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
                applied.counts.members_added += 1;
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
                applied.counts.members_updated += 1;
            }
        }
    }
    Ok(())
}

async fn apply_people(sf: &SfClient, plan: &CampaignPlan, applied: &mut Applied) -> Result<(), SfError> {
    let outcomes = write_people(sf, &plan.person_updates).await?;
    for (person, outcome) in plan.person_updates.iter().zip(outcomes) {
        if note(applied, &person.email, &outcome) {
            applied.counts.people_updated += 1;
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
                code: salesforce::NOT_PROCESSED.into(),
                message: "no result".into(),
                fields: vec![],
            }))
        })
        .collect())
}

async fn apply_statistics(sf: &SfClient, plan: &CampaignPlan, applied: &mut Applied) -> Result<(), SfError> {
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
        applied.counts.stats_written += plan.statistics.writes.len() as u64;
    } else {
        applied.statistics_failed = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sandbox::generate::{Shape, generate};

    const CAMPAIGN: &str = "701000SB0000000001";

    #[tokio::test]
    async fn a_status_refused_for_a_taken_sort_order_is_created_after_the_highest_not_counted_as_there() {
        let running = harness::start_sandbox(generate(&Shape {
            recipients: 3,
            activities: 0,
            ..Shape::default()
        }))
        .await
        .unwrap();
        let sf = harness::sf_client_fast(&running.sf_url).unwrap();
        let existing = super::super::reads::read_statuses(&sf, CAMPAIGN).await.unwrap();
        let taken = existing.iter().map(|s| s.sort_order).max().unwrap();
        let already = existing[0].label.clone();
        // "Clicked" planned at a sort order another status holds (made meanwhile in Salesforce),
        // beside a label the campaign has: Salesforce says DUPLICATE_VALUE to both.
        let statuses = vec![
            StatusToCreate {
                label: "Clicked".into(),
                has_responded: true,
                sort_order: taken,
            },
            StatusToCreate {
                label: already.clone(),
                has_responded: false,
                sort_order: taken + 50,
            },
        ];
        let results = create_statuses(&sf, CAMPAIGN, &statuses).await.unwrap();
        assert!(matches!(results[0].outcome, RecordOutcome::Created(_)), "{results:?}");
        assert_eq!(results[1].outcome, RecordOutcome::AlreadyExists, "{results:?}");
        let after = super::super::reads::read_statuses(&sf, CAMPAIGN).await.unwrap();
        let clicked = after
            .iter()
            .find(|s| s.label == "Clicked")
            .expect("the label exists now");
        assert!(clicked.sort_order > taken && clicked.has_responded);
        assert_eq!(after.iter().filter(|s| s.label == already).count(), 1);
    }
}
