//! The campaign sync against the sandbox: the rules of PRODUCT.md §3 as a user sees them in
//! Salesforce (status modes, statuses, matching, parts, dry runs, late records, case).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use engine::campaign::CampaignOutcome;
use mapping::StatusRefresh;
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};
use state::{PreviewStore, RunStore};

use common::*;

fn worked_example_scenario() -> Scenario {
    let mut scenario = generate(&Shape {
        recipients: 3,
        activities: 0,
        in_salesforce: 1.0,
        already_members: 1.0,
        ..Shape::default()
    });
    scenario.cm.campaigns.last_mut().unwrap().recipients.clear(); // no Sent records: the member starts as "Sent"
    scenario
}

/// What a user sees of a campaign in Salesforce: each member's person, Status, Activity Date,
/// kind and once-only marker, and each person's opt-out and bounce fields.
async fn salesforce_view(h: &Harness) -> (Vec<String>, Vec<String>) {
    let mut members: Vec<String> = h
        .sf_records("CampaignMember")
        .await
        .iter()
        .map(|m| {
            format!(
                "{}{} {} {} {} {}",
                m["ContactId"].as_str().unwrap_or_default(),
                m["LeadId"].as_str().unwrap_or_default(),
                m["Status"],
                m["CM_Activity_Date__c"],
                m["CM_Activity_Kind__c"],
                m["CM_Status_Locked_At__c"]
            )
        })
        .collect();
    members.sort();
    let mut people = Vec::new();
    for object in ["Contact", "Lead"] {
        people.extend(h.sf_records(object).await.iter().map(|p| {
            format!(
                "{} {} {} {}",
                p["Id"], p["HasOptedOutOfEmail"], p["EmailBouncedDate"], p["EmailBouncedReason"]
            )
        }));
    }
    people.sort();
    (members, people)
}

/// Opens of `count` people of the scenario, dated from `start` a minute apart.
fn opens_of(h: &Harness, people: std::ops::Range<usize>, start: &str) -> Value {
    let list = h.scenario.cm.lists[0].id.clone();
    let start = chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S").unwrap();
    Value::Array(
        people
            .enumerate()
            .map(|(n, i)| {
                let email = h.scenario.sf.records["Contact"][i]["Email"].as_str().unwrap().to_owned();
                let date = start + chrono::Duration::minutes(n as i64);
                json!({"kind": "open", "email": email, "list_id": list, "date": date.format("%Y-%m-%d %H:%M:%S").to_string()})
            })
            .collect(),
    )
}

