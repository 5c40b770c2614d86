//! The API budgets: what a sync, a quiet campaign and a 1,000-event webhook delivery cost in
//! Salesforce and CM calls, on a clean sandbox and with realism on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use engine::campaign::CampaignOutcome;
use events::publisher::MemorySink;
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};

use common::*;

fn s_workload() -> Scenario {
    generate(&Shape {
        recipients: 10_000,
        activities: 8_000,
        ..Shape::default()
    })
}

#[tokio::test]
async fn first_sync_of_10k_recipients_stays_within_40_sf_calls_and_later_syncs_are_cheap() {
    s_workload_budgets(false).await;
}

/// The same budgets with the sandbox's realism mode on (short query pages, Bulk jobs that stay
/// `InProgress`, the concurrent-request limit, results in any order, records shown late, ...).
#[tokio::test]
async fn the_s_workload_budgets_hold_with_realism_on() {
    s_workload_budgets(true).await;
}

async fn s_workload_budgets(realism: bool) {
    let mut scenario = s_workload();
    scenario.faults.realism = realism;
    let (h, cm) = Harness::linked(scenario, |_| {}).await;
    let CampaignOutcome::Done { counts, plan, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    let mut reasons = std::collections::BTreeMap::new();
    for skip in &plan.skips {
        *reasons.entry(skip.reason.label()).or_insert(0) += 1;
    }
    eprintln!("skips: {reasons:?}");
    let (reads, writes) = h.sf_calls().await;
    // Members and people are looked up ~9,500 addresses per Composite call (naive: ~36,000).
    assert!(reads + writes <= 40, "first sync took {reads} reads + {writes} writes");
    eprintln!("realism {realism}: first sync: {reads} SF reads, {writes} SF writes; {counts:?}");
    assert!(
        counts.members_added > 4_000 && counts.members_updated > 4_000,
        "{counts:?}"
    );
    // Every matched recipient is a member, once.
    let members = h.sf_records("CampaignMember").await;
    let contacts_m = members.iter().filter(|m| m["ContactId"].is_string()).count();
    let leads_m = members.iter().filter(|m| m["LeadId"].is_string()).count();
    eprintln!(
        "members: {} contacts {} leads {}; people contacts {} leads {}",
        members.len(),
        contacts_m,
        leads_m,
        h.scenario.sf.records["Contact"].len(),
        h.scenario.sf.records["Lead"].len()
    );
    let mut keys: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "{}{}",
                m["ContactId"].as_str().unwrap_or_default(),
                m["LeadId"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "one member per person");
    let people = h.scenario.sf.records["Contact"].len() + h.scenario.sf.records["Lead"].len();
    assert_eq!(total, people);

    // Nothing new: not one Salesforce call.
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    let (reads, writes) = h.sf_calls().await;
    eprintln!("realism {realism}: no-op sync: {reads} SF reads, {writes} SF writes");
    assert_eq!((reads, writes), (0, 0), "{counts:?}");

    // 1,000 new activities: at most 15 calls.
    let emails: Vec<String> = (0..1_000)
        .map(|i| format!("person{:07}@example.com", i * 7 % 10_000))
        .collect();
    let activity: Vec<Value> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"kind": if i % 3 == 0 { "click" } else { "open" }, "email": e, "list_id": h.scenario.cm.lists[0].id, "date": format!("2026-11-27 1{}:{:02}:00", i % 10, i % 60)}))
        .collect();
    h.add_activity(&cm, Value::Array(activity)).await;
    h.set_cm_now("2026-11-28 09:00:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    let (reads, writes) = h.sf_calls().await;
    eprintln!("realism {realism}: incremental sync: {reads} SF reads, {writes} SF writes");
    assert!(
        reads + writes <= 15,
        "incremental sync took {reads} reads + {writes} writes: {counts:?}"
    );
    assert!(counts.member_updates > 0);
}

