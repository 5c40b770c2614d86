//! The publisher against EventBridge and SQS on the moto emulator (`make test` starts it):
//! events published on a bus reach the queue a rule routes them to, each exactly once, and
//! failed entries are retried alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use backon::ExponentialBuilder;
use events::publisher::{EntryOutcome, EventBridgeSink, EventSink, OutgoingEntry, PublishError, Publisher};
use events::{Event, LinkOrigin, rule_pattern};

mod common;
use common::{Routing, config};

fn linked(i: usize) -> Event {
    Event::campaign_linked(&format!("cm{i:02}"), &format!("701{i:02}"), LinkOrigin::AutoCreated)
}

fn keys(events: &[Event]) -> Vec<String> {
    let mut keys: Vec<String> = events.iter().map(|e| e.idempotency_key().to_owned()).collect();
    keys.sort();
    keys
}

fn fast_retries() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_max_times(3)
        .with_jitter()
}

#[tokio::test]
async fn each_event_type_reaches_only_the_queue_its_rule_routes_it_to() {
    let routing = Routing::new(&[
        ("linked".to_owned(), rule_pattern(&["campaign-linked.v1"])),
        (
            "sync".to_owned(),
            rule_pattern(&["campaign-sync-requested.v1", "sync-continuation.v1"]),
        ),
    ])
    .await;
    let publisher = Publisher::new(routing.sink());
    let mut published: Vec<Event> = (0..23).map(linked).collect(); // three PutEvents calls
    published.push(Event::sync_requested("run-1", Some("cm01"), false, "schedule"));
    published.push(Event::sync_continuation("run-1", "cm01", 1));
    publisher.publish(&published).await.unwrap();

    let linked_events = routing.drain("linked").await;
    assert_eq!(keys(&linked_events), keys(&published[..23]), "each exactly once");
    assert_eq!(
        linked_events
            .iter()
            .find(|e| e.idempotency_key() == "linked:cm07:70107"),
        Some(&linked(7))
    );
    let sync_events = routing.drain("sync").await;
    assert_eq!(keys(&sync_events), keys(&published[23..]));
}

/// Wraps the real sink: the first attempt of chosen entries is refused with a given code
/// (without sending them), as EventBridge does under throttling; everything else goes through.
struct FlakySink {
    inner: EventBridgeSink,
    code: &'static str,
    refuse_once: Mutex<BTreeSet<String>>,
    attempts: Mutex<BTreeMap<String, usize>>,
    calls: Mutex<usize>,
}

impl FlakySink {
    fn new(inner: EventBridgeSink, code: &'static str, refuse: &[String]) -> Self {
        FlakySink {
            inner,
            code,
            refuse_once: Mutex::new(refuse.iter().cloned().collect()),
            attempts: Mutex::default(),
            calls: Mutex::default(),
        }
    }
}

impl EventSink for FlakySink {
    async fn put_events(&self, entries: &[OutgoingEntry]) -> Result<Vec<EntryOutcome>, PublishError> {
        *self.calls.lock().unwrap() += 1;
        let mut outcomes = vec![None; entries.len()];
        let mut forwarded = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            *self
                .attempts
                .lock()
                .unwrap()
                .entry(entry.idempotency_key.clone())
                .or_default() += 1;
            let refuse = { self.refuse_once.lock().unwrap().remove(&entry.idempotency_key) };
            if refuse {
                outcomes[i] = Some(EntryOutcome::Failed {
                    code: self.code.into(),
                    message: "injected".into(),
                });
            } else {
                forwarded.push((i, entry.clone()));
            }
        }
        let sent: Vec<OutgoingEntry> = forwarded.iter().map(|(_, e)| e.clone()).collect();
        if !sent.is_empty() {
            for ((i, _), outcome) in forwarded.iter().zip(self.inner.put_events(&sent).await?) {
                outcomes[*i] = Some(outcome);
            }
        }
        Ok(outcomes.into_iter().map(Option::unwrap).collect())
    }
}

#[tokio::test]
async fn only_the_failed_entries_are_retried_and_none_is_lost_or_doubled() {
    let routing = Routing::new(&[("linked".to_owned(), rule_pattern(&["campaign-linked.v1"]))]).await;
    let events: Vec<Event> = (0..12).map(linked).collect();
    let flaky: Vec<String> = [1, 4, 11]
        .iter()
        .map(|&i| linked(i).idempotency_key().to_owned())
        .collect();
    let publisher =
        Publisher::new(FlakySink::new(routing.sink(), "ThrottlingException", &flaky)).with_backoff(fast_retries());
    publisher.publish(&events).await.unwrap();

    let sink = publisher.sink();
    let attempts = sink.attempts.lock().unwrap().clone();
    for event in &events {
        let expected = if flaky.contains(&event.idempotency_key().to_owned()) {
            2
        } else {
            1
        };
        assert_eq!(
            attempts[event.idempotency_key()],
            expected,
            "{}",
            event.idempotency_key()
        );
    }
    // Chunk of 10 (+1 retry of its 2 failures) and chunk of 2 (+1 retry of its failure).
    assert_eq!(*sink.calls.lock().unwrap(), 4);
    assert_eq!(keys(&routing.drain("linked").await), keys(&events));
}

#[tokio::test]
async fn permanently_refused_entries_are_reported_by_key_and_not_retried() {
    let routing = Routing::new(&[("linked".to_owned(), rule_pattern(&["campaign-linked.v1"]))]).await;
    let events: Vec<Event> = (0..3).map(linked).collect();
    let bad = vec![linked(2).idempotency_key().to_owned()];
    let publisher =
        Publisher::new(FlakySink::new(routing.sink(), "MalformedDetail", &bad)).with_backoff(fast_retries());
    let error = publisher.publish(&events).await.unwrap_err();
    assert!(
        error.to_string().contains("linked:cm02:70102 (MalformedDetail)"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_eq!(publisher.sink().attempts.lock().unwrap()["linked:cm02:70102"], 1);
    // The others were published.
    assert_eq!(keys(&routing.drain("linked").await), keys(&events[..2]));
}

#[tokio::test]
async fn entries_still_throttled_after_the_retries_are_reported_as_retryable() {
    struct AlwaysThrottled;
    impl EventSink for AlwaysThrottled {
        async fn put_events(&self, entries: &[OutgoingEntry]) -> Result<Vec<EntryOutcome>, PublishError> {
            Ok(entries
                .iter()
                .map(|_| EntryOutcome::Failed {
                    code: "ThrottlingException".into(),
                    message: "slow down".into(),
                })
                .collect())
        }
    }
    let publisher = Publisher::new(AlwaysThrottled).with_backoff(fast_retries());
    let error = publisher.publish(&[linked(1)]).await.unwrap_err();
    assert!(matches!(&error, PublishError::Entries { failures } if failures.len() == 1));
    assert!(error.is_retryable(), "the trigger should retry later");
}

#[tokio::test]
async fn a_missing_bus_fails_the_entries_instead_of_dropping_them() {
    let config = config().await;
    let sink = EventBridgeSink::new(aws_sdk_eventbridge::Client::new(&config), "no-such-bus");
    let result = Publisher::new(sink)
        .with_backoff(fast_retries())
        .publish(&[linked(1)])
        .await;
    assert!(
        result.is_err(),
        "publishing to a missing bus must not look like success"
    );
}
