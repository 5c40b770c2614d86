//! The scheduled run: links typed into Salesforce, the cadence and retired campaigns, the hot
//! schedule, auto-creation and the sweep of pending webhook batches.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use engine::campaign::CampaignOutcome;
use events::LinkOrigin;
use mapping::Settings;
use sandbox::generate::{Shape, generate};
use serde_json::json;
use state::{RetryQueue, RunStatus, RunStore, SettingsStore, WebhookEventStore};

use common::*;

/// The campaigns a scheduled run asked to sync.
async fn scheduled_syncs(h: &Harness) -> Vec<String> {
    let before = h.engine.publisher.sink().events().len();
    h.engine
        .run_scheduled(&h.settings().await, &engine::new_run_id())
        .await
        .unwrap();
    harness::sync_requests(&h.engine.publisher.sink().events()[before..])
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
        .failed_records(&state::Scope::AutocreateRefused.key(), 100)
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
        .failed_records(&state::Scope::AutocreateRefused.key(), 100)
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

    // A campaign created in CM after the switch qualifies; handling its event twice makes one
    // Campaign, named as CM names it (not as the event says).
    let created_at = chrono::Utc::now() + chrono::Duration::minutes(1);
    let zone = harness::zone_of(&h.scenario).unwrap();
    h.control
        .add_cm_campaign(serde_json::json!({
            "id": "f".repeat(32), "client_id": h.scenario.cm.clients[0].id, "name": "Brand new",
            "subject": "New", "state": "draft",
            "date_created": created_at.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S").to_string(),
        }))
        .await
        .unwrap();
    let late = mapping::autocreate::DiscoveredCampaign {
        cm_campaign_id: "f".repeat(32),
        cm_client_id: h.scenario.cm.clients[0].id.clone(),
        name: "A name the event made up".into(),
        subject: "New".into(),
        state: mapping::autocreate::CmCampaignState::Draft,
        created_at: Some(created_at),
        sent_at: None,
    };
    // An event naming a campaign CM does not have (or has for another client) creates nothing.
    for (id, client) in [
        ("e".repeat(32), h.scenario.cm.clients[0].id.clone()),
        ("f".repeat(32), "0".repeat(32)),
    ] {
        let mut settings = h.settings().await;
        settings.cm_clients.push("0".repeat(32));
        let forged = mapping::autocreate::DiscoveredCampaign {
            cm_campaign_id: id,
            cm_client_id: client,
            ..late.clone()
        };
        let outcome = h
            .engine
            .auto_create(&settings, &forged, LinkOrigin::AutoCreated)
            .await
            .unwrap();
        assert!(
            matches!(&outcome, engine::autocreate::AutoCreateOutcome::Skipped { reason } if reason.contains("not found in Campaign Monitor")),
            "{outcome:?}"
        );
    }
    assert_eq!(
        h.sf_records("Campaign").await.len(),
        campaigns_before,
        "nothing created"
    );
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
        payload: json!({"Type": "Deactivate", "Date": harness::cm_date_ago(settings.zone(), 60), "EmailAddress": contact["Email"], "State": "Unsubscribed"}),
        person: None,
        received_at: now,
        expires_at: now + chrono::Duration::days(30),
        state: state::EventState::Received,
        attempts: 0,
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

/// Batches failing at the head of the list never hide newer ones (#33 item 3): each sweep goes
/// on after the last batch the one before re-drove, and starts again from the oldest at the end.
#[tokio::test]
async fn the_sweep_goes_on_from_where_it_stopped_and_reaches_every_stranded_batch() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 10,
            activities: 0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let settings = h.settings().await;
    let list = h.scenario.cm.lists[0].id.clone();
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    for i in 0..450 {
        let received_at = start + chrono::Duration::seconds(i);
        let event = state::WebhookEventRecord {
            dedupe_key: format!("k-{i:04}"),
            list_id: list.clone(),
            payload: json!({"Type": "Deactivate", "Date": "2026-11-27 10:00:00", "EmailAddress": format!("p{i}@example.com"), "State": "Unsubscribed"}),
            person: None,
            received_at,
            expires_at: received_at + chrono::Duration::days(30),
            state: state::EventState::Received,
            attempts: 0,
        };
        h.engine
            .store
            .record_webhook_batch(&state::WebhookBatchRecord {
                batch: format!(
                    "{}#{:016x}",
                    received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    i
                ),
                list_id: list.clone(),
                received_at,
                expires_at: event.expires_at,
                events: vec![event],
                refused: Vec::new(),
            })
            .await
            .unwrap();
    }
    let mut reached = std::collections::BTreeSet::new();
    let mut counts = Vec::new();
    for _ in 0..4 {
        let before = h.engine.publisher.sink().events().len();
        let outcome = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
        counts.push(outcome.webhook_batches_swept);
        for event in &h.engine.publisher.sink().events()[before..] {
            if let events::Event::WebhookBatchReceived(b) = event {
                reached.insert(b.batch.clone());
            }
        }
        if counts.len() == 3 {
            assert_eq!(reached.len(), 450, "every batch reached within three sweeps");
        }
    }
    assert_eq!(counts, [200, 200, 50, 200], "the fourth starts again from the oldest");
}

/// Each scheduled run leaves a run record of its own (scope `scheduled`): what it found and
/// requested, and a failure when it stopped, so the console's Overview shows when the schedule
/// last ran and whether it worked.
#[tokio::test]
async fn each_scheduled_run_is_recorded_with_its_counts_or_its_failure() {
    let h = Harness::new(
        generate(&Shape {
            recipients: 10,
            activities: 5,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let done = engine::new_run_id();
    let outcome = h.engine.run_scheduled(&h.settings().await, &done).await.unwrap();
    let (run, failures) = h.engine.store.run(&done).await.unwrap().expect("recorded");
    assert_eq!(run.scope, "scheduled");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.counts.get("links_found").copied(), Some(outcome.links_found as u64));
    assert_eq!(
        run.counts.get("syncs_requested").copied(),
        Some(outcome.syncs_requested as u64)
    );
    assert!(failures.is_empty() && run.ended_at.is_some());

    // Discovery fails (a configured client CM does not know): the run is recorded as failed.
    let mut settings = h.settings().await;
    settings.cm_clients.push("ffffffffffffffffffffffffffffffff".into());
    let failed = engine::new_run_id();
    assert!(h.engine.run_scheduled(&settings, &failed).await.is_err());
    let (run, failures) = h.engine.store.run(&failed).await.unwrap().expect("recorded");
    assert_eq!((run.scope.as_str(), run.status), ("scheduled", RunStatus::Failed));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].code.as_deref().is_some_and(|c| c.ends_with("RETRYABLE")));
}
