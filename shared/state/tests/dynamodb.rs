//! The conformance suite on DynamoDB, served by the moto emulator that `make test` starts
//! (tests/support/with-moto.sh). Each test gets a table of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod conformance;

use aws_sdk_dynamodb::types::AttributeValue;
use state::WebhookEventStore;
use state::dynamo::DynamoStore;

async fn client() -> aws_sdk_dynamodb::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run these tests through `make test` (it starts the moto emulator)"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&config)
}

async fn fresh_store() -> DynamoStore {
    let client = client().await;
    let table = format!("state-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    DynamoStore::new(client, table)
}

conformance_suite!(fresh_store());

/// Every item of a store's table (one page: these tables are small).
async fn all_items(store: &DynamoStore) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let page = client().await.scan().table_name(store.table()).send().await.unwrap();
    assert!(page.last_evaluated_key.is_none(), "one page");
    page.items.unwrap()
}

#[tokio::test]
async fn webhook_events_carry_the_ttl_attribute_the_table_expires_on() {
    let store = fresh_store().await;
    store
        .record_webhook_batch(&conformance::batch("b1", &[conformance::webhook_event("k1", "x")]))
        .await
        .unwrap();
    let client = client().await;
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("expires_at"));

    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("WEBHOOK#k1".into()))
        .key("sk", AttributeValue::S("EVENT".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires, (conformance::at(0) + chrono::Duration::days(30)).timestamp());
}

