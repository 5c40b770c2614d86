//! Where two normal things meet (issue #32): a late-visible CM record and a transient
//! Salesforce outage, a late record and a hand-over between invocations. Each test fails on the
//! code before its fix: the record was counted as applied and never written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use engine::Deadline;
use engine::campaign::{CampaignOutcome, Mode};
use sandbox::generate::{Shape, generate};
use serde_json::{Value, json};

use common::*;

fn contact(h: &Harness, index: usize) -> (String, String) {
    let contact = &h.scenario.sf.records["Contact"][index];
    (
        contact["Id"].as_str().unwrap().to_owned(),
        contact["Email"].as_str().unwrap().to_owned(),
    )
}

fn activity(h: &Harness, kind: &str, email: &str, date: &str) -> Value {
    let list = h.scenario.cm.lists[0].id.clone();
    json!([{"kind": kind, "email": email, "list_id": list, "date": date}])
}

/// The campaign member whose `field` is `value` (its `Id`, its `ContactId`).
async fn member(h: &Harness, field: &str, value: &str) -> serde_json::Map<String, Value> {
    h.sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m[field].as_str() == Some(value))
        .and_then(|m| m.as_object().cloned())
        .unwrap()
}

/// A whole sync of `cm` on `twin`, counting its deadline checks: its parts, and the checks it
/// makes while reading (one per page); it then makes one after reading and one before each part.
async fn deadline_checks(twin: &Harness, cm: &str) -> (u32, u32) {
    let counting = Deadline::at_check(u32::MAX);
    let settings = twin.settings().await;
    let CampaignOutcome::Done { counts, .. } = twin
        .engine
        .sync_campaign(&settings, cm, &engine::new_run_id(), Mode::APPLY, counting.clone())
        .await
        .unwrap()
    else {
        panic!()
    };
    let parts = counts.parts as u32;
    (parts, counting.checks_made() - parts - 1)
}