#[tokio::test]
async fn a_campaign_with_nothing_new_costs_two_cm_calls_and_no_salesforce_call_and_new_activity_is_still_read() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 200,
            activities: 150,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    h.set_cm_now("2026-11-27 09:00:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert!(counts.stats_written > 0 && counts.activities > 0, "{counts:?}");

    // Within the settle lag of the counts, the streams are read again (records counted at
    // 09:00 may not be readable yet), but Salesforce is not called: nothing is new.
    h.set_cm_now("2026-11-27 09:15:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(h.sf_calls().await, (0, 0), "{counts:?}");
    assert_eq!(counts.unchanged_in_cm, 0);

    // Once the streams are read past that moment, an unchanged campaign costs CM's summary
    // and clock, and nothing in Salesforce.
    h.set_cm_now("2026-11-27 09:30:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(h.control.cm_calls().await.unwrap(), 2, "{counts:?}");
    assert_eq!(h.sf_calls().await, (0, 0));
    assert_eq!((counts.unchanged_in_cm, counts.activities), (1, 0));

    // A new click changes the counts: it is read, and lands in Salesforce with the statistics.
    let person = &h.scenario.sf.records["Contact"][0];
    let email = person["Email"].as_str().unwrap().to_owned();
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "click", "email": email, "list_id": list, "date": "2026-11-27 09:31:00"}]),
    )
    .await;
    h.set_cm_now("2026-11-27 09:45:00").await;
    h.reset_counters().await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!((counts.unchanged_in_cm, counts.activities), (0, 1), "{counts:?}");
    assert!(counts.stats_written >= 1, "the click count changed: {counts:?}");
    let member = h
        .sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m["ContactId"] == person["Id"])
        .expect("the clicker is a member");
    assert_eq!(member["Status"], "Clicked");

    // A day after the last read, the streams are read whatever the counts say.
    h.set_cm_now("2026-11-28 10:00:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(counts.unchanged_in_cm, 0, "{counts:?}");
    h.set_cm_now("2026-11-28 10:15:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(counts.unchanged_in_cm, 1, "{counts:?}");
}

#[tokio::test]
async fn a_1000_event_delivery_is_applied_in_one_invocation_within_20_sf_calls_and_its_redelivery_writes_nothing() {
    webhook_delivery_budgets(false).await;
}

#[tokio::test]
async fn the_1000_event_delivery_budgets_hold_with_realism_on() {
    webhook_delivery_budgets(true).await;
}

async fn webhook_delivery_budgets(realism: bool) {
    let mut scenario = generate(&Shape {
        recipients: 1_200,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    scenario.faults.realism = realism;
    let list = scenario.cm.lists[0].id.clone();
    let h = Harness::new(scenario, |s| s.cm_lists = vec![list.clone()]).await;
    let settings = h.settings().await;
    let people: Vec<String> = h.scenario.sf.records["Contact"]
        .iter()
        .chain(&h.scenario.sf.records["Lead"])
        .map(|p| p["Email"].as_str().unwrap().to_owned())
        .collect();
    let fields: Vec<Value> = (0..20)
        .map(|i| json!({"Key": format!("F{i}"), "Value": "v".repeat(60)}))
        .collect();
    // Posted now (the intake refuses dates far from its clock), four hours after the changes.
    let date = harness::cm_date_ago(settings.zone(), 240);
    let events: Vec<Value> = people
        .iter()
        .take(1_000)
        .enumerate()
        .map(|(i, email)| {
            let (kind, state) = match i % 4 {
                0 => ("Subscribe", None),
                1 => ("Deactivate", Some("Bounced")),
                _ => ("Deactivate", Some("Unsubscribed")),
            };
            json!({"Type": kind, "Date": date, "EmailAddress": email, "Name": "N", "State": state, "CustomFields": fields})
        })
        .collect();
    cm_list_shows(&h, &list, json!(events)).await;
    // With realism CM's lists show a change up to 180 minutes late: the deliveries come then.
    h.set_cm_now(&harness::cm_date_ago(settings.zone(), 0)).await;
    let body = json!({"ListID": list, "Events": events}).to_string();
    let intake = engine::webhook::IntakeEngine {
        store: h.engine.store.clone(),
        publisher: std::sync::Arc::new(events::publisher::Publisher::new(MemorySink::default())),
    };
    let deliver_and_apply = || async {
        let before = intake.publisher.sink().events().len();
        let (status, answer) = intake
            .receive(
                &engine::webhook::WebhookTokens {
                    current: TOKEN_FOR_TEST.into(),
                    previous: None,
                },
                TOKEN_FOR_TEST,
                Some("application/json"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let handed_on: Vec<events::Event> = intake.publisher.sink().events().into_iter().skip(before).collect();
        let mut outcomes = Vec::new();
        for event in &handed_on {
            let events::Event::WebhookBatchReceived(batch) = event else {
                panic!("{event:?}")
            };
            outcomes.push(h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap());
        }
        outcomes
    };
    h.reset_counters().await;
    let first = deliver_and_apply().await;
    let cm_calls = h.control.cm_calls().await.unwrap();
    let (reads, writes) = h.sf_calls().await;
    eprintln!(
        "realism {realism}: 1,000 events: {} consumer invocation(s), {reads} SF reads, {writes} SF writes, {cm_calls} CM calls, {:?}",
        first.len(),
        first
    );
    assert_eq!(first.len(), 1, "one hand-off, one consumer invocation");
    assert_eq!(first[0].applied, 1_000);
    assert!(reads + writes <= 20, "{reads} reads + {writes} writes");
    let contacts = h.sf_records("Contact").await;
    let leads = h.sf_records("Lead").await;
    let opted_out = contacts
        .iter()
        .chain(&leads)
        .filter(|p| p["HasOptedOutOfEmail"] == true)
        .count();
    let bounced = contacts
        .iter()
        .chain(&leads)
        .filter(|p| !p["EmailBouncedDate"].is_null())
        .count();
    assert_eq!(
        (opted_out, bounced),
        (500, 250),
        "every unsubscriber opted out, every bounce recorded"
    );

    h.reset_counters().await;
    let again = deliver_and_apply().await;
    assert!(again.is_empty(), "everything applied: nothing handed on");
    assert_eq!(h.sf_calls().await, (0, 0), "the redelivery costs Salesforce nothing");
}
