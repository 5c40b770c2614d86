//! The webhook consumer: opt-outs Salesforce refuses, forged unsubscribes and the list backstop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use events::publisher::MemorySink;
use sandbox::generate::{Shape, generate};
use serde_json::{Value, json};
use state::{RunStore, WebhookEventStore};

use common::*;

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
        payload: json!({"Type": "Deactivate", "Date": harness::cm_date_ago(settings.zone(), 60), "EmailAddress": email, "State": "Unsubscribed"}),
        person: None,
        received_at: now,
        expires_at: now + chrono::Duration::days(30),
        state: state::EventState::Received,
        attempts: 0,
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
    let mut h = Harness::new(small, |s| {
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
    let forged = json!({"ListID": list, "Events": [{"Type": "Deactivate", "Date": harness::cm_date_ago(settings.zone(), 30), "EmailAddress": email(0), "State": "Unsubscribed"}]});
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
    // CM may show a list change later than it posts it: the event waits, confirmed again at
    // every sweep for a day.
    let waiting = h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap();
    assert_eq!(
        (
            waiting.awaiting_confirmation,
            waiting.unconfirmed,
            waiting.people_updated
        ),
        (1, 0, 0),
        "{waiting:?}"
    );
    assert_eq!(h.engine.store.pending_webhook_batches(None, 10).await.unwrap().len(), 1);
    // A day on, the list still does not show it.
    h.engine.options.webhook_confirm_for = chrono::Duration::zero();
    let outcome = h.engine.apply_webhook_batch(&settings, &batch.batch).await.unwrap();
    assert_eq!((outcome.unconfirmed, outcome.people_updated), (1, 0), "{outcome:?}");
    assert!(
        !opted_out(h.sf_records("Contact").await, 0),
        "a forged post changes nothing"
    );
    let pending = h.engine.store.pending_webhook_batches(None, 10).await.unwrap();
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

/// A harness on ten people, each a Contact in Salesforce, opted out from any list.
async fn contacts_harness() -> Harness {
    let small = generate(&Shape {
        recipients: 10,
        activities: 0,
        in_salesforce: 1.0,
        ..Shape::default()
    });
    Harness::new(small, |s| s.opt_out_policy = mapping::settings::OptOutPolicy::AnyList).await
}

fn contact_email(h: &Harness, i: usize) -> String {
    h.scenario.sf.records["Contact"][i]["Email"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A recorded unsubscribe of `who` from `list`, received `minutes_ago`.
fn unsubscribe(list: &str, key: &str, who: &str, minutes_ago: i64) -> state::WebhookEventRecord {
    let now = chrono::Utc::now();
    state::WebhookEventRecord {
        dedupe_key: key.into(),
        list_id: list.into(),
        payload: json!({"Type": "Deactivate", "Date": harness::cm_date_ago(mapping::Tz::UTC, minutes_ago + 60), "EmailAddress": who, "State": "Unsubscribed"}),
        person: None,
        received_at: now - chrono::Duration::minutes(minutes_ago),
        expires_at: now + chrono::Duration::days(30),
        state: state::EventState::Received,
        attempts: 0,
    }
}

/// A delivery of `events`, received when the first was.
fn delivery(batch: &str, events: Vec<state::WebhookEventRecord>) -> state::WebhookBatchRecord {
    state::WebhookBatchRecord {
        batch: batch.into(),
        list_id: events[0].list_id.clone(),
        received_at: events[0].received_at,
        expires_at: events[0].expires_at,
        events,
        refused: Vec::new(),
    }
}

#[tokio::test]
async fn a_retried_batch_reports_its_unconfirmed_events_once() {
    let mut h = contacts_harness().await;
    h.engine.options.webhook_confirm_for = chrono::Duration::zero(); // a day on
    let settings = h.settings().await;
    let list = h.scenario.cm.lists[0].id.clone();
    // CM's list shows the second unsubscribe, not the first (a forged or outdated post).
    let confirmed = unsubscribe(&list, "k-confirmed", &contact_email(&h, 1), 24 * 60);
    cm_list_shows(&h, &list, json!([confirmed.payload.clone()])).await;
    let unconfirmed = unsubscribe(&list, "k-unconfirmed", &contact_email(&h, 0), 24 * 60);
    h.engine
        .store
        .record_webhook_batch(&delivery("b-twice", vec![unconfirmed, confirmed]))
        .await
        .unwrap();
    let reports = || async {
        let runs = h.engine.store.recent_runs(20).await.unwrap();
        runs.iter().filter(|r| r.scope == format!("webhook:{list}")).count()
    };

    // The first invocation closes the unconfirmed one and reports it, then Salesforce fails
    // the write of the confirmed one: Lambda runs the invocation again.
    h.control
        .set_faults(json!({"seed": 1, "sf": {"error_rate": 1.0}}))
        .await
        .unwrap();
    let error = h.engine.apply_webhook_batch(&settings, "b-twice").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    h.control.set_faults(json!({"seed": 1})).await.unwrap();
    let outcome = h.engine.apply_webhook_batch(&settings, "b-twice").await.unwrap();
    assert_eq!((outcome.unconfirmed, outcome.people_updated), (1, 1), "{outcome:?}");
    assert_eq!(
        reports().await,
        1,
        "the retried invocation reports the same closure once"
    );
}

#[tokio::test]
async fn an_event_refused_at_every_attempt_waits_for_an_admin_and_hides_no_newer_delivery() {
    let h = contacts_harness().await;
    let settings = h.settings().await;
    let list = h.scenario.cm.lists[0].id.clone();
    let stuck = unsubscribe(&list, "k-stuck", &contact_email(&h, 0), 60);
    cm_list_shows(&h, &list, json!([stuck.payload.clone()])).await;
    h.engine
        .store
        .record_webhook_batch(&delivery("b-stuck", vec![stuck]))
        .await
        .unwrap();

    // A validation rule refuses the opt-out at every attempt.
    h.control
        .set_faults(json!({"seed": 4, "sf": {"validation_error_rate": 1.0}}))
        .await
        .unwrap();
    for attempt in 1..state::MAX_WEBHOOK_ATTEMPTS {
        let outcome = h.engine.apply_webhook_batch(&settings, "b-stuck").await.unwrap();
        assert_eq!((outcome.failed, outcome.parked), (1, 0), "attempt {attempt}");
        let event = h.engine.store.webhook_event("k-stuck").await.unwrap().unwrap();
        assert_eq!(event.attempts, attempt, "each try counted");
    }
    let last = h.engine.apply_webhook_batch(&settings, "b-stuck").await.unwrap();
    assert_eq!((last.failed, last.parked), (1, 1), "{last:?}");
    assert!(
        h.engine.store.pending_webhook_batch("b-stuck").await.unwrap().is_none(),
        "no longer re-driven"
    );
    assert_eq!(h.engine.store.parked_webhook_batches(10).await.unwrap().len(), 1);

    // A newer delivery is the oldest pending one now: the stuck one hides nothing.
    let newer = unsubscribe(&list, "k-newer", &contact_email(&h, 1), 1);
    h.engine
        .store
        .record_webhook_batch(&delivery("b-newer", vec![newer]))
        .await
        .unwrap();
    let pending = h.engine.store.pending_webhook_batches(None, 1).await.unwrap();
    assert_eq!(pending[0].batch, "b-newer");

    // The doctor names it, with the reason and the fix.
    let findings = h.engine.doctor(None).await;
    let waiting = findings
        .iter()
        .find(|f| f.check == "webhook events waiting for an admin")
        .unwrap();
    assert_eq!(waiting.severity, engine::doctor::Severity::Problem, "{waiting:?}");
    assert!(
        waiting.detail.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        "{waiting:?}"
    );
    assert!(
        waiting
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("cm-sf-admin replay")
    );
    assert!(
        !waiting.detail.contains(&contact_email(&h, 0)),
        "no address in the finding"
    );

    // The admin fixes the cause and starts it again: from zero attempts, and applied.
    let store = h.engine.store.as_ref();
    let listed = engine::admin::webhooks::restart_parked(store, 10, true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        store.parked_webhook_batches(10).await.unwrap().len(),
        1,
        "a dry run changes nothing"
    );
    let restarted = engine::admin::webhooks::restart_parked(store, 10, false).await.unwrap();
    assert_eq!(restarted[0].batch, "b-stuck");
    assert!(store.parked_webhook_batches(10).await.unwrap().is_empty());
    assert_eq!(
        store.webhook_event("k-stuck").await.unwrap().unwrap().attempts,
        0,
        "a fresh start"
    );
    h.control.set_faults(json!({"seed": 4})).await.unwrap();
    let applied = h.engine.apply_webhook_batch(&settings, "b-stuck").await.unwrap();
    assert_eq!((applied.applied, applied.people_updated), (1, 1), "{applied:?}");
}