fn member_status(members: &[Value], contact: &serde_json::Map<String, Value>) -> Option<String> {
    members
        .iter()
        .find(|m| m["ContactId"] == contact["Id"])
        .and_then(|m| m["Status"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_member_whose_status_could_not_be_created_is_reported_and_not_written_with_another() {
    let mut scenario = generate(&Shape {
        recipients: 20,
        activities: 0,
        in_salesforce: 1.0,
        already_members: 0.0,
        ..Shape::default()
    });
    // An org whose validation rule refuses new member statuses, and that gives an unknown
    // Status the campaign's default, as older API guides describe.
    scenario.faults.sf.refused_objects = vec!["CampaignMemberStatus".into()];
    scenario.faults.sf.unknown_status_gets_default = true;
    let (h, cm) = Harness::linked(scenario, |_| {}).await;
    let email = h.scenario.sf.records["Contact"][0]["Email"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "click", "email": email, "list_id": list, "date": "2026-11-20 10:00:00"}]),
    )
    .await;
    h.set_cm_now("2026-11-20 10:30:00").await;
    let CampaignOutcome::Done { run_id, counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    let members = h.sf_records("CampaignMember").await;
    assert!(counts.members_added > 0, "the others are written: {counts:?}");
    assert!(
        !members.iter().any(|m| m["Email"] == email.as_str()),
        "the clicker is not a member with the campaign's default status"
    );
    let (_, failures) = h.engine.store.run(&run_id).await.unwrap().unwrap();
    assert!(
        failures.iter().any(
            |f| f.person == Some(mapping::email::person_key(&email)) && f.code.as_deref() == Some("STATUS_MISSING")
        ),
        "{failures:?}"
    );
}

#[tokio::test]
async fn the_worked_example_in_every_mode() {
    for (mode, after1, after2) in [
        (StatusRefresh::Never, "Sent", "Sent"),
        (StatusRefresh::Always, "Clicked", "Opened"),
        (StatusRefresh::OnceOnly, "Opened", "Opened"),
        (StatusRefresh::ForwardOnly, "Clicked", "Clicked"),
    ] {
        let (h, cm) = Harness::linked(worked_example_scenario(), |s| s.status_refresh = mode).await;
        let list = h.scenario.cm.lists[0].id.clone();
        let email = "person0000000@example.com";
        h.add_activity(
            &cm,
            json!([{"kind": "open", "email": email, "list_id": list, "date": "2026-11-20 10:00:00"},
                                   {"kind": "click", "email": email, "list_id": list, "date": "2026-11-20 10:05:00"}]),
        )
        .await;
        h.set_cm_now("2026-11-20 10:30:00").await;
        h.sync(&cm, false).await;
        let status = |members: Vec<Value>| {
            members
                .iter()
                .find(|m| m["Email"] == email)
                .map(|m| {
                    (
                        m["Status"].as_str().unwrap().to_owned(),
                        m["CM_Activity_Date__c"].clone(),
                    )
                })
                .unwrap()
        };
        let (s1, d1) = status(h.sf_records("CampaignMember").await);
        h.add_activity(
            &cm,
            json!([{"kind": "open", "email": email, "list_id": list, "date": "2026-11-20 11:00:00"}]),
        )
        .await;
        h.set_cm_now("2026-11-20 11:30:00").await;
        h.sync(&cm, false).await;
        let (s2, d2) = status(h.sf_records("CampaignMember").await);
        assert_eq!((s1.as_str(), s2.as_str()), (after1, after2), "{mode:?}");
        // Sydney is UTC+11 in November: 10:05 local is 23:05 UTC the day before.
        assert_eq!(
            (d1.as_str().unwrap(), d2.as_str().unwrap()),
            ("2026-11-19T23:05:00.000+0000", "2026-11-20T00:00:00.000+0000"),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn missing_statuses_are_created_with_the_right_responded_flag_in_a_japanese_org() {
    let mut scenario = worked_example_scenario();
    scenario.sf.language = "ja".into();
    let (h, cm) = Harness::linked(scenario, |_| {}).await;
    h.add_activity(&cm, json!([{"kind": "click", "email": "person0000001@example.com", "list_id": h.scenario.cm.lists[0].id, "date": "2026-11-20 10:00:00"}])).await;
    h.sync(&cm, false).await;
    let statuses = h.sf_records("CampaignMemberStatus").await;
    let flag = |label: &str| {
        statuses
            .iter()
            .find(|s| s["Label"] == label)
            .map(|s| s["HasResponded"].as_bool().unwrap())
    };
    assert_eq!(flag("送信"), Some(false), "the stock default stays");
    assert_eq!(flag("Clicked"), Some(true));
    assert_eq!(flag("Opened"), Some(true));
    assert_eq!(flag("Bounced"), Some(false));
    let member = h
        .sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m["Email"] == "person0000001@example.com")
        .unwrap();
    assert_eq!(
        (member["Status"].as_str(), member["HasResponded"].as_bool()),
        (Some("Clicked"), Some(true))
    );
}

#[tokio::test]
async fn unmatched_and_ambiguous_emails_are_reported_never_guessed() {
    let mut scenario = worked_example_scenario();
    // A second Contact with the first person's email and the same modification time.
    let mut twin = scenario.sf.records["Contact"]
        .first()
        .cloned()
        .unwrap_or_else(|| scenario.sf.records["Lead"][0].clone());
    twin.insert("Id".into(), json!("003000SB9999999990"));
    twin.remove("Company");
    let twin_email = twin["Email"].as_str().unwrap().to_owned();
    scenario.sf.records.get_mut("Contact").unwrap().push(twin);
    // Nobody is a member yet, so both candidates are equal.
    scenario.sf.records.insert("CampaignMember".into(), vec![]);
    let (h, cm) = Harness::linked(scenario, |_| {}).await;
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "open", "email": "stranger@example.com", "list_id": list, "date": "2026-11-20 10:00:00"},
                               {"kind": "open", "email": twin_email, "list_id": list, "date": "2026-11-20 10:00:00"}]),
    )
    .await;
    let CampaignOutcome::Done { run_id, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    let (_, failures) = h.engine.store.run(&run_id).await.unwrap().unwrap();
    // A person is found by the key of their address; the record holds no whole address.
    let reason = |email: &str| {
        failures
            .iter()
            .find(|f| f.person == Some(mapping::email::person_key(email)))
            .map(|f| f.reason.clone())
    };
    assert!(failures.iter().all(|f| !f.record.contains("stranger@")), "{failures:?}");
    assert_eq!(reason("stranger@example.com").as_deref(), Some("unmatched email"));
    assert_eq!(reason(&twin_email).as_deref(), Some("several matches"));
    assert!(
        h.sf_records("CampaignMember")
            .await
            .iter()
            .all(|m| m["Email"] != twin_email.as_str()),
        "no guess was made"
    );
}