#[tokio::test]
async fn a_missing_table_is_a_clear_permanent_error() {
    let store = DynamoStore::new(client().await, "no-such-table");
    let error = store.webhook_event("k").await.unwrap_err();
    assert!(error.to_string().contains("GetItem"), "{error}");
    assert!(
        !error.is_retryable(),
        "a missing table is configuration, not a passing fault"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_error() {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9") // discard port: nothing listens
        .load()
        .await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "t");
    let error = store.webhook_event("k").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn a_run_and_its_failures_carry_the_ttl_attribute_of_the_run() {
    use state::{RunFailure, RunRecord, RunStatus, RunStore};
    let store = fresh_store().await;
    let expires = conformance::at(0) + chrono::Duration::days(90);
    let run = RunRecord {
        run_id: "r1:cm1".into(),
        scope: "cm1".into(),
        started_at: conformance::at(0),
        ended_at: None,
        status: RunStatus::Running,
        counts: Default::default(),
        failure_count: 0,
        resumed_at: None,
        expires_at: Some(expires),
    };
    store.start_run(&run).await.unwrap();
    store
        .add_run_failures("r1:cm1", &[RunFailure::new("jo@example.com", "refused", None)])
        .await
        .unwrap();
    let items = all_items(&store).await;
    let expiries: Vec<(String, Option<i64>)> = items
        .iter()
        .map(|item| {
            (
                item["pk"].as_s().unwrap().clone(),
                item.get("expires_at").map(|v| v.as_n().unwrap().parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(expiries.len(), 3, "{expiries:?}");
    assert!(
        expiries.iter().all(|(_, at)| *at == Some(expires.timestamp())),
        "the run, its failure and its place among unfinished runs expire together: {expiries:?}"
    );
    let text = format!("{items:?}");
    assert!(!text.contains("jo@example.com"), "no whole address stored: {text}");
}

/// A big send's first sync records thousands of unmatched recipients: they go into a few items
/// (DynamoDB charges a write unit an item at least), each under the 400 KB item limit, and come
/// back whole and in order; a run recorded before, with one item a failure, still reads.
#[tokio::test]
async fn thousands_of_run_failures_are_a_few_items_and_read_back_in_order() {
    use state::{RunFailure, RunRecord, RunStatus, RunStore};
    let store = fresh_store().await;
    let run = RunRecord {
        run_id: "r2:cm1".into(),
        scope: "cm1".into(),
        started_at: conformance::at(0),
        ended_at: None,
        status: RunStatus::Running,
        counts: Default::default(),
        failure_count: 0,
        resumed_at: None,
        expires_at: None,
    };
    store.start_run(&run).await.unwrap();
    let client = client().await;
    // One failure in the layout of before: its own item.
    client
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("RUN#r2:cm1".into()))
        .item("sk", AttributeValue::S("FAILURE#00000000000000000001#000000".into()))
        .item("record", AttributeValue::S("campaign cm1".into()))
        .item("reason", AttributeValue::S("recorded before".into()))
        .send()
        .await
        .unwrap();
    let mut failures: Vec<RunFailure> = (0..6_000)
        .map(|i| {
            RunFailure::new(
                &format!("person{i:07}@example.com"),
                "no Lead or Contact has this email",
                None,
            )
        })
        .collect();
    // One with a reason longer than an item holds: kept, its reason cut.
    failures.push(RunFailure::new(
        "status Opened",
        &"x".repeat(500_000),
        Some("STRING_TOO_LONG"),
    ));
    store.add_run_failures("r2:cm1", &failures).await.unwrap();

    let items = client
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("RUN#r2:cm1".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert!(items.len() <= 5, "6,001 failures in {} items", items.len());
    for item in &items {
        let size: usize = item
            .iter()
            .map(|(k, v)| k.len() + v.as_s().map_or(8, String::len))
            .sum();
        assert!(size < 400_000, "an item of {size} bytes");
    }

    let (stored, read) = store.run("r2:cm1").await.unwrap().unwrap();
    assert_eq!(stored.failure_count, 6_001);
    assert_eq!(read.len(), 6_002);
    assert_eq!(read[0].reason, "recorded before");
    assert_eq!(read[1..6_001], failures[..6_000]);
    let cut = &read[6_001];
    assert_eq!(
        (cut.record.as_str(), cut.code.as_deref()),
        ("status Opened", Some("STRING_TOO_LONG"))
    );
    assert!(
        cut.reason.len() < 10_000 && cut.reason.starts_with("xxx"),
        "{}",
        cut.reason.len()
    );
}

#[tokio::test]
async fn a_delivery_cut_off_half_way_leaves_a_pending_batch_never_stranded_events() {
    let store = fresh_store().await;
    // The last event cannot be written (an item over DynamoDB's 400 KB): the call fails after
    // the batch is recorded, with some or none of the others written, as a timeout or an outage
    // would leave it (DynamoDB refuses a whole BatchWriteItem with an oversized item).
    let mut events: Vec<_> = (0..30)
        .map(|i| conformance::webhook_event(&format!("k-written{i:02}"), "x"))
        .collect();
    events.push(state::WebhookEventRecord {
        payload: serde_json::json!({"EmailAddress": "y@example.com", "Padding": "x".repeat(450 * 1024)}),
        ..conformance::webhook_event("k-unwritable", "y")
    });
    let delivery = conformance::batch("b-cut", &events);
    let failed = store.record_webhook_batch(&delivery).await;
    assert!(failed.is_err(), "{failed:?}");
    let pending = store.pending_webhook_batch(&delivery.batch).await.unwrap();
    let pending = pending.expect("a pending batch the sweep hands on");
    let listed: Vec<&str> = pending.events.iter().map(|e| e.dedupe_key.as_str()).collect();
    let mut written = Vec::new();
    for event in &events {
        if store.webhook_event(&event.dedupe_key).await.unwrap().is_some() {
            written.push(event.dedupe_key.as_str());
        }
    }
    assert_eq!(
        listed, written,
        "every written event listed; one not written skipped, not an error"
    );
    assert!(!listed.contains(&"k-unwritable"));
}

/// CM posts up to 1,000 events a delivery and waits only briefly for the answer: recording
/// them whole takes a few dozen requests (reads of 50 events and their outcomes, writes of
/// 25), not one a new event; a redelivery of the same events only reads.
#[tokio::test]
async fn a_1000_event_delivery_is_recorded_whole_in_a_few_dozen_requests() {
    let requests = state::dynamo::RequestCounter::default();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(requests.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let table = format!("state-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    let store = DynamoStore::new(client, table);
    requests.take();

    let events: Vec<_> = (0..1_000)
        .map(|i| conformance::webhook_event(&format!("big{i:04}"), "x"))
        .collect();
    let recorded = store
        .record_webhook_batch(&conformance::batch("big", &events))
        .await
        .unwrap();
    assert_eq!((recorded.new, recorded.to_apply), (1_000, 1_000));
    let expected = std::collections::BTreeMap::from([
        ("BatchGetItem".to_owned(), 20u64),
        ("BatchWriteItem".to_owned(), 40),
        ("PutItem".to_owned(), 1),
    ]);
    assert_eq!(requests.take(), expected, "requests to record 1,000 new events");
    let pending = store
        .pending_webhook_batch(&conformance::batch("big", &events).batch)
        .await
        .unwrap();
    assert_eq!(
        pending.unwrap().events,
        events,
        "every event recorded, in the delivery's order"
    );
    requests.take();

    let again = store
        .record_webhook_batch(&conformance::batch("again", &events))
        .await
        .unwrap();
    assert_eq!((again.new, again.duplicates, again.to_apply), (0, 1_000, 1_000));
    assert_eq!(
        requests.take(),
        std::collections::BTreeMap::from([("BatchGetItem".to_owned(), 20u64), ("PutItem".to_owned(), 1)]),
        "a redelivery of events not applied yet reads them and lists them again, writing none"
    );
}

/// Two overlapping deliveries of a new event both read it as unknown; the later one writes it
/// after the consumer applied it: the event stays applied (its outcome is not the delivery's
/// to write), and the next delivery hands nothing on.
#[tokio::test]
async fn a_late_write_of_an_event_the_consumer_applied_leaves_it_applied() {
    use state::EventState;
    let store = fresh_store().await;
    let event = conformance::webhook_event("late1", "x");
    store
        .record_webhook_batch(&conformance::batch("first", std::slice::from_ref(&event)))
        .await
        .unwrap();
    let applied = state::WebhookEventRecord {
        payload: serde_json::Value::Null,
        state: EventState::Applied { outcome: "done".into() },
        ..event.clone()
    };
    store.save_webhook_events(std::slice::from_ref(&applied)).await.unwrap();

    // The late delivery's write, as the intake makes it (a plain put of what CM sent).
    let mut item = all_items(&store)
        .await
        .into_iter()
        .find(|i| i["sk"].as_s().unwrap() == "EVENT")
        .unwrap();
    item.insert(
        "payload".into(),
        AttributeValue::S(serde_json::to_string(&event.payload).unwrap()),
    );
    client()
        .await
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    let read = store.webhook_event("late1").await.unwrap().unwrap();
    assert_eq!(read.state, applied.state, "still applied");
    let next = store
        .record_webhook_batch(&conformance::batch("next", &[event]))
        .await
        .unwrap();
    assert_eq!((next.new, next.to_apply, next.pending), (0, 0, false));
}

/// Events recorded before outcomes had items of their own (state in the event's item) still
/// read as they were: an applied one is not handed on again after an upgrade.
#[tokio::test]
async fn events_recorded_in_the_layout_of_before_keep_their_state() {
    let store = fresh_store().await;
    let client = client().await;
    let expires = (conformance::at(0) + chrono::Duration::days(30))
        .timestamp()
        .to_string();
    for (key, state) in [("old-applied", "applied"), ("old-received", "received")] {
        client
            .put_item()
            .table_name(store.table())
            .item("pk", AttributeValue::S(format!("WEBHOOK#{key}")))
            .item("sk", AttributeValue::S("EVENT".into()))
            .item("list_id", AttributeValue::S("list-1".into()))
            .item("payload", AttributeValue::S("null".into()))
            .item("received_at", AttributeValue::S("2026-11-01T00:00:00.000Z".into()))
            .item("expires_at", AttributeValue::N(expires.clone()))
            .item("state", AttributeValue::S(state.into()))
            .item("reason", AttributeValue::S("done".into()))
            .item("attempts", AttributeValue::N("2".into()))
            .send()
            .await
            .unwrap();
    }
    let applied = store.webhook_event("old-applied").await.unwrap().unwrap();
    assert_eq!(applied.state, state::EventState::Applied { outcome: "done".into() });
    assert_eq!(applied.attempts, 2);
    let events = [
        conformance::webhook_event("old-applied", "x"),
        conformance::webhook_event("old-received", "x"),
    ];
    let again = store
        .record_webhook_batch(&conformance::batch("again", &events))
        .await
        .unwrap();
    assert_eq!(
        (again.new, again.duplicates, again.to_apply),
        (0, 2, 1),
        "only the one not applied"
    );
}
