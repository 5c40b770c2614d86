//! The sync against the sandbox, in process: the rules of PRODUCT.md §3 as a user sees them in
//! Salesforce, and the API budgets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use engine::campaign::{CampaignOutcome, Mode};
use engine::{Deadline, Engine};
use events::LinkOrigin;
use events::publisher::MemorySink;
use harness::Control;
use mapping::{Settings, StatusRefresh};
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};
use state::memory::MemoryStore;
use state::{LinkRecord, LinkStore, RetryQueue, RunStore, SettingsStore, WatermarkStore, WebhookEventStore};

struct Harness {
    running: sandbox::Running,
    engine: Engine<MemoryStore, MemorySink>,
    control: Control,
    scenario: Scenario,
}

impl Harness {
    async fn new(scenario: Scenario, settings: impl FnOnce(&mut Settings)) -> Harness {
        let running = harness::start_sandbox(scenario.clone()).await.unwrap();
        let mut s = harness::settings_for(&scenario).unwrap();
        settings(&mut s);
        let engine = harness::memory_engine(&running, &s).await.unwrap();
        Harness {
            control: Control::of(&running),
            running,
            engine,
            scenario,
        }
    }

    async fn settings(&self) -> Settings {
        self.engine.settings().await.unwrap()
    }

    fn main_campaign(&self) -> (String, String) {
        let cm = harness::campaign_named(&self.scenario, "November newsletter").unwrap();
        (cm, "701000SB0000000001".to_owned())
    }

    async fn link_main(&self) -> String {
        let (cm, sf) = self.main_campaign();
        self.engine
            .store
            .put_link(&LinkRecord {
                cm_campaign_id: cm.clone(),
                sf_campaign_id: sf,
                origin: LinkOrigin::Manual,
                linked_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        cm
    }

    async fn sync(&self, cm: &str, dry_run: bool) -> CampaignOutcome {
        let mode = if dry_run { Mode::DryRun } else { Mode::APPLY };
        self.engine
            .sync_campaign(
                &self.settings().await,
                cm,
                &engine::new_run_id(),
                mode,
                Deadline::none(),
            )
            .await
            .unwrap()
    }

    async fn sf_records(&self, object: &str) -> Vec<Value> {
        self.control.sf_records(object).await.unwrap()
    }

    async fn sf_calls(&self) -> (u64, u64) {
        self.control.sf_calls().await.unwrap()
    }

    async fn reset_counters(&self) {
        self.control.reset_counters().await.unwrap()
    }

    async fn set_cm_now(&self, now: &str) {
        self.control.set_cm_now(now).await.unwrap()
    }

    async fn add_activity(&self, cm: &str, activity: Value) {
        self.control.add_activity(cm, activity).await.unwrap()
    }
}

/// CM's list shows these Deactivate events (no webhook registered: nothing is posted).
async fn cm_list_shows(h: &Harness, list: &str, events: Value) {
    h.control.deliver(list, events).await.unwrap();
}

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
    let h = Harness::new(scenario, |_| {}).await;
    let cm = h.link_main().await;
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

/// The campaigns a scheduled run asked to sync.
async fn scheduled_syncs(h: &Harness) -> Vec<String> {
    let before = h.engine.publisher.sink().events().len();
    h.engine
        .run_scheduled(&h.settings().await, &engine::new_run_id())
        .await
        .unwrap();
    harness::sync_requests(&h.engine.publisher.sink().events()[before..])
}

#[tokio::test]
async fn a_link_typed_into_salesforce_is_used_only_if_it_names_a_campaign_of_a_configured_client() {
    let mut scenario = generate(&Shape {
        recipients: 10,
        activities: 5,
        ..Shape::default()
    });
    let campaigns = scenario.sf.records.get_mut("Campaign").unwrap();
    for (n, value) in [
        "fedcba9876543210fedcba9876543210", // well formed, but no campaign of ours
        "' OR Name != null",
    ]
    .into_iter()
    .enumerate()
    {
        let mut campaign = campaigns[0].clone();
        campaign.insert("Id".into(), json!(format!("701000SB00000000{:02}", n + 10)));
        campaign.insert("CM_Campaign_ID__c".into(), json!(value));
        campaigns.push(campaign);
    }
    let h = Harness::new(scenario, |_| {}).await;
    let outcome = h
        .engine
        .run_scheduled(&h.settings().await, &engine::new_run_id())
        .await
        .unwrap();
    assert_eq!((outcome.links_found, outcome.links_refused), (1, 2), "{outcome:?}");
    let (cm, sf) = h.main_campaign();
    let links = h.engine.link_map().await.unwrap();
    assert_eq!(links, std::collections::BTreeMap::from([(cm.clone(), sf)]), "only ours");
    assert_eq!(scheduled_syncs(&h).await, [cm], "only ours is synced");
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
    let h = Harness::new(scenario, |_| {}).await;
    let cm = h.link_main().await;
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

async fn hot_syncs(h: &Harness) -> Vec<String> {
    let before = h.engine.publisher.sink().events().len();
    let outcome = h
        .engine
        .run_hot(&h.settings().await, &engine::new_run_id())
        .await
        .unwrap();
    assert!(!outcome.busy);
    harness::sync_requests(&h.engine.publisher.sink().events()[before..])
}

#[tokio::test]
async fn the_schedule_syncs_a_campaign_by_its_age_and_a_retired_one_only_when_asked_or_active_again() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 50,
            activities: 40,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    let campaign = h.scenario.cm.campaigns.iter().find(|c| c.id == cm).unwrap();
    // Sent at 09:00, CM's local time (Sydney).
    let sent =
        chrono::NaiveDateTime::parse_from_str(campaign.sent_date.as_deref().unwrap(), "%Y-%m-%d %H:%M:%S").unwrap();
    let at = |days: i64, minutes: i64| {
        (sent + chrono::Duration::days(days) + chrono::Duration::minutes(minutes))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let sync_counts = |outcome: CampaignOutcome| match outcome {
        CampaignOutcome::Done { counts, .. } => counts,
        other => panic!("{other:?}"),
    };

    // Day 1: synced at every run, and by the hot schedule.
    h.set_cm_now(&at(1, 0)).await;
    assert!(scheduled_syncs(&h).await.contains(&cm), "never synced: due");
    assert!(hot_syncs(&h).await.is_empty(), "never synced: the scheduled run's");
    h.sync(&cm, false).await;
    h.set_cm_now(&at(1, 5)).await;
    assert_eq!(hot_syncs(&h).await, std::slice::from_ref(&cm), "in its first 48 hours");
    h.set_cm_now(&at(1, 15)).await;
    assert!(scheduled_syncs(&h).await.contains(&cm), "young: every run");

    // Day 5: hourly, not hot.
    h.set_cm_now(&at(5, 0)).await;
    h.sync(&cm, false).await;
    h.set_cm_now(&at(5, 15)).await;
    assert!(!scheduled_syncs(&h).await.contains(&cm), "synced 15 minutes ago");
    assert!(hot_syncs(&h).await.is_empty(), "past its first 48 hours");
    h.set_cm_now(&at(5, 60)).await;
    assert!(scheduled_syncs(&h).await.contains(&cm), "an hour later");

    // Day 20: daily, at the day's end (just after CM's midnight), whenever it was synced.
    h.set_cm_now(&at(20, 0)).await;
    h.sync(&cm, false).await;
    h.set_cm_now(&at(20, 14 * 60 + 50)).await; // 23:50
    assert!(
        !scheduled_syncs(&h).await.contains(&cm),
        "daily: not before the day ends"
    );
    h.set_cm_now(&at(20, 15 * 60 + 7)).await; // 00:07 the next day
    assert!(scheduled_syncs(&h).await.contains(&cm), "the day's end sync");

    // Day 61: retired after its last sync. The schedule leaves it alone, apart from a daily
    // look at its summary (one CM call, no SF call).
    h.set_cm_now(&at(61, 0)).await;
    h.sync(&cm, false).await;
    h.set_cm_now(&at(65, 0)).await;
    assert!(!scheduled_syncs(&h).await.contains(&cm), "retired");
    h.set_cm_now(&at(65, 15)).await;
    assert!(!scheduled_syncs(&h).await.contains(&cm), "retired");

    // On demand (`cm-sf-admin sync --campaign`) it is synced.
    assert_eq!(sync_counts(h.sync(&cm, false).await).activities, 0, "nothing new");

    // New activity: the next day's check finds it and the schedule syncs it, hourly again
    // until it is quiet; then it retires again.
    let email = h.scenario.sf.records["Contact"][0]["Email"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "open", "email": email, "list_id": list, "date": at(65, 30)}]),
    )
    .await;
    h.set_cm_now(&at(65, 60)).await;
    assert!(
        !scheduled_syncs(&h).await.contains(&cm),
        "checked once a day: not before the day ends"
    );
    h.set_cm_now(&at(65, 15 * 60 + 7)).await; // 00:07 the next day
    assert!(
        scheduled_syncs(&h).await.contains(&cm),
        "active again: found by the day's check"
    );
    let counts = sync_counts(h.sync(&cm, false).await);
    assert!(counts.activities >= 1, "{counts:?}");
    h.set_cm_now(&at(65, 16 * 60 + 7)).await;
    assert!(scheduled_syncs(&h).await.contains(&cm), "active again: hourly");
    h.sync(&cm, false).await;
    h.set_cm_now(&at(65, 18 * 60)).await;
    assert!(!scheduled_syncs(&h).await.contains(&cm), "quiet again: retired");
    h.set_cm_now(&at(66, 15 * 60 + 7)).await;
    assert!(
        !scheduled_syncs(&h).await.contains(&cm),
        "the next day's check finds nothing new"
    );
}

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