#[tokio::test]
async fn a_campaign_synced_in_parts_ends_exactly_as_in_one_pass() {
    let scenario = generate(&Shape {
        seed: 9,
        recipients: 2_000,
        activities: 1_600,
        ..Shape::default()
    });
    let one_pass = Harness::new(scenario.clone(), |s| s.status_refresh = StatusRefresh::Always).await;
    let mut in_parts = Harness::new(scenario, |s| s.status_refresh = StatusRefresh::Always).await;
    in_parts.engine.options.part_size = 300;
    let before = salesforce_view(&one_pass).await;
    let CampaignOutcome::Done { counts: single, .. } = one_pass.sync(&one_pass.link_main().await, false).await else {
        panic!()
    };
    let CampaignOutcome::Done { counts: parted, .. } = in_parts.sync(&in_parts.link_main().await, false).await else {
        panic!()
    };
    let (single, parted) = (single.to_map(), parted.to_map()); // the run record's keys
    assert!(parted["parts"] >= 10, "{parted:?}");
    assert!(single["statuses_created"] > 0, "{single:?}");
    assert!(!single.contains_key("parts"));
    let view = salesforce_view(&one_pass).await;
    assert_ne!(view, before, "the sync changed something");
    assert_eq!(salesforce_view(&in_parts).await, view);
    for key in [
        "activities",
        "members_added",
        "members_updated",
        "people_updated",
        "skipped",
        "stats_written",
        // Written once, ahead of the first part's members, and seen by every later part's plan.
        "statuses_created",
    ] {
        assert_eq!(parted[key], single[key], "{key}");
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_anywhere() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 300,
            activities: 200,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    let before = h.sf_records("CampaignMember").await;
    let CampaignOutcome::Done {
        plan, dry_run: true, ..
    } = h.sync(&cm, true).await
    else {
        panic!()
    };
    assert!(plan.write_count() > 0, "there is work to show");
    let (_, writes) = h.sf_calls().await;
    assert_eq!(writes, 0);
    assert_eq!(h.sf_records("CampaignMember").await, before);
    assert!(
        h.engine.store.recent_runs(10).await.unwrap().is_empty(),
        "no run record"
    );
    let report = mapping::plan::SyncPlan {
        campaigns: vec![*plan],
        ..Default::default()
    }
    .report(mapping::plan::EmailDisplay::Redacted);
    assert!(report.contains("members to add"), "{report}");
}

#[tokio::test]
async fn engaged_adds_only_the_engaged_recipients_of_a_10_000_recipient_send_with_the_same_statistics() {
    use mapping::settings::AddMissingMembers;
    let scenario = generate(&Shape {
        recipients: 10_000,
        activities: 2_000,
        in_salesforce: 1.0,
        already_members: 0.0,
        ..Shape::default()
    });
    let main = harness::campaign_named(&scenario, "November newsletter").unwrap();
    let engaged_emails: std::collections::BTreeSet<String> = scenario
        .cm
        .campaigns
        .iter()
        .find(|c| c.id == main)
        .unwrap()
        .activity
        .iter()
        .map(|a| a.email.to_lowercase())
        .collect();
    let mut results = Vec::new();
    for choice in [AddMissingMembers::AllRecipients, AddMissingMembers::Engaged] {
        let (h, cm) = Harness::linked(scenario.clone(), |s| s.add_missing_members = choice).await;
        h.sync(&cm, false).await;
        let members: std::collections::BTreeSet<String> = h
            .sf_records("CampaignMember")
            .await
            .iter()
            .filter_map(|m| m["Email"].as_str().map(str::to_lowercase))
            .collect();
        let settings = h.settings().await;
        let campaign = h
            .sf_records("Campaign")
            .await
            .into_iter()
            .find(|c| c["Id"] == "701000SB0000000001")
            .unwrap();
        let statistics: Vec<Value> = settings
            .statistics_fields
            .values()
            .flatten()
            .map(|field| campaign[field.as_str()].clone())
            .collect();
        results.push((members, statistics));
    }
    let (all, all_statistics) = &results[0];
    let (engaged, engaged_statistics) = &results[1];
    assert!(all.len() > 9_000, "every matched recipient: {}", all.len());
    assert!(
        !engaged.is_empty() && engaged.len() < all.len() / 4,
        "{} of {}",
        engaged.len(),
        all.len()
    );
    assert!(engaged.is_subset(&engaged_emails), "only engaged recipients are added");
    let engaged_among_all: std::collections::BTreeSet<String> = all.intersection(&engaged_emails).cloned().collect();
    assert_eq!(engaged, &engaged_among_all, "every engaged recipient is added");
    assert!(all_statistics.iter().any(|v| !v.is_null()), "{all_statistics:?}");
    assert_eq!(
        all_statistics, engaged_statistics,
        "the statistics do not depend on who is a member"
    );
}

#[tokio::test]
async fn an_open_dated_in_the_hour_that_repeats_when_clocks_go_back_is_read() {
    // Sydney, 2027-04-04: at 03:00 AEDT clocks go back to 02:00 AEST, so 02:00-03:00 local
    // happens twice. CM dates and filters in local wall-clock time (the sandbox too).
    let h = Harness::new(
        generate(&Shape {
            recipients: 10,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    // A first sync during the first 02:xx hour.
    h.set_cm_now("2027-04-04 02:40:00").await;
    assert!(matches!(h.sync(&cm, false).await, CampaignOutcome::Done { .. }));
    // An hour later by the clock of the world, 02:xx again: an open dated 02:20, after the
    // first sync, though its local date is earlier than that sync's watermark (02:35).
    let person = &h.scenario.sf.records["Contact"][0];
    let email = person["Email"].as_str().unwrap().to_owned();
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "open", "email": email, "list_id": list, "date": "2027-04-04 02:20:00"}]),
    )
    .await;
    h.set_cm_now("2027-04-04 02:50:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert!(counts.activities >= 1, "the open was read: {counts:?}");
    let member = h
        .sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m["ContactId"] == person["Id"])
        .expect("the opener is a member");
    assert_eq!(member["Status"], "Opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_that_shows_up_in_cm_after_a_sync_read_past_its_date_is_read() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 10,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    h.set_cm_now("2026-11-03 10:00:00").await;
    assert!(matches!(h.sync(&cm, false).await, CampaignOutcome::Done { .. }));
    // CM shows an open dated 09:00 only now: the first sync read up to 09:55.
    h.add_activity(&cm, opens_of(&h, 0..1, "2026-11-03 09:00:00")).await;
    h.set_cm_now("2026-11-03 10:30:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(counts.activities, 1, "{counts:?}");
    let contact = &h.scenario.sf.records["Contact"][0];
    assert_eq!(
        member_status(&h.sf_records("CampaignMember").await, contact).as_deref(),
        Some("Opened")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_read_again_in_the_overlap_costs_no_salesforce_call() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 800,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    h.set_cm_now("2026-11-03 09:00:00").await;
    assert!(matches!(h.sync(&cm, false).await, CampaignOutcome::Done { .. }));
    // 250 opens between 09:00 and 13:10, synced at 13:20.
    h.add_activity(&cm, opens_of(&h, 0..250, "2026-11-03 09:00:00")).await;
    h.set_cm_now("2026-11-03 13:20:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!((counts.activities, counts.members_updated), (250, 250), "{counts:?}");
    // One new open at 13:30, synced at 13:40: the 250 are read again (inside the overlap) and
    // left out, so Salesforce hears about one person only.
    h.add_activity(&cm, opens_of(&h, 250..251, "2026-11-03 13:30:00")).await;
    h.set_cm_now("2026-11-03 13:40:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(
        (counts.activities, counts.already_applied, counts.members_updated),
        (1, 250, 1),
        "{counts:?}"
    );
    let (reads, writes) = h.sf_calls().await;
    // Statuses, members and people of one person; the statistics and that member written.
    assert!(reads <= 3 && writes <= 2, "reads {reads}, writes {writes}");
    // A late open in a quarter-hour already applied: that quarter-hour is applied again, whole.
    h.add_activity(&cm, opens_of(&h, 251..252, "2026-11-03 12:01:00")).await;
    h.set_cm_now("2026-11-03 13:50:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    // 12:00-12:15 (15 opens and the late one) and 13:30-13:45 (past the last watermark, 13:35,
    // so never counted whole) are applied: only the late open changes a member.
    assert_eq!((counts.activities, counts.members_updated), (17, 1), "{counts:?}");
    let members = h.sf_records("CampaignMember").await;
    let contact = &h.scenario.sf.records["Contact"][251];
    assert_eq!(member_status(&members, contact).as_deref(), Some("Opened"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_whose_statuses_are_spelled_in_another_case_gets_no_duplicates_and_its_own_spelling() {
    let mut scenario = generate(&Shape {
        recipients: 20,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    // An admin made the campaign's statuses by hand, in lower case.
    let campaign = "701000SB0000000001";
    for (n, (label, responded)) in [("opened", true), ("clicked", true)].into_iter().enumerate() {
        let status = json!({
            "Id": format!("01Y000SB00000009{n:02}"), "CampaignId": campaign, "Label": label,
            "HasResponded": responded, "IsDefault": false, "SortOrder": 20 + n,
        });
        let Value::Object(status) = status else { unreachable!() };
        scenario
            .sf
            .records
            .entry("CampaignMemberStatus".into())
            .or_default()
            .push(status);
    }
    let (h, cm) = Harness::linked(scenario, |_| {}).await;
    h.set_cm_now("2026-11-03 10:00:00").await;
    let list = h.scenario.cm.lists[0].id.clone();
    let email = |i: usize| {
        h.scenario.sf.records["Contact"][i]["Email"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    h.add_activity(
        &cm,
        json!([
            {"kind": "open", "email": email(0), "list_id": list, "date": "2026-11-03 09:00:00"},
            {"kind": "click", "email": email(1), "list_id": list, "date": "2026-11-03 09:01:00"},
        ]),
    )
    .await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(
        (counts.failed, counts.statuses_created),
        (0, 4),
        "the four others: {counts:?}"
    );
    let labels: Vec<String> = h
        .sf_records("CampaignMemberStatus")
        .await
        .into_iter()
        .filter(|s| s["CampaignId"] == campaign)
        .map(|s| s["Label"].as_str().unwrap().to_lowercase())
        .collect();
    let unique: std::collections::BTreeSet<&String> = labels.iter().collect();
    assert_eq!(unique.len(), labels.len(), "no label twice: {labels:?}");
    let members = h.sf_records("CampaignMember").await;
    let contacts = &h.scenario.sf.records["Contact"];
    assert_eq!(member_status(&members, &contacts[0]).as_deref(), Some("opened"));
    assert_eq!(member_status(&members, &contacts[1]).as_deref(), Some("clicked"));
    // Read again (the overlap): the members already have their status, spelled the org's way.
    h.set_cm_now("2026-11-03 10:30:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(counts.members_updated, 0, "{counts:?}");
}

/// A settings change previewed on a campaign: its next sync planned under the stored and the
/// proposed settings, as a dry run; the comparison is kept in the preview's record and
/// Salesforce is not written.
#[tokio::test]
async fn a_preview_compares_the_next_sync_under_the_stored_and_the_proposed_settings_writing_nothing() {
    let (h, cm) = Harness::linked(worked_example_scenario(), |s| s.status_refresh = StatusRefresh::Never).await;
    let list = h.scenario.cm.lists[0].id.clone();
    let email = "person0000000@example.com";
    h.add_activity(
        &cm,
        json!([{"kind": "open", "email": email, "list_id": list, "date": "2026-11-20 10:00:00"},
               {"kind": "click", "email": email, "list_id": list, "date": "2026-11-20 10:05:00"}]),
    )
    .await;
    h.set_cm_now("2026-11-20 10:30:00").await;
    let current = h.settings().await;
    let mut proposed = current.clone();
    proposed.status_refresh = StatusRefresh::Always;
    let now = chrono::Utc::now();
    h.engine
        .store
        .save_preview(&state::PreviewRecord {
            preview_id: "p1".into(),
            requested_by: "005SB00000000A1AAA".into(),
            requested_at: now,
            base_version: 1,
            proposed: Some(proposed.to_json()),
            campaigns: vec![cm.clone()],
            result: None,
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .unwrap();
    let members_before = h.sf_records("CampaignMember").await;

    let impacts = engine::admin::preview::SettingsPreview::new(&h.engine)
        .answer(&current, "p1")
        .await
        .unwrap();
    assert_eq!(impacts.len(), 1, "{impacts:?}");
    let (now, then) = (
        impacts[0].current.clone().unwrap(),
        impacts[0].proposed.clone().unwrap(),
    );
    assert_eq!((now.status_updates, then.status_updates), (0, 1), "{impacts:?}");
    assert_eq!(then.examples, ["p***@example.com: Sent → Clicked"]);
    assert_eq!(h.sf_records("CampaignMember").await, members_before, "nothing written");
    let kept = h.engine.store.preview("p1").await.unwrap().unwrap();
    assert!(kept.result.is_some(), "the comparison is kept for the console");
}