/// Item 1: a run that keeps its watermarks because a person's write failed transiently all run
/// long must keep the counts of what it read again too, or the late record that person needed
/// is taken for applied by the next run.
#[tokio::test]
async fn a_late_open_whose_write_failed_all_run_is_written_by_the_next_run() {
    let (h, cm) = Harness::linked(
        generate(&Shape {
            recipients: 10,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    h.set_cm_now("2026-11-03 10:00:00").await;
    assert!(matches!(h.sync(&cm, false).await, CampaignOutcome::Done { .. }));
    let (_, email) = contact(&h, 0);
    let statuses = async || -> Vec<String> {
        let members = h.sf_records("CampaignMember").await;
        let of_email = members.iter().filter(|m| m["Email"].as_str() == Some(email.as_str()));
        of_email
            .map(|m| m["Status"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Every member with the address (one address may name a Contact and a Lead).
    let locked: Vec<String> = h
        .sf_records("CampaignMember")
        .await
        .iter()
        .filter(|m| m["Email"].as_str() == Some(email.as_str()))
        .map(|m| m["Id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!locked.is_empty());
    // CM shows an open dated 09:00 only now (the first sync read up to 09:55), while another
    // process holds the member's record locked for longer than the run's retries.
    h.add_activity(&cm, activity(&h, "open", &email, "2026-11-03 09:00:00"))
        .await;
    h.control
        .set_faults(json!({"seed": 1, "sf": {"locked_records": locked}}))
        .await
        .unwrap();
    h.set_cm_now("2026-11-03 10:30:00").await;
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!()
    };
    assert_eq!(counts.failed, 1, "the locked member is reported: {counts:?}");
    assert!(!statuses().await.contains(&"Opened".to_owned()));
    h.control.set_faults(json!({"seed": 1})).await.unwrap();
    h.set_cm_now("2026-11-03 10:45:00").await;
    h.sync(&cm, false).await;
    assert!(
        statuses().await.contains(&"Opened".to_owned()),
        "the open the locked write lost is written once the lock is gone: {:?}",
        statuses().await
    );
}

/// Item 2: a continuation skips the parts the invocation before it applied; a record that
/// became visible in one of those parts after that invocation read must not be counted as
/// applied, or no later sync writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_click_in_a_part_applied_before_a_hand_over_is_written_by_the_next_sync() {
    let scenario = generate(&Shape {
        recipients: 800,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let part_size = 200;
    let opens = |h: &Harness| {
        let campaign = h
            .scenario
            .cm
            .campaigns
            .iter()
            .find(|c| c.name == "November newsletter")
            .unwrap();
        Value::Array(
            campaign
                .recipients
                .iter()
                .map(|r| json!({"kind": "open", "email": r.email, "list_id": r.list_id, "date": "2026-11-03 10:05:00"}))
                .collect(),
        )
    };
    // Every person opens after the first sync: four parts. A twin counts the deadline checks
    // of the whole run, to stop the real one after its first part.
    let mut twins = Vec::new();
    for _ in 0..2 {
        let mut h = Harness::new(scenario.clone(), |_| {}).await;
        h.engine.options.part_size = part_size;
        let cm = h.link_main().await;
        h.set_cm_now("2026-11-03 10:00:00").await;
        h.sync(&cm, false).await;
        h.add_activity(&cm, opens(&h)).await;
        h.set_cm_now("2026-11-03 10:30:00").await;
        twins.push((h, cm));
    }
    let (counting_twin, cm) = &twins[0];
    let settings = counting_twin.settings().await;
    let (parts, reading_checks) = deadline_checks(counting_twin, cm).await;
    assert!(parts >= 3, "{parts} parts");

    let (h, cm) = &twins[1];
    let run = engine::new_run_id();
    let first = h
        .engine
        .sync_campaign(&settings, cm, &run, Mode::APPLY, Deadline::at_check(reading_checks + 3))
        .await
        .unwrap();
    assert!(matches!(first, CampaignOutcome::Continued { .. }), "{first:?}");
    // Someone of the part already applied clicks; CM shows it only now.
    let done = h
        .sf_records("CampaignMember")
        .await
        .into_iter()
        .find(|m| m["Status"] == "Opened")
        .unwrap();
    let (done_id, email) = (
        done["Id"].as_str().unwrap().to_owned(),
        done["Email"].as_str().unwrap().to_owned(),
    );
    h.add_activity(cm, activity(h, "click", &email, "2026-11-03 10:10:00"))
        .await;
    let continued = h
        .engine
        .sync_campaign(&settings, cm, &run, Mode::Apply { continuation: 1 }, Deadline::none())
        .await
        .unwrap();
    assert!(matches!(continued, CampaignOutcome::Done { .. }), "{continued:?}");
    assert_eq!(
        member(h, "Id", &done_id).await["Status"],
        "Opened",
        "its part was done before the click showed"
    );
    h.set_cm_now("2026-11-03 10:45:00").await;
    h.sync(cm, false).await;
    assert_eq!(
        member(h, "Id", &done_id).await["Status"],
        "Clicked",
        "the next sync reads the click again and writes it"
    );
}

/// Item 5: the opt-out safety net runs whatever else failed: a discovery CM refuses and a list
/// that cannot be read hold back neither the list backstop nor the other lists.
#[tokio::test]
async fn cms_lists_opt_people_out_even_when_discovery_and_another_list_fail() {
    let small = generate(&Shape {
        recipients: 20,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let list = small.cm.lists[0].id.clone();
    let h = Harness::new(small, |s| {
        // A list CM does not know, read first.
        s.cm_lists = vec!["0000000000000000000000000000dead".into(), list.clone()];
        s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList;
    })
    .await;
    let (person, email) = contact(&h, 1);
    cm_list_shows(
        &h,
        &list,
        json!([{"Type": "Deactivate", "Date": "2026-11-27 09:10:00", "EmailAddress": email, "State": "Unsubscribed"}]),
    )
    .await;
    h.set_cm_now("2026-11-27 09:30:00").await;
    // Discovery fails: a configured client CM no longer knows.
    let mut settings = h.settings().await;
    settings.cm_clients.push("ffffffffffffffffffffffffffffffff".into());
    let run = h.engine.run_scheduled(&settings, &engine::new_run_id()).await;
    assert!(
        run.is_err(),
        "the failed discovery is returned, for the trigger to retry"
    );
    let contacts = h.sf_records("Contact").await;
    let opted_out = contacts.iter().find(|c| c["Id"] == person.as_str()).unwrap()["HasOptedOutOfEmail"] == true;
    assert!(opted_out, "the readable list's unsubscribe reached Salesforce");
}

/// Item 6: the scheduled run and the hot run fall on the same moment at every scheduled tick;
/// neither drops the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_and_a_hot_run_at_the_same_moment_both_run() {
    let (h, _cm) = Harness::linked(
        generate(&Shape {
            recipients: 50,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    h.control.set_latency(20).await.unwrap();
    let settings = h.settings().await;
    let (hot_run, scheduled_run) = (engine::new_run_id(), engine::new_run_id());
    let (hot, scheduled) = tokio::join!(
        h.engine.run_hot(&settings, &hot_run),
        h.engine.run_scheduled(&settings, &scheduled_run)
    );
    assert!(!hot.unwrap().busy, "the hot run ran");
    let scheduled = scheduled.unwrap();
    assert!(!scheduled.busy, "the scheduled run ran: {scheduled:?}");
    assert_eq!(scheduled.syncs_requested, 1);
}

/// Item 4: CM may show a list change later than it posts the webhook (undocumented: the less
/// convenient reading). An unsubscribe posted before the list shows it waits, and is applied
/// once the list confirms it.
#[tokio::test]
async fn a_webhook_unsubscribe_the_list_confirms_late_is_applied() {
    let small = generate(&Shape {
        recipients: 20,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    let list = small.cm.lists[0].id.clone();
    let h = Harness::new(small, |s| {
        s.cm_lists = vec![list.clone()];
        s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList;
    })
    .await;
    let settings = h.settings().await;
    let (person, email) = contact(&h, 3);
    let intake = engine::webhook::IntakeEngine {
        store: h.engine.store.clone(),
        publisher: std::sync::Arc::new(events::publisher::Publisher::new(
            events::publisher::MemorySink::default(),
        )),
    };
    let date = harness::cm_date_ago(settings.zone(), 30);
    let post = json!({"ListID": list, "Events": [{"Type": "Deactivate", "Date": date, "EmailAddress": email, "State": "Unsubscribed"}]});
    let tokens = engine::webhook::WebhookTokens {
        current: TOKEN_FOR_TEST.into(),
        previous: None,
    };
    let (status, _) = intake
        .receive(
            &tokens,
            TOKEN_FOR_TEST,
            Some("application/json"),
            post.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let Some(events::Event::WebhookBatchReceived(batch)) = intake.publisher.sink().events().pop() else {
        panic!()
    };
    let opted_out = async || {
        let contacts = h.sf_records("Contact").await;
        contacts.iter().find(|c| c["Id"] == person.as_str()).unwrap()["HasOptedOutOfEmail"] == true
    };
    // The post arrives before CM's list shows the unsubscribe.
    h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap();
    assert!(!opted_out().await);
    // The list shows it a little later; the next sweep hands the batch on again.
    cm_list_shows(
        &h,
        &list,
        json!([{"Type": "Deactivate", "Date": date, "EmailAddress": email, "State": "Unsubscribed"}]),
    )
    .await;
    let outcome = h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap();
    assert_eq!(outcome.people_updated, 1, "{outcome:?}");
    assert!(opted_out().await, "applied once CM's list confirms it");
}

/// Item 7: a sync stops taking new work early enough for a part's Bulk jobs to finish before
/// Lambda's deadline (the old 30 s margin was shorter than the 300 s a Bulk job may take).
#[tokio::test]
async fn the_work_margin_outlasts_a_bulk_job() {
    let (h, _cm) = Harness::linked(
        generate(&Shape {
            recipients: 10,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    assert!(engine::work_margin(&h.engine) > h.engine.sf.config().bulk_poll_limit);
}

/// Item 7: a continuation that arrives while another invocation syncs the campaign is not
/// dropped as busy: it fails retryable, so the trigger runs it again after the other.
#[tokio::test]
async fn a_continuation_meeting_a_running_sync_is_retried_not_dropped() {
    use state::LeaseStore;
    let (h, cm) = Harness::linked(
        generate(&Shape {
            recipients: 10,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let now = chrono::Utc::now();
    h.engine
        .store
        .acquire_lease(
            &state::Scope::CampaignLease(&cm).key(),
            "another-invocation",
            now,
            now + chrono::Duration::minutes(15),
        )
        .await
        .unwrap()
        .unwrap();
    let settings = h.settings().await;
    let continued = h
        .engine
        .sync_campaign(
            &settings,
            &cm,
            &engine::new_run_id(),
            Mode::Apply { continuation: 1 },
            Deadline::none(),
        )
        .await;
    let error = continued.expect_err("not dropped as busy");
    assert!(error.is_retryable(), "{error}");
    let fresh = h
        .engine
        .sync_campaign(&settings, &cm, &engine::new_run_id(), Mode::APPLY, Deadline::none())
        .await
        .unwrap();
    assert_eq!(fresh, CampaignOutcome::Busy, "a new run is covered by the running one");
}

/// Item 7: a continuation that commits after a newer run of its campaign committed never moves
/// the watermarks back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_continuation_never_moves_the_watermarks_back() {
    use state::WatermarkStore;
    let scenario = generate(&Shape {
        recipients: 600,
        activities: 600,
        ..Shape::default()
    });
    let mut twins = Vec::new();
    for _ in 0..2 {
        let mut h = Harness::new(scenario.clone(), |_| {}).await;
        h.engine.options.part_size = 150;
        let cm = h.link_main().await;
        h.set_cm_now("2026-11-30 10:30:00").await;
        twins.push((h, cm));
    }
    // A twin counts the deadline checks a whole run makes.
    let (counting_twin, cm) = &twins[0];
    let settings = counting_twin.settings().await;
    let (_, reading_checks) = deadline_checks(counting_twin, cm).await;
    let (h, cm) = &twins[1];
    let run = engine::new_run_id();
    // Handed over after reading everything, before its first part: its watermarks are fixed.
    let first = h
        .engine
        .sync_campaign(&settings, cm, &run, Mode::APPLY, Deadline::at_check(reading_checks + 2))
        .await
        .unwrap();
    assert!(matches!(first, CampaignOutcome::Continued { .. }), "{first:?}");
    // A newer run reads everything and commits further.
    h.set_cm_now("2026-11-30 11:00:00").await;
    h.sync(cm, false).await;
    let newer = h.engine.store.watermarks(cm).await.unwrap();
    assert!(!newer.is_empty());
    // The old run's continuation commits last.
    h.engine
        .sync_campaign(&settings, cm, &run, Mode::Apply { continuation: 1 }, Deadline::none())
        .await
        .unwrap();
    let after = h.engine.store.watermarks(cm).await.unwrap();
    for (stream, at) in &newer {
        assert!(after[stream] >= *at, "{stream}: {} went back from {at}", after[stream]);
    }
}

/// Item 8: a retired campaign wakes on its streams' own newest dates too, not only on its
/// summary's counts: those count recipients, so a second bounce of a person changes none.
#[tokio::test]
async fn a_retired_campaign_wakes_for_a_second_bounce_of_the_same_person() {
    let (h, cm) = Harness::linked(
        generate(&Shape {
            recipients: 50,
            activities: 0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let campaign = h.scenario.cm.campaigns.iter().find(|c| c.id == cm).unwrap();
    let sent =
        chrono::NaiveDateTime::parse_from_str(campaign.sent_date.as_deref().unwrap(), "%Y-%m-%d %H:%M:%S").unwrap();
    let at = |days: i64, minutes: i64| {
        (sent + chrono::Duration::days(days) + chrono::Duration::minutes(minutes))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let email = campaign.recipients[0].email.clone();
    h.add_activity(&cm, activity(&h, "bounce", &email, &at(60, 0))).await;
    // Synced on day 61, past its last cadence band: retired (a second sync an hour later reads
    // past the moment the first saw the bounce counted).
    h.set_cm_now(&at(61, 0)).await;
    h.sync(&cm, false).await;
    h.set_cm_now(&at(61, 60)).await;
    h.sync(&cm, false).await;
    let scheduled = async || {
        let before = h.engine.publisher.sink().events().len();
        h.engine
            .run_scheduled(&h.settings().await, &engine::new_run_id())
            .await
            .unwrap();
        harness::sync_requests(&h.engine.publisher.sink().events()[before..])
    };
    h.set_cm_now(&at(62, 15 * 60 + 7)).await; // the next day's check: nothing new
    assert!(!scheduled().await.contains(&cm), "retired");
    // The same person bounces again: CM's Bounced count (recipients) is unchanged.
    h.add_activity(&cm, activity(&h, "bounce", &email, &at(65, 30))).await;
    h.set_cm_now(&at(65, 15 * 60 + 7)).await; // that day's check
    assert!(scheduled().await.contains(&cm), "woken by the stream's newest record");
}

/// Found by the differential test: a person queued for another attempt (after three runs of a
/// record lock) whose retry fails with the lock again stays queued. Before, the retry took them
/// off the queue, and their activity older than the overlap was never read again.
#[tokio::test]
async fn a_retried_person_still_locked_stays_queued_until_written() {
    let (h, cm) = Harness::linked(
        generate(&Shape {
            recipients: 10,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    h.set_cm_now("2026-11-03 10:00:00").await;
    h.sync(&cm, false).await;
    let (_, email) = contact(&h, 0);
    let members = h.sf_records("CampaignMember").await;
    let locked: Vec<String> = members
        .iter()
        .filter(|m| m["Email"].as_str() == Some(email.as_str()))
        .map(|m| m["Id"].as_str().unwrap().to_owned())
        .collect();
    h.add_activity(&cm, activity(&h, "open", &email, "2026-11-03 10:10:00"))
        .await;
    h.control
        .set_faults(json!({"seed": 1, "sf": {"locked_records": locked}}))
        .await
        .unwrap();
    // Three runs fail the person (queued at the third, the watermarks move on), and a fourth
    // retries them while the lock still holds.
    for now in [
        "2026-11-03 10:30:00",
        "2026-11-04 12:00:00",
        "2026-11-05 12:00:00",
        "2026-11-06 12:00:00",
    ] {
        h.set_cm_now(now).await;
        h.sync(&cm, false).await;
    }
    h.control.set_faults(json!({"seed": 1})).await.unwrap();
    h.set_cm_now("2026-11-07 12:00:00").await;
    h.sync(&cm, false).await;
    let statuses: Vec<String> = h
        .sf_records("CampaignMember")
        .await
        .iter()
        .filter(|m| m["Email"].as_str() == Some(email.as_str()))
        .map(|m| m["Status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(statuses.contains(&"Opened".to_owned()), "{statuses:?}");
}

/// An unlink meeting a running sync (issue #33): the sync holds the campaign's lease, so the
/// unlink is refused and changes nothing (before, the sync's commit could put the watermarks
/// back after the reset); once the sync is done, the unlink holds the lease while it works.
#[tokio::test]
async fn an_unlink_while_the_campaign_syncs_is_refused_until_the_sync_ends() {
    use state::{LeaseStore, LinkStore, Scope, WatermarkStore};
    let (h, cm) = Harness::linked(
        generate(&Shape {
            recipients: 20,
            activities: 10,
            ..Shape::default()
        }),
        |_| {},
    )
    .await;
    let CampaignOutcome::Done { .. } = h.sync(&cm, false).await else {
        panic!("synced")
    };
    let scope = Scope::CampaignLease(&cm).key();
    let now = chrono::Utc::now();
    let sync = h
        .engine
        .store
        .acquire_lease(&scope, "sync-run#1", now, now + chrono::Duration::minutes(15))
        .await
        .unwrap()
        .expect("the sync holds the lease");
    let error = h.engine.unlink(&cm, "cli").await.unwrap_err();
    assert!(
        error.is_retryable() && error.to_string().contains("is running"),
        "{error}"
    );
    assert!(h.engine.store.link(&cm).await.unwrap().is_some(), "nothing unlinked");

    h.engine.store.release_lease(&scope, &sync.owner).await.unwrap();
    assert!(h.engine.unlink(&cm, "cli").await.unwrap().is_some());
    assert!(h.engine.store.link(&cm).await.unwrap().is_none());
    assert!(
        h.engine
            .store
            .watermarks(&Scope::Campaign(&cm).key())
            .await
            .unwrap()
            .is_empty(),
        "progress forgotten"
    );
    // The unlink released its lease: a new link's sync is not held up.
    assert!(
        h.engine
            .store
            .acquire_lease(&scope, "sync-run#2", now, now + chrono::Duration::minutes(15))
            .await
            .unwrap()
            .is_some()
    );
}
