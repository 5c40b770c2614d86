//! The campaign sync cut off, repeated and raced: runs resumed, continued, abandoned and retried
//! lose nothing and apply nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use engine::Deadline;
use engine::campaign::{CampaignOutcome, Mode};
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};
use state::{RetryQueue, RunStore, WatermarkStore};

use common::*;

/// The campaign's CM id and the members one clean sync of `scenario` leaves in Salesforce.
async fn clean_run(scenario: &Scenario) -> (String, Vec<(String, String, String)>) {
    let (h, cm) = Harness::linked(scenario.clone(), |_| {}).await;
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
        let (h, cm) = Harness::linked(scenario.clone(), |_| {}).await;
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
    let (h, cm) = Harness::linked(small, |s| s.update_campaign_statistics = false).await;
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
async fn a_continuation_killed_after_taking_the_run_over_is_marked_abandoned_too_behind_600_newer_runs() {
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
    // A big deployment: hundreds of runs of other campaigns come after it before it is checked.
    for i in 0..600 {
        let newer = state::RunRecord {
            run_id: format!(
                "{}:other",
                state::new_run_id(chrono::Utc::now() + chrono::Duration::seconds(2), i)
            ),
            scope: format!("other-{i}"),
            started_at: chrono::Utc::now(),
            ended_at: Some(chrono::Utc::now()),
            status: state::RunStatus::Succeeded,
            counts: Default::default(),
            failure_count: 0,
            resumed_at: None,
            expires_at: None,
        };
        h.engine.store.start_run(&newer).await.unwrap();
    }
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
    let (h, cm) = Harness::linked(small, |_| {}).await;
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

/// The sync requests a run published (the runs a read in part asks for), from `from` on.
fn sync_requests_since(h: &Harness, from: usize) -> Vec<String> {
    harness::sync_requests(&h.engine.publisher.sink().events()[from..])
}

/// A campaign whose streams are too long to read in one invocation (here: a budget of 2 CM
/// pages a run) is read in parts across runs: each run applies and commits what it read and
/// asks for the next at once, and the runs end where one whole read ends, nothing lost.
/// Before the read cursor, such a read failed at every attempt.
#[tokio::test]
async fn a_read_too_long_for_one_invocation_goes_on_in_the_next_runs_with_nothing_lost() {
    let scenario = generate(&Shape {
        recipients: 2_600,
        activities: 3_000,
        ..Shape::default()
    });
    let (cm, clean) = clean_run(&scenario).await;
    let mut h = Harness::new(scenario, |_| {}).await;
    h.engine.options.read_pages_per_run = Some(2);
    h.engine.options.part_size = 300;
    h.link_main().await;
    let settings = h.settings().await;
    let mut runs = 0;
    let mut in_part = Vec::new();
    loop {
        runs += 1;
        assert!(runs <= 20, "the read never finished: {in_part:?}");
        let before = h.engine.publisher.sink().events().len();
        // The third run is cut off mid-apply as well and handed over: its continuation reads
        // what it read, no less.
        let deadline = if runs == 3 {
            Deadline::at_check(6)
        } else {
            Deadline::none()
        };
        let run = engine::new_run_id();
        let mut outcome = h
            .engine
            .sync_campaign(&settings, &cm, &run, Mode::APPLY, deadline)
            .await
            .unwrap();
        let mut continuation = 0;
        while matches!(outcome, CampaignOutcome::Continued { .. }) {
            continuation += 1;
            outcome = h
                .engine
                .sync_campaign(&settings, &cm, &run, Mode::Apply { continuation }, Deadline::none())
                .await
                .unwrap();
        }
        let CampaignOutcome::Done { counts, .. } = outcome else {
            panic!("run {runs}: {outcome:?}");
        };
        in_part.push(counts.streams_read_in_part);
        let asked = sync_requests_since(&h, before);
        if counts.streams_read_in_part == 0 {
            assert!(asked.is_empty(), "a whole read asks for no next run: {asked:?}");
            break;
        }
        assert_eq!(
            asked,
            std::slice::from_ref(&cm),
            "a read in part asks for the next run at once"
        );
    }
    eprintln!("runs {runs}: streams read in part {in_part:?}");
    assert!(runs >= 3, "the read took several runs: {in_part:?}");
    assert_eq!(member_rows(h.sf_records("CampaignMember").await), clean);
}

/// A campaign in several parts plans the next part while one is written (parts hold different
/// people): the same members as a sync of one part at a time, with Salesforce requests in
/// flight side by side, never more than the client's bound.
#[tokio::test]
async fn the_next_part_is_planned_while_one_is_written_with_the_same_members() {
    let scenario = generate(&Shape {
        recipients: 600,
        activities: 500,
        ..Shape::default()
    });
    let (_, expected) = clean_run(&scenario).await;
    let mut h = Harness::new(scenario, |_| {}).await;
    h.engine.options.part_size = 150;
    let cm = h.link_main().await;
    h.control.set_latency(20).await.unwrap();
    h.control.reset_counters().await.unwrap();
    let CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!("not done");
    };
    assert!(counts.parts >= 3, "{counts:?}");
    assert_eq!(member_rows(h.sf_records("CampaignMember").await), expected);
    let counters: Value = reqwest::get(format!("{}/_sandbox/counters", h.running.sf_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["peak in flight: sf"],
        salesforce::DEFAULT_REQUESTS_IN_FLIGHT as u64,
        "a part's reads overlapped the writes before it, within the bound"
    );
}