#[tokio::test]
async fn the_worked_example_in_every_mode() {
    for (mode, after1, after2) in [
        (StatusRefresh::Never, "Sent", "Sent"),
        (StatusRefresh::Always, "Clicked", "Opened"),
        (StatusRefresh::OnceOnly, "Opened", "Opened"),
        (StatusRefresh::ForwardOnly, "Clicked", "Clicked"),
    ] {
        let h = Harness::new(worked_example_scenario(), |s| s.status_refresh = mode).await;
        let cm = h.link_main().await;
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
    let h = Harness::new(scenario, |_| {}).await;
    let cm = h.link_main().await;
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
    let h = Harness::new(scenario, |_| {}).await;
    let cm = h.link_main().await;
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

/// The campaign's CM id and the members one clean sync of `scenario` leaves in Salesforce.
async fn clean_run(scenario: &Scenario) -> (String, Vec<(String, String, String)>) {
    let h = Harness::new(scenario.clone(), |_| {}).await;
    let cm = h.link_main().await;
    h.sync(&cm, false).await;
    (cm, member_rows(h.sf_records("CampaignMember").await))
}

fn member_rows(records: Vec<Value>) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = records
        .iter()
        .map(|m| {
            (
                m["Email"].as_str().unwrap_or_default().to_owned(),
                m["Status"].as_str().unwrap_or_default().to_owned(),
                m["CM_Activity_Date__c"].to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_run_cut_off_mid_apply_resumes_with_nothing_lost_or_doubled() {
    let scenario = generate(&Shape {
        recipients: 500,
        activities: 400,
        ..Shape::default()
    });
    let (_, expected) = clean_run(&scenario).await;

    for faults in [
        json!({"seed": 5, "sf": {"lock_row_rate": 1.0}}),
        json!({"seed": 5, "sf": {"error_rate": 0.7}}),
    ] {
        let h = Harness::new(scenario.clone(), |_| {}).await;
        let cm = h.link_main().await;
        let put = |body: Value| {
            reqwest::Client::new()
                .put(format!("{}/_sandbox/faults", h.running.sf_url))
                .json(&body)
                .send()
        };
        put(faults.clone()).await.unwrap();
        let cut = h
            .engine
            .sync_campaign(
                &h.settings().await,
                &cm,
                &engine::new_run_id(),
                Mode::APPLY,
                Deadline::none(),
            )
            .await;
        let incomplete = match &cut {
            Err(_) => true,
            Ok(CampaignOutcome::Done { counts, .. }) => counts.failed > 0,
            Ok(_) => false,
        };
        assert!(incomplete, "{faults}: the first run must not complete ({cut:?})");
        assert!(
            h.engine.store.watermarks(&cm).await.unwrap().is_empty(),
            "{faults}: no watermark moves past unapplied work"
        );
        put(json!({"seed": 5})).await.unwrap();
        h.sync(&cm, false).await;
        h.sync(&cm, false).await;
        assert_eq!(member_rows(h.sf_records("CampaignMember").await), expected, "{faults}");
    }
}

#[tokio::test]
async fn a_person_whose_write_keeps_failing_transiently_goes_to_the_retry_queue_and_the_campaign_moves_on() {
    let small = generate(&Shape {
        recipients: 50,
        activities: 20,
        in_salesforce: 1.0,
        already_members: 1.0,
        ..Shape::default()
    });
    let h = Harness::new(small, |s| s.update_campaign_statistics = false).await;
    let cm = h.link_main().await;
    h.sync(&cm, false).await;
    let members = h.sf_records("CampaignMember").await;
    let email = members[0]["Email"].as_str().unwrap().to_owned();
    let list = h.scenario.cm.lists[0].id.clone();
    h.add_activity(
        &cm,
        json!([{"kind": "click", "email": email, "list_id": list, "date": "2026-11-27 10:00:00"}]),
    )
    .await;
    h.set_cm_now("2026-11-27 11:00:00").await;
    // Every record write now fails with UNABLE_TO_LOCK_ROW, retries included.
    h.control
        .set_faults(json!({"seed": 3, "sf": {"lock_row_rate": 1.0}}))
        .await
        .unwrap();
    let before = h.engine.store.watermarks(&cm).await.unwrap();
    for attempt in 1..engine::campaign::TRANSIENT_ATTEMPTS {
        let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
            panic!()
        };
        assert_eq!(counts.failed, 1, "attempt {attempt}");
        assert_eq!(
            h.engine.store.watermarks(&cm).await.unwrap(),
            before,
            "attempt {attempt}: the click is read again next time"
        );
    }
    h.sync(&cm, false).await;
    let after = h.engine.store.watermarks(&cm).await.unwrap();
    assert!(
        after.values().max() > before.values().max(),
        "the campaign moves on after {} attempts",
        engine::campaign::TRANSIENT_ATTEMPTS
    );
    let queued: Vec<String> = h
        .engine
        .store
        .failed_records(&cm, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        queued,
        [mapping::email::person_key(&email)],
        "the person waits in the retry queue"
    );

    // Salesforce recovers: the next run retries the person from the queue.
    h.control.set_faults(json!({"seed": 3})).await.unwrap();
    h.sync(&cm, false).await;
    let member = h
        .sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m["Email"] == email.as_str())
        .unwrap();
    assert_eq!(member["Status"], "Clicked");
    assert!(h.engine.store.failed_records(&cm, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_run_near_its_deadline_continues_in_a_new_invocation() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 200,
            activities: 100,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let cm = h.link_main().await;
    let run = engine::new_run_id();
    let outcome = h
        .engine
        .sync_campaign(
            &h.settings().await,
            &cm,
            &run,
            Mode::APPLY,
            Deadline::at(std::time::Instant::now()),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CampaignOutcome::Continued { run_id: run.clone() });
    assert_eq!(h.sf_calls().await.1, 0, "no work started after the deadline");
    let events = h.engine.publisher.sink().events();
    assert_eq!(
        events
            .iter()
            .map(|e| e.idempotency_key().to_owned())
            .collect::<Vec<_>>(),
        [format!("continue:{run}:{cm}:1")]
    );
    let CampaignOutcome::Done { counts, .. } = h
        .engine
        .sync_campaign(
            &h.settings().await,
            &cm,
            &run,
            Mode::Apply { continuation: 1 },
            Deadline::none(),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(counts.members_added > 0);
}

#[tokio::test]
async fn a_continuation_starts_after_the_parts_the_invocation_before_it_applied() {
    let scenario = generate(&Shape {
        recipients: 600,
        activities: 500,
        ..Shape::default()
    });
    let part_size = 150;
    // A whole run, counting the deadline checks it makes: one per page read, one after
    // reading, one before each part.
    let mut whole = Harness::new(scenario.clone(), |_| {}).await;
    whole.engine.options.part_size = part_size;
    let cm = whole.link_main().await;
    let counting = Deadline::at_check(u32::MAX);
    let settings = whole.settings().await;
    let CampaignOutcome::Done {
        counts: whole_counts, ..
    } = whole
        .engine
        .sync_campaign(&settings, &cm, &engine::new_run_id(), Mode::APPLY, counting.clone())
        .await
        .unwrap()
    else {
        panic!()
    };
    let parts = whole_counts.parts as u32;
    assert!(parts >= 4, "{parts} parts");
    let reading_checks = counting.checks_made() - parts - 1;
    let (whole_reads, whole_writes) = whole.sf_calls().await;

    // What an invocation reads before its first part.
    let mut before_parts = Harness::new(scenario.clone(), |_| {}).await;
    before_parts.engine.options.part_size = part_size;
    before_parts.link_main().await;
    let at_first_part = Deadline::at_check(reading_checks + 2);
    let outcome = before_parts
        .engine
        .sync_campaign(&settings, &cm, &engine::new_run_id(), Mode::APPLY, at_first_part)
        .await;
    assert!(matches!(outcome, Ok(CampaignOutcome::Continued { .. })));
    let setup_reads = before_parts.sf_calls().await.0;

    // The same run, cut off before its third part.
    let mut cut = Harness::new(scenario, |_| {}).await;
    cut.engine.options.part_size = part_size;
    cut.link_main().await;
    let run = engine::new_run_id();
    let outcome = cut
        .engine
        .sync_campaign(
            &settings,
            &cm,
            &run,
            Mode::APPLY,
            Deadline::at_check(reading_checks + 4),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CampaignOutcome::Continued { run_id: run.clone() });
    let (handed, _) = cut.engine.store.run(&format!("{run}:{cm}")).await.unwrap().unwrap();
    assert_eq!(handed.status, state::RunStatus::Continued);
    let added_before = handed.counts["members_added"];
    assert!(added_before > 0, "the two parts done show in the run record");
    assert!(
        cut.engine.store.watermarks(&cm).await.unwrap().is_empty(),
        "watermarks move only when every part is applied"
    );
    let first_writes = cut.sf_calls().await.1;

    let CampaignOutcome::Done { counts, .. } = cut
        .engine
        .sync_campaign(&settings, &cm, &run, Mode::Apply { continuation: 1 }, Deadline::none())
        .await
        .unwrap()
    else {
        panic!()
    };
    let (all_reads, all_writes) = cut.sf_calls().await;
    eprintln!(
        "whole run: {whole_reads} reads, {whole_writes} writes; cut: {all_reads} reads, {all_writes} writes ({first_writes} before the cut); {setup_reads} reads before a first part"
    );
    assert!(
        all_reads <= whole_reads + setup_reads,
        "the parts done are not read again: only what any invocation reads before its first part"
    );
    assert_eq!(
        all_writes, whole_writes,
        "both invocations wrote what one whole run writes"
    );
    assert_eq!(
        counts.members_added, whole_counts.members_added,
        "the run's counts add up"
    );
    assert_eq!(
        member_rows(cut.sf_records("CampaignMember").await),
        member_rows(whole.sf_records("CampaignMember").await)
    );
    assert!(!cut.engine.store.watermarks(&cm).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_campaign_salesforce_refuses_to_create_is_recorded_and_left_alone_until_an_admin_asks() {
    let scenario = generate(&Shape {
        recipients: 50,
        activities: 20,
        extra_campaigns: 2,
        ..Shape::default()
    });
    let h = Harness::new(scenario, |s| {
        s.auto_create_campaigns = true;
        s.auto_create_enabled_at = Some(chrono::DateTime::UNIX_EPOCH);
    })
    .await;
    let settings = h.settings().await;
    let discovered = |h: &Harness| {
        h.engine
            .publisher
            .sink()
            .events()
            .into_iter()
            .filter_map(|e| match e {
                events::Event::CampaignDiscovered(d) => Some(d.campaign),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let first = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    let campaigns = discovered(&h);
    assert!(first.to_create >= 2 && campaigns.len() == first.to_create);

    // A validation rule refuses every new Campaign.
    h.control
        .set_faults(json!({"seed": 2, "sf": {"validation_error_rate": 1.0}}))
        .await
        .unwrap();
    for campaign in &campaigns {
        let outcome = h
            .engine
            .auto_create(&settings, campaign, LinkOrigin::AutoCreated)
            .await
            .unwrap();
        assert!(
            matches!(&outcome, engine::autocreate::AutoCreateOutcome::Refused { reason } if reason.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION")),
            "{outcome:?}"
        );
    }
    let refused = h
        .engine
        .store
        .failed_records(engine::autocreate::REFUSED_SCOPE, 100)
        .await
        .unwrap();
    assert_eq!(refused.len(), campaigns.len(), "each refusal is kept with its reason");

    // The next scheduled runs do not ask again.
    let published_before = discovered(&h).len();
    let next = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!((next.to_create, next.creation_refused), (0, campaigns.len()));
    assert_eq!(discovered(&h).len(), published_before, "no new creation request");

    // The rule is fixed and an admin asks (a backfill): created, and the record cleared.
    h.control.set_faults(json!({"seed": 2})).await.unwrap();
    let outcome = h.engine.backfill_one(&settings, &campaigns[0]).await.unwrap();
    assert!(
        matches!(
            outcome,
            engine::autocreate::AutoCreateOutcome::Linked { created: true, .. }
        ),
        "{outcome:?}"
    );
    let left = h
        .engine
        .store
        .failed_records(engine::autocreate::REFUSED_SCOPE, 100)
        .await
        .unwrap();
    assert_eq!(left.len(), campaigns.len() - 1);
}

#[tokio::test]
async fn auto_creation_is_not_retrospective_and_never_makes_two_campaigns() {
    let scenario = generate(&Shape {
        recipients: 50,
        activities: 20,
        extra_campaigns: 3,
        ..Shape::default()
    });
    let h = Harness::new(scenario, |s| s.auto_create_campaigns = true).await;
    // Switched on "now": every scenario campaign was sent before, so none qualifies.
    let mut stored = h.engine.store.load_settings().await.unwrap().unwrap();
    stored.settings = stored
        .settings
        .clone()
        .prepare_update(
            Some(&Settings {
                auto_create_campaigns: false,
                ..stored.settings.clone()
            }),
            chrono::Utc::now(),
        )
        .unwrap();
    h.engine
        .store
        .save_settings(&stored.settings, Some(stored.version), chrono::Utc::now())
        .await
        .unwrap();
    let outcome = h
        .engine
        .run_scheduled(&h.settings().await, &engine::new_run_id())
        .await
        .unwrap();
    assert_eq!(outcome.to_create, 0, "not retrospective");
    let campaigns_before = h.sf_records("Campaign").await.len();

    // A campaign created after the switch qualifies; handling its event twice makes one Campaign.
    let late = mapping::autocreate::DiscoveredCampaign {
        cm_campaign_id: "f".repeat(32),
        cm_client_id: h.scenario.cm.clients[0].id.clone(),
        name: "Brand new".into(),
        subject: "New".into(),
        state: mapping::autocreate::CmCampaignState::Draft,
        created_at: Some(chrono::Utc::now() + chrono::Duration::minutes(1)),
        sent_at: None,
    };
    let first = h
        .engine
        .auto_create(&h.settings().await, &late, LinkOrigin::AutoCreated)
        .await
        .unwrap();
    let again = h
        .engine
        .auto_create(&h.settings().await, &late, LinkOrigin::AutoCreated)
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            engine::autocreate::AutoCreateOutcome::Linked { created: true, .. }
        ),
        "{first:?}"
    );
    assert!(
        matches!(again, engine::autocreate::AutoCreateOutcome::Skipped { .. }),
        "{again:?}"
    );
    let campaigns = h.sf_records("Campaign").await;
    assert_eq!(campaigns.len(), campaigns_before + 1);
    let created = campaigns.iter().find(|c| c["Name"] == "Brand new").unwrap();
    assert_eq!(created["CM_Campaign_ID__c"], late.cm_campaign_id.as_str());
    let labels: Vec<String> = h
        .sf_records("CampaignMemberStatus")
        .await
        .iter()
        .filter(|s| s["CampaignId"] == created["Id"])
        .map(|s| s["Label"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        labels.contains(&"Clicked".to_owned()) && labels.contains(&"Sent".to_owned()),
        "{labels:?}"
    );
    let linked = h.engine.publisher.sink().events();
    assert!(linked.iter().any(|e| e.detail_type() == "campaign-linked.v1"));
}

#[tokio::test]
async fn the_same_sync_delivered_twice_at_once_writes_exactly_what_one_does() {
    let scenario = generate(&Shape {
        recipients: 2_000,
        activities: 1_500,
        ..Shape::default()
    });
    let once = Harness::new(scenario.clone(), |_| {}).await;
    let cm = once.link_main().await;
    once.reset_counters().await;
    once.sync(&cm, false).await;
    let single = once.sf_calls().await;

    let twice = Harness::new(scenario, |_| {}).await;
    twice.link_main().await;
    twice.reset_counters().await;
    let (settings, run) = (twice.settings().await, engine::new_run_id());
    let deliver = || {
        twice
            .engine
            .sync_campaign(&settings, &cm, &run, Mode::APPLY, Deadline::none())
    };
    let (a, b) = tokio::join!(deliver(), deliver());
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == CampaignOutcome::Busy).count(),
        1,
        "one delivery runs, the other finds the lease held: {:?}",
        outcomes.iter().map(CampaignOutcome::summary).collect::<Vec<_>>()
    );
    let double = twice.sf_calls().await;
    eprintln!("one delivery: {single:?} SF reads/writes; two at once: {double:?}");
    assert_eq!(double, single, "the same calls as one delivery");
    assert_eq!(
        member_rows(twice.sf_records("CampaignMember").await),
        member_rows(once.sf_records("CampaignMember").await)
    );
}

#[tokio::test]
async fn a_run_killed_mid_campaign_is_marked_abandoned_and_the_next_one_ends_as_a_clean_run() {
    let scenario = generate(&Shape {
        recipients: 3_000,
        activities: 2_500,
        ..Shape::default()
    });
    let (cm, clean) = clean_run(&scenario).await;
    let mut h = Harness::new(scenario, |_| {}).await;
    h.engine.options.lease = std::time::Duration::from_secs(1);
    h.link_main().await;
    h.control
        .set_faults(json!({"seed": 1, "sf": {"latency_ms": 40}}))
        .await
        .unwrap();
    let settings = h.settings().await;
    let killed = engine::new_run_id();
    let sync = h
        .engine
        .sync_campaign(&settings, &cm, &killed, Mode::APPLY, Deadline::none());
    let first_write = async {
        while h.sf_calls().await.1 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    // The invocation dies once it has written to Salesforce (the future is dropped, as a Lambda
    // timeout or crash drops it): no commit, no release, the run record left Running.
    tokio::select! {
        outcome = sync => panic!("finished before it could be killed: {:?}", outcome.map(|o| o.summary())),
        () = first_write => {}
    }
    h.control.set_faults(json!({"seed": 1})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await; // its lease span passes

    h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    let (record, failures) = h.engine.store.run(&format!("{killed}:{cm}")).await.unwrap().unwrap();
    assert_eq!(record.status, state::RunStatus::Abandoned);
    assert!(
        failures.iter().any(|f| f.code.as_deref() == Some("ABANDONED")),
        "{failures:?}"
    );

    h.engine.options.lease = engine::EngineOptions::default().lease; // a lease that covers a sync
    let CampaignOutcome::Done { .. } = h.sync(&cm, false).await else {
        panic!("the next sync finishes")
    };
    assert_eq!(
        member_rows(h.sf_records("CampaignMember").await),
        clean,
        "Salesforce ends as after a clean run"
    );
}

#[tokio::test]
async fn a_continuation_killed_after_taking_the_run_over_is_marked_abandoned_too() {
    let small = generate(&Shape {
        recipients: 50,
        activities: 20,
        ..Shape::default()
    });
    let mut h = Harness::new(small, |_| {}).await;
    h.engine.options.lease = std::time::Duration::from_secs(1);
    let cm = h.link_main().await;
    let (settings, run) = (h.settings().await, engine::new_run_id());
    let handed = h
        .engine
        .sync_campaign(&settings, &cm, &run, Mode::APPLY, Deadline::at_check(1))
        .await;
    assert!(matches!(handed, Ok(CampaignOutcome::Continued { .. })), "{handed:?}");
    h.control
        .set_faults(json!({"seed": 1, "cm": {"latency_ms": 200}}))
        .await
        .unwrap();
    let continuation = Mode::Apply { continuation: 1 };
    let killed = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        h.engine
            .sync_campaign(&settings, &cm, &run, continuation, Deadline::none()),
    )
    .await;
    assert!(killed.is_err(), "the continuation died while reading CM");
    let record_id = format!("{run}:{cm}");
    let (taken_over, _) = h.engine.store.run(&record_id).await.unwrap().unwrap();
    assert_eq!(taken_over.status, state::RunStatus::Running);
    h.control.set_faults(json!({"seed": 1})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    let (record, _) = h.engine.store.run(&record_id).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        state::RunStatus::Abandoned,
        "not left `running` or `continued`"
    );
}

#[tokio::test]
async fn a_chain_of_continuations_that_never_finishes_stops_with_a_clear_failure() {
    let small = generate(&Shape {
        recipients: 50,
        activities: 20,
        ..Shape::default()
    });
    let h = Harness::new(small, |_| {}).await;
    let cm = h.link_main().await;
    let (settings, run) = (h.settings().await, engine::new_run_id());
    let now = || Deadline::at(std::time::Instant::now());
    // The first invocation hands over at once; so would every later one.
    let first = h.engine.sync_campaign(&settings, &cm, &run, Mode::APPLY, now()).await;
    assert!(matches!(first, Ok(CampaignOutcome::Continued { .. })), "{first:?}");
    // Hand-overs that finish no part stop the run after a few, however many are allowed.
    let stalled = {
        let other = engine::new_run_id();
        let mut outcomes = Vec::new();
        for continuation in 0..=engine::campaign::MAX_STALLED_HAND_OVERS {
            let mode = Mode::Apply { continuation };
            outcomes.push(h.engine.sync_campaign(&settings, &cm, &other, mode, now()).await);
        }
        outcomes
    };
    let (last, before) = stalled.split_last().unwrap();
    assert!(
        before
            .iter()
            .all(|o| matches!(o, Ok(CampaignOutcome::Continued { .. })))
    );
    assert!(matches!(last, Err(engine::EngineError::NoProgress { .. })), "{last:?}");
    let too_many = Mode::Apply {
        continuation: engine::campaign::MAX_CONTINUATIONS + 1,
    };
    let error = h
        .engine
        .sync_campaign(&settings, &cm, &run, too_many, now())
        .await
        .unwrap_err();
    assert!(matches!(error, engine::EngineError::NoProgress { .. }), "{error}");
    assert!(!error.is_retryable(), "retrying cannot help");
    let (record, failures) = h.engine.store.run(&format!("{run}:{cm}")).await.unwrap().unwrap();
    assert_eq!(record.status, state::RunStatus::Failed);
    assert!(
        failures.iter().any(|f| f.reason.contains("continuations")),
        "{failures:?}"
    );
}

#[tokio::test]
async fn a_webhook_opt_out_salesforce_refuses_is_never_called_applied() {
    let small = generate(&Shape {
        recipients: 10,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let h = Harness::new(small, |s| s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList).await;
    let settings = h.settings().await;
    let contact = h.scenario.sf.records["Contact"][0].clone();
    let email = contact["Email"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now();
    let event = state::WebhookEventRecord {
        dedupe_key: "k-refused".into(),
        list_id: h.scenario.cm.lists[0].id.clone(),
        payload: json!({"Type": "Deactivate", "Date": "2026-11-27 10:00:00", "EmailAddress": email, "State": "Unsubscribed"}),
        received_at: now,
        expires_at: now + chrono::Duration::days(30),
        state: state::EventState::Received,
    };
    cm_list_shows(&h, &event.list_id, json!([event.payload.clone()])).await;
    h.engine
        .store
        .record_webhook_batch(&state::WebhookBatchRecord {
            batch: "b-refused".into(),
            list_id: event.list_id.clone(),
            received_at: now,
            expires_at: event.expires_at,
            events: vec![event],
            // The intake refused another event of the delivery: the consumer reports it.
            refused: vec!["Events[1]: EmailAddress is not an email address: jo@@example.com".into()],
        })
        .await
        .unwrap();
    let state_now = || async { h.engine.store.webhook_event("k-refused").await.unwrap().unwrap().state };

    // Locked row, still after the retries: retryable, and the event stays to be applied.
    h.control
        .set_faults(json!({"seed": 4, "sf": {"lock_row_rate": 1.0}}))
        .await
        .unwrap();
    let error = h.engine.apply_webhook_batch(&settings, "b-refused").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(state_now().await, state::EventState::Received);

    // A validation rule: failed, with Salesforce's code, not applied; the batch stays pending.
    h.control
        .set_faults(json!({"seed": 4, "sf": {"validation_error_rate": 1.0}}))
        .await
        .unwrap();
    let outcome = h.engine.apply_webhook_batch(&settings, "b-refused").await.unwrap();
    assert_eq!((outcome.applied, outcome.failed), (0, 1));
    assert!(
        matches!(state_now().await, state::EventState::Failed { reason } if reason.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"))
    );
    assert!(
        h.engine
            .store
            .pending_webhook_batch("b-refused")
            .await
            .unwrap()
            .is_some()
    );

    // Fixed: a replay applies it, and the batch is finished.
    h.control.set_faults(json!({"seed": 4})).await.unwrap();
    let outcome = h.engine.apply_webhook_batch(&settings, "b-refused").await.unwrap();
    assert_eq!((outcome.applied, outcome.people_updated), (1, 1));
    assert!(matches!(state_now().await, state::EventState::Applied { .. }));
    assert!(
        h.engine
            .store
            .pending_webhook_batch("b-refused")
            .await
            .unwrap()
            .is_none()
    );
    let opted_out = h
        .sf_records("Contact")
        .await
        .into_iter()
        .find(|c| c["Id"] == contact["Id"])
        .unwrap();
    assert_eq!(opted_out["HasOptedOutOfEmail"], true);
    let applied = h.engine.store.webhook_event("k-refused").await.unwrap().unwrap();
    assert_eq!(applied.payload, json!(null), "an applied event keeps no address");

    // The refused event was reported once, as a run of the list, however often the batch ran.
    let reports: Vec<_> = h
        .engine
        .store
        .recent_runs(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.scope == format!("webhook:{}", applied.list_id))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (_, failures) = h.engine.store.run(&reports[0].run_id).await.unwrap().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].record, "webhook Events[1]");
    assert_eq!(failures[0].code.as_deref(), Some("WEBHOOK_EVENT_REFUSED"));
    assert!(!failures[0].reason.contains("jo@@example.com"), "{failures:?}");
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
            json!({"Type": kind, "Date": "2026-11-27 10:00:00", "EmailAddress": email, "Name": "N", "State": state, "CustomFields": fields})
        })
        .collect();
    cm_list_shows(&h, &list, json!(events)).await;
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

const TOKEN_FOR_TEST: &str = "token-for-the-test";

#[tokio::test]
async fn the_schedule_sweeps_webhook_batches_left_pending_and_applies_them_once() {
    let small = generate(&Shape {
        recipients: 10,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let mut h = Harness::new(small, |s| s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList).await;
    h.engine.options.webhook_sweep_after = chrono::Duration::milliseconds(200);
    let settings = h.settings().await;
    let contact = h.scenario.sf.records["Contact"][1].clone();
    let now = chrono::Utc::now();
    let event = state::WebhookEventRecord {
        dedupe_key: "k-swept".into(),
        list_id: h.scenario.cm.lists[0].id.clone(),
        payload: json!({"Type": "Deactivate", "Date": "2026-11-27 10:00:00", "EmailAddress": contact["Email"], "State": "Unsubscribed"}),
        received_at: now,
        expires_at: now + chrono::Duration::days(30),
        state: state::EventState::Received,
    };
    let batch = |id: &str| state::WebhookBatchRecord {
        batch: id.into(),
        list_id: event.list_id.clone(),
        received_at: now,
        expires_at: event.expires_at,
        events: vec![event.clone()],
        refused: Vec::new(),
    };
    cm_list_shows(&h, &event.list_id, json!([event.payload.clone()])).await;
    // Salesforce is down when the batch arrives: its hand-off fails (and, after Lambda's
    // retries, is parked in the failed-invocations queue, where no one may look).
    h.engine.store.record_webhook_batch(&batch("b-swept")).await.unwrap();
    h.control
        .set_faults(json!({"seed": 8, "sf": {"error_rate": 1.0}}))
        .await
        .unwrap();
    let down = h.engine.apply_webhook_batch(&settings, "b-swept").await.unwrap_err();
    assert!(down.is_retryable(), "{down}");
    h.control.set_faults(json!({"seed": 8})).await.unwrap();
    let swept = |h: &Harness| {
        h.engine
            .publisher
            .sink()
            .events()
            .into_iter()
            .filter_map(|e| match e {
                events::Event::WebhookBatchReceived(b) => Some(b.batch),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert!(
        swept(&h).is_empty(),
        "too fresh: its own hand-off may still be under way"
    );
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let outcome = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(outcome.webhook_batches_swept, 1);
    assert_eq!(swept(&h), ["b-swept"]);
    let applied = h.engine.apply_webhook_batch(&settings, "b-swept").await.unwrap();
    assert_eq!(applied.people_updated, 1);
    h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(swept(&h).len(), 1, "applied: not swept again");
    let person = h
        .sf_records("Contact")
        .await
        .into_iter()
        .find(|c| c["Id"] == contact["Id"])
        .unwrap();
    assert_eq!(person["HasOptedOutOfEmail"], true);
}

#[tokio::test]
async fn a_forged_unsubscribe_changes_nothing_and_cms_lists_opt_people_out_even_without_webhooks() {
    let mut small = generate(&Shape {
        recipients: 20,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let list = small.cm.lists[0].id.clone();
    // CM shows the first Contact as an active subscriber of the list.
    let active = small.sf.records["Contact"][0]["Email"].as_str().unwrap().to_owned();
    small.cm.lists[0].subscribers.push(sandbox::scenario::CmSubscriber {
        email: active,
        name: String::new(),
        state: "Active".into(),
        date: Some("2026-11-01 09:00:00".into()),
    });
    let h = Harness::new(small, |s| {
        s.cm_lists = vec![list.clone()];
        s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList;
    })
    .await;
    let settings = h.settings().await;
    let contacts = h.scenario.sf.records["Contact"].clone();
    let email = |i: usize| contacts[i]["Email"].as_str().unwrap().to_owned();
    let opted_out = |records: Vec<Value>, i: usize| {
        records.into_iter().find(|c| c["Id"] == contacts[i]["Id"]).unwrap()["HasOptedOutOfEmail"] == true
    };
    // The first scheduled run takes the lists' watermarks (and opts out whoever CM already shows).
    h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();

    // A post CM did not make: CM's list still shows the address as active.
    let intake = engine::webhook::IntakeEngine {
        store: h.engine.store.clone(),
        publisher: std::sync::Arc::new(events::publisher::Publisher::new(MemorySink::default())),
    };
    let forged = json!({"ListID": list, "Events": [{"Type": "Deactivate", "Date": "2026-11-27 09:30:00", "EmailAddress": email(0), "State": "Unsubscribed"}]});
    let (status, _) = intake
        .receive(
            &engine::webhook::WebhookTokens {
                current: TOKEN_FOR_TEST.into(),
                previous: None,
            },
            TOKEN_FOR_TEST,
            Some("application/json"),
            forged.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let Some(events::Event::WebhookBatchReceived(batch)) = intake.publisher.sink().events().pop() else {
        panic!()
    };
    let outcome = h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap();
    assert_eq!((outcome.unconfirmed, outcome.people_updated), (1, 0), "{outcome:?}");
    assert!(
        !opted_out(h.sf_records("Contact").await, 0),
        "a forged post changes nothing"
    );
    let pending = h.engine.store.pending_webhook_batches(10).await.unwrap();
    assert!(pending.is_empty(), "done with, not retried");
    let runs = h.engine.store.recent_runs(5).await.unwrap();
    let report = runs.iter().find(|r| r.scope == format!("webhook:{list}")).unwrap();
    let (_, failures) = h.engine.store.run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(
        failures[0].code.as_deref(),
        Some("WEBHOOK_NOT_CONFIRMED"),
        "reported where admins look"
    );
    assert!(!failures[0].reason.contains(&email(0)), "the address is redacted");

    // Webhooks off: CM unsubscribes one person and bounces another, and posts nothing.
    cm_list_shows(
        &h,
        &list,
        json!([
            {"Type": "Deactivate", "Date": "2026-11-27 09:10:00", "EmailAddress": email(1), "State": "Unsubscribed"},
            {"Type": "Deactivate", "Date": "2026-11-27 09:11:00", "EmailAddress": email(2), "State": "Bounced"}
        ]),
    )
    .await;
    h.set_cm_now("2026-11-27 09:30:00").await;
    let run = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(run.list_people_updated, 2);
    let records = h.sf_records("Contact").await;
    assert!(
        opted_out(records.clone(), 1),
        "the list backstop opted the unsubscriber out"
    );
    let bounced = records.iter().find(|c| c["Id"] == contacts[2]["Id"]).unwrap();
    assert!(!bounced["EmailBouncedDate"].is_null(), "and recorded the bounce");
    h.reset_counters().await;
    let again = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(again.list_people_updated, 0, "read since the watermark: nothing twice");
    assert_eq!(h.sf_calls().await.1, 0);
}

#[tokio::test]
async fn a_webhook_cm_deactivated_is_reported_by_the_days_check_and_by_doctor_and_register_reactivates_it() {
    let small = generate(&Shape {
        recipients: 10,
        activities: 0,
        ..Shape::default()
    });
    let list = small.cm.lists[0].id.clone();
    let h = Harness::new(small, |s| s.cm_lists = vec![list.clone()]).await;
    let settings = h.settings().await;
    let url = "https://abc.lambda-url.eu-west-1.on.aws/hooks/s3cret-token-0123456789";
    h.engine.register_webhooks(url).await.unwrap();
    let first = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(first.inactive_webhooks, Some(0), "the day's check ran: all active");

    // CM gives up on the URL and deactivates the webhook.
    let hooks: Value = reqwest::Client::new()
        .get(format!("{}/api/v3.3/lists/{list}/webhooks.json", h.running.cm_url))
        .basic_auth(&h.scenario.cm.api_key, Some("x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_id = hooks[0]["WebhookID"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .put(format!(
            "{}/api/v3.3/lists/{list}/webhooks/{webhook_id}/deactivate.json",
            h.running.cm_url
        ))
        .basic_auth(&h.scenario.cm.api_key, Some("x"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let later = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(later.inactive_webhooks, None, "checked once a day");
    h.engine.store.reset_watermarks("webhooks").await.unwrap(); // a day later
    let next_day = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(next_day.inactive_webhooks, Some(1));
    let runs = h.engine.store.recent_runs(10).await.unwrap();
    let report = runs.iter().find(|r| r.scope == "webhooks").unwrap();
    let (_, failures) = h.engine.store.run(&report.run_id).await.unwrap().unwrap();
    assert!(failures[0].reason.contains("webhooks register"), "{failures:?}");

    let findings = h.engine.doctor(Some(url)).await;
    let finding = findings
        .iter()
        .find(|f| f.check == format!("webhooks of list {list}"))
        .unwrap();
    assert_eq!(finding.severity, engine::doctor::Severity::Problem);
    assert!(
        finding.fix.as_deref().unwrap().contains("webhooks register"),
        "{finding:?}"
    );

    let changes = h.engine.register_webhooks(url).await.unwrap();
    assert!(
        matches!(changes[0], engine::admin::WebhookChange::Reactivated { .. }),
        "{changes:?}"
    );
    let findings = h.engine.doctor(Some(url)).await;
    let finding = findings
        .iter()
        .find(|f| f.check == format!("webhooks of list {list}"))
        .unwrap();
    assert_eq!(finding.severity, engine::doctor::Severity::Ok);
}

#[tokio::test]
async fn doctor_names_a_cm_client_in_another_time_zone_than_cm_timezone() {
    let mut scenario = generate(&Shape {
        recipients: 10,
        activities: 0,
        ..Shape::default()
    });
    let h = Harness::new(scenario.clone(), |_| {}).await;
    let client = h.settings().await.cm_clients[0].clone();
    let finding = |findings: Vec<engine::doctor::Finding>| {
        findings
            .into_iter()
            .find(|f| f.check == format!("CM client {client} time zone"))
            .unwrap()
    };
    let agreeing = finding(h.engine.doctor(None).await);
    assert_eq!(agreeing.severity, engine::doctor::Severity::Ok, "{agreeing:?}");

    scenario.cm.clients[0].timezone_display = Some("(GMT-05:00) Eastern Time (US & Canada)".into());
    let h = Harness::new(scenario, |_| {}).await;
    let other = finding(h.engine.doctor(None).await);
    assert_eq!(other.severity, engine::doctor::Severity::Warning, "{other:?}");
    assert!(other.detail.contains("15 hours off"), "{other:?}");
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
        let h = Harness::new(scenario.clone(), |s| s.add_missing_members = choice).await;
        let cm = h.link_main().await;
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
    let h = Harness::new(scenario, |_| {}).await;
    let cm = h.link_main().await;
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
