//! The webhook intake: a table of bad deliveries, each refused whole with the right status and
//! recording nothing; a table of bad events, each refused alone while the rest of its delivery is
//! recorded; CM's largest deliveries accepted as one batch; the parser fuzzed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::Arc;

use engine::webhook::IntakeEngine;
use events::publisher::{MemorySink, Publisher};
use mapping::Settings;
use proptest::prelude::*;
use serde_json::{Value, json};
use state::memory::MemoryStore;
use state::{RunStore, SettingsStore, WebhookEventStore};

const TOKEN: &str = "s3cret-token-0123456789";
const LIST: &str = "0123456789abcdef0123456789abcdef";

fn tokens() -> engine::webhook::WebhookTokens {
    engine::webhook::WebhookTokens {
        current: TOKEN.into(),
        previous: None,
    }
}

fn settings() -> Settings {
    let mut settings = Settings::new(vec!["fedcba9876543210fedcba9876543210".into()], mapping::Tz::UTC);
    settings.cm_lists = vec![LIST.into()];
    settings
}

async fn intake() -> IntakeEngine<MemoryStore, MemorySink> {
    let store = MemoryStore::new();
    store
        .save_settings(&settings(), None, chrono::Utc::now())
        .await
        .unwrap();
    IntakeEngine {
        store: Arc::new(store),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
    }
}

fn event(kind: &str, email: &str) -> Value {
    json!({"Type": kind, "Date": harness::cm_date_ago(mapping::Tz::UTC, 60), "EmailAddress": email, "Name": "Jo", "State": "Unsubscribed", "CustomFields": []})
}

fn batch(events: Vec<Value>) -> Vec<u8> {
    json!({"ListID": LIST, "Events": events}).to_string().into_bytes()
}

async fn deliver(
    intake: &IntakeEngine<MemoryStore, MemorySink>,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    intake.receive(&tokens(), token, content_type, body).await
}

#[tokio::test]
async fn deliveries_that_are_not_webhook_deliveries_are_refused_whole_and_record_nothing() {
    let json = Some("application/json");
    let good = event("Deactivate", "jo@example.com");
    let huge = batch(vec![
        json!({"Type": "Deactivate", "Date": harness::cm_date_ago(mapping::Tz::UTC, 60), "EmailAddress": "jo@example.com", "State": "Unsubscribed", "Name": "x".repeat(7 * 1024 * 1024)}),
    ]);
    // (case, token, content type, body, expected status)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("wrong token", "nope", json, batch(vec![good.clone()]), 401),
        ("empty token", "", json, batch(vec![good.clone()]), 401),
        ("token prefix", &TOKEN[..10], json, batch(vec![good.clone()]), 401),
        (
            "token with suffix",
            "s3cret-token-0123456789x",
            json,
            batch(vec![good.clone()]),
            401,
        ),
        (
            "unknown list",
            TOKEN,
            json,
            json!({"ListID": "ffffffffffffffffffffffffffffffff", "Events": [good]})
                .to_string()
                .into_bytes(),
            403,
        ),
        (
            "wrong content type",
            TOKEN,
            Some("text/plain"),
            batch(vec![good.clone()]),
            415,
        ),
        ("no content type", TOKEN, None, batch(vec![good.clone()]), 415),
        (
            "form content type",
            TOKEN,
            Some("application/x-www-form-urlencoded"),
            batch(vec![good.clone()]),
            415,
        ),
        (
            "truncated JSON",
            TOKEN,
            json,
            br#"{"ListID":"0123456789abcdef0123456789abcdef","Events":[{"Type":"Sub"#.to_vec(),
            400,
        ),
        ("not JSON", TOKEN, json, b"<xml/>".to_vec(), 400),
        ("empty body", TOKEN, json, Vec::new(), 400),
        ("7 MB body (over the Function URL's 6 MB)", TOKEN, json, huge, 413),
        (
            "missing Events",
            TOKEN,
            json,
            json!({"ListID": LIST}).to_string().into_bytes(),
            400,
        ),
        (
            "Events not an array",
            TOKEN,
            json,
            json!({"ListID": LIST, "Events": "x"}).to_string().into_bytes(),
            400,
        ),
        ("no events", TOKEN, json, batch(vec![]), 400),
        (
            "ListID missing",
            TOKEN,
            json,
            json!({"Events": [good]}).to_string().into_bytes(),
            400,
        ),
    ];
    for (name, token, content_type, body, expected) in cases {
        let intake = intake().await;
        let (status, answer) = deliver(&intake, token, content_type, &body).await;
        assert_eq!(status, expected, "{name}: {answer}");
        assert!(
            intake.publisher.sink().published().is_empty(),
            "{name}: nothing published"
        );
        assert!(
            intake.store.pending_webhook_batches(None, 10).await.unwrap().is_empty(),
            "{name}: nothing recorded"
        );
    }
}

#[tokio::test]
async fn the_token_is_checked_before_anything_is_read() {
    // No settings stored: a right token gets 503 (not configured), a wrong one 401 all the same.
    let bare = IntakeEngine {
        store: Arc::new(MemoryStore::new()),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
    };
    let body = batch(vec![event("Deactivate", "jo@example.com")]);
    assert_eq!(deliver(&bare, "nope", Some("application/json"), &body).await.0, 401);
    assert_eq!(deliver(&bare, TOKEN, Some("application/json"), &body).await.0, 503);
}

#[tokio::test]
async fn an_event_wrong_on_its_own_is_refused_alone_and_the_rest_is_recorded() {
    let good = event("Deactivate", "jo@example.com");
    let with = |key: &str, value: Value| {
        let mut e = good.clone();
        e[key] = value;
        e
    };
    let without = |key: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(key);
        e
    };
    let bad: Vec<(&str, Value)> = vec![
        ("unknown event type", event("Forward", "jo@example.com")),
        ("missing EmailAddress", without("EmailAddress")),
        ("missing Date", without("Date")),
        ("bad Date", with("Date", json!("yesterday"))),
        ("ISO Date", with("Date", json!("2026-11-27T10:00:00Z"))),
        ("number as email", with("EmailAddress", json!(42))),
        ("not an email", with("EmailAddress", json!("jo.example.com"))),
        (
            "HTML in the email",
            with("EmailAddress", json!("<script>alert(1)</script>@x.com")),
        ),
        ("control characters", with("EmailAddress", json!("jo\u{0}@example.com"))),
        (
            "SOQL-looking email",
            with("EmailAddress", json!("x' OR Email != '@example.com")),
        ),
        ("Deactivate without State", without("State")),
        ("not an object", json!("Deactivate")),
        (
            "a date before CM's years",
            with("Date", json!("-262143-01-01 00:00:00")),
        ),
        ("year zero", with("Date", json!("0000-01-01 00:00:00"))),
        ("a State of 300 KB", with("State", json!("U".repeat(300 * 1024)))),
        (
            "an old address that is not one",
            with("OldEmailAddress", json!("x".repeat(5_000))),
        ),
    ];
    for (name, wrong) in bad {
        let intake = intake().await;
        let body = batch(vec![
            event("Deactivate", "first@example.com"),
            wrong,
            event("Deactivate", "last@example.com"),
        ]);
        let (status, answer) = deliver(&intake, TOKEN, Some("application/json"), &body).await;
        assert_eq!(status, 200, "{name}: {answer}");
        let refused = answer["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{name}: {answer}");
        assert_eq!(refused[0]["index"], 1, "{name}");
        let reason = refused[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("Events[1]: "), "{name}: {answer}");
        // Bounded, and never the value itself (an address, a string of any length).
        assert!(
            reason.chars().count() <= engine::webhook::MAX_REASON_CHARS,
            "{name}: {reason}"
        );
        for value in [
            "jo.example.com",
            "<script>",
            "x' OR",
            "UUUU",
            "xxxx",
            "yesterday",
            "Forward",
            "42",
        ] {
            assert!(!reason.contains(value), "{name}: {reason}");
        }
        let batches = intake.store.pending_webhook_batches(None, 10).await.unwrap();
        let recorded: Vec<&str> = batches[0]
            .events
            .iter()
            .map(|e| e.payload["EmailAddress"].as_str().unwrap())
            .collect();
        assert_eq!(recorded, ["first@example.com", "last@example.com"], "{name}");
        assert_eq!(intake.publisher.sink().published().len(), 1, "{name}: one hand-off");
        assert_eq!(
            batches[0].refused,
            [refused[0]["reason"].as_str().unwrap()],
            "{name}: the refusal goes with the batch, for the consumer to report"
        );
        assert!(
            intake.store.recent_runs(5).await.unwrap().is_empty(),
            "{name}: the intake writes webhook items only"
        );
    }
    // What the rules never read cannot refuse an event: HTML in a name is data, not markup; a
    // null name, a null custom field value and odd custom fields are accepted (none is kept).
    for (name, odd) in [
        ("HTML in the name", with("Name", json!("<b>Jo</b>"))),
        ("null Name", with("Name", Value::Null)),
        (
            "null custom field value",
            with("CustomFields", json!([{"Key": "Tier", "Value": null}])),
        ),
        ("CustomFields of another type", with("CustomFields", json!("x"))),
    ] {
        let intake = intake().await;
        let (status, answer) = deliver(&intake, TOKEN, Some("application/json"), &batch(vec![odd])).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            answer["message"], "recorded 1, already known 0, refused 0",
            "{name}: {answer}"
        );
    }
}

#[tokio::test]
async fn cms_largest_delivery_is_one_batch_with_only_what_the_rules_need() {
    let intake = intake().await;
    let fields: Vec<Value> = (0..20)
        .map(|i| json!({"Key": format!("Field {i}"), "Value": "x".repeat(80)}))
        .collect();
    let events: Vec<Value> = (0..1_000)
        .map(|i| {
            let mut e = event(
                if i % 3 == 0 { "Subscribe" } else { "Deactivate" },
                &format!("p{i}@example.com"),
            );
            e["CustomFields"] = json!(fields);
            e["SignupIPAddress"] = json!("203.0.113.7");
            e
        })
        .collect();
    let body = batch(events);
    assert!(body.len() > 1_500_000, "{} bytes", body.len());
    let (status, answer) = deliver(&intake, TOKEN, Some("application/json"), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message"], "recorded 1000, already known 0, refused 0");
    let published = intake.publisher.sink().events();
    assert_eq!(
        published.len(),
        1,
        "one hand-off for the delivery, not one per subscriber"
    );
    let batches = intake.store.pending_webhook_batches(None, 10).await.unwrap();
    assert_eq!(batches[0].events.len(), 1_000);
    let stored = serde_json::to_string(&batches[0].events[0].payload).unwrap();
    for kept_out in ["Field 0", "203.0.113.7", "Jo"] {
        assert!(!stored.contains(kept_out), "{kept_out} is not stored: {stored}");
    }
}

#[tokio::test]
async fn a_redelivered_batch_is_accepted_and_records_nothing_new() {
    let intake = intake().await;
    let body = batch(vec![
        event("Deactivate", " Jo@Example.COM "),
        event("Subscribe", "sam@example.com"),
    ]);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, answer) = deliver(&intake, TOKEN, Some("application/json; charset=utf-8"), &body).await;
        assert_eq!(status, 200);
        answers.push(answer["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(answers[0], "recorded 2, already known 0, refused 0");
    assert_eq!(answers[2], "recorded 0, already known 2, refused 0");
    // Handed on again while not applied, so a lost hand-off is recovered.
    assert_eq!(intake.publisher.sink().events().len(), 3);
    let batches = intake.store.pending_webhook_batches(None, 10).await.unwrap();
    let emails: std::collections::BTreeSet<&str> = batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| e.payload["EmailAddress"].as_str().unwrap()))
        .collect();
    assert_eq!(
        emails,
        ["jo@example.com", "sam@example.com"].into(),
        "normalised, recorded once each"
    );
    assert!(batches.iter().all(|b| b.list_id == LIST));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)))]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = engine::webhook::read_delivery(Some("application/json"), &body, &settings(), chrono::Utc::now());
    }

    /// From the raw body to the change the consumer plans (its date in UTC, where its
    /// confirmation read of the list starts), at any time of receipt: no panic anywhere in the
    /// date arithmetic, whatever the date, type, state or addresses.
    #[test]
    fn arbitrary_deliveries_never_panic_from_body_to_planned_change(
        kind in prop::sample::select(vec!["Deactivate", "Subscribe", "Update", "deactivate", ""]),
        date in prop::strategy::Union::new([
            "\\PC{0,25}".boxed(),
            (1i32..=9999, 1u32..=12, 1u32..=31, 0u32..=23, 0u32..=59, 0u32..=59)
                .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
                .boxed(),
        ]),
        state in prop::option::of(prop::sample::select(vec!["Unsubscribed", "Bounced", "Deleted", "Active", "x"])),
        old in prop::option::of("[a-z]{1,8}@example\\.com"),
        received in 0i64..=8_000_000_000,
    ) {
        let now = chrono::DateTime::from_timestamp(received, 0).unwrap_or_default();
        let body = json!({"ListID": LIST, "Events": [{"Type": kind, "Date": date, "EmailAddress": "jo@example.com", "State": state, "OldEmailAddress": old}]}).to_string();
        if let Ok(delivery) = engine::webhook::read_delivery(Some("application/json"), body.as_bytes(), &settings(), now) {
            for valid in delivery.events {
                let record = state::WebhookEventRecord {
                    dedupe_key: valid.dedupe_key,
                    list_id: LIST.into(),
                    payload: serde_json::to_value(&valid.event).unwrap(),
                    person: None,
                    received_at: now,
                    expires_at: now,
                    state: state::EventState::Received,
                    attempts: 0,
                };
                let _ = engine::webhook::planned_change(&record, &settings(), now);
            }
        }
    }

    /// Arbitrary JSON-shaped deliveries never panic either: refused whole with a 4xx, or read
    /// with each event accepted or refused with its reason.
    #[test]
    fn arbitrary_json_never_panics(kind in "[A-Za-z]{0,12}", email in "\\PC{0,40}", date in "\\PC{0,25}", state in prop::option::of("\\PC{0,12}")) {
        let body = json!({"ListID": LIST, "Events": [{"Type": kind, "Date": date, "EmailAddress": email, "State": state}]}).to_string();
        match engine::webhook::read_delivery(Some("application/json"), body.as_bytes(), &settings(), chrono::Utc::now()) {
            Err(refused) => prop_assert!(refused.status >= 400 && refused.status < 500),
            Ok(delivery) => prop_assert_eq!(delivery.events.len() + delivery.refused.len(), 1),
        }
    }
}

#[tokio::test]
async fn a_bus_that_refuses_means_5xx_so_cm_delivers_again() {
    use events::publisher::{EntryOutcome, EventSink, OutgoingEntry, PublishError};
    struct Down;
    impl EventSink for Down {
        async fn put_events(&self, _: &[OutgoingEntry]) -> Result<Vec<EntryOutcome>, PublishError> {
            Err(PublishError::Call {
                message: "bus unreachable".into(),
                retryable: true,
            })
        }
    }
    let working = intake().await;
    let intake = IntakeEngine {
        store: working.store.clone(),
        publisher: Arc::new(Publisher::new(Down)),
    };
    let body = batch(vec![event("Deactivate", "jo@example.com")]);
    let (status, _) = intake.receive(&tokens(), TOKEN, Some("application/json"), &body).await;
    assert_eq!(status, 503);
    // The event was recorded but not handed on: the redelivery hands it on.
    let (status, answer) = working.receive(&tokens(), TOKEN, Some("application/json"), &body).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (200, Some("recorded 0, already known 1, refused 0"))
    );
    assert_eq!(working.publisher.sink().published().len(), 1, "nothing lost");
}

#[tokio::test]
async fn while_the_token_rotates_both_the_new_and_the_old_are_accepted() {
    let intake = intake().await;
    let rotating = engine::webhook::WebhookTokens {
        current: "the-new-token-0123456789".into(),
        previous: Some(TOKEN.into()),
    };
    let body = batch(vec![event("Deactivate", "jo@example.com")]);
    for token in ["the-new-token-0123456789", TOKEN] {
        let (status, _) = intake.receive(&rotating, token, Some("application/json"), &body).await;
        assert_eq!(status, 200, "{token}");
    }
    let (status, _) = intake
        .receive(&rotating, "the-new-token-012345678", Some("application/json"), &body)
        .await;
    assert_eq!(status, 401);
    let empty_previous = engine::webhook::WebhookTokens {
        current: TOKEN.into(),
        previous: Some(String::new()),
    };
    assert!(!empty_previous.accepts(""), "an empty token never matches");
}

#[test]
fn an_event_dated_outside_the_window_around_its_arrival_is_refused_alone() {
    let now: chrono::DateTime<chrono::Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
    let body = json!({"ListID": LIST, "Events": [
        {"Type": "Deactivate", "Date": "2026-11-27 11:59:00", "EmailAddress": "jo@example.com", "State": "Unsubscribed"},
        {"Type": "Deactivate", "Date": "2026-11-30 12:00:00", "EmailAddress": "sam@example.com", "State": "Unsubscribed"},
        {"Type": "Deactivate", "Date": "9999-12-31 23:59:59", "EmailAddress": "al@example.com", "State": "Unsubscribed"},
        {"Type": "Deactivate", "Date": "2026-11-20 09:00:00", "EmailAddress": "late@example.com", "State": "Unsubscribed"},
        {"Type": "Deactivate", "Date": "2026-10-20 09:00:00", "EmailAddress": "old@example.com", "State": "Unsubscribed"},
        {"Type": "Deactivate", "Date": "1970-01-01 00:00:00", "EmailAddress": "epoch@example.com", "State": "Unsubscribed"},
    ]})
    .to_string();
    let delivery = engine::webhook::read_delivery(Some("application/json"), body.as_bytes(), &settings(), now).unwrap();
    assert_eq!(
        delivery.events.len(),
        2,
        "today's event and a week-old one (CM retries for about a week) are kept"
    );
    let reasons: Vec<&str> = delivery.refused.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "Events[1]: Date is more than 36 hours ahead of the time it was received",
            "Events[2]: Date is more than 36 hours ahead of the time it was received",
            "Events[4]: Date is more than 30 days before the time it was received",
            "Events[5]: Date is more than 30 days before the time it was received"
        ]
    );
}

#[tokio::test]
async fn a_delivery_of_any_count_under_the_body_cap_is_recorded_in_batches_of_1000() {
    let intake = intake().await;
    // 2,500 events and 250 malformed ones, about 500 KB: more than CM sends, under the cap.
    let mut events: Vec<Value> = (0..2_500)
        .map(|i| json!({"Type": "Deactivate", "Date": harness::cm_date_ago(mapping::Tz::UTC, 60), "EmailAddress": format!("p{i}@example.com"), "State": "Unsubscribed"}))
        .collect();
    events.extend((0..250).map(|i| json!({"Type": "Deactivate", "Date": harness::cm_date_ago(mapping::Tz::UTC, 60), "EmailAddress": format!("bad{i}"), "State": "Unsubscribed"})));
    let (status, body) = deliver(&intake, TOKEN, Some("application/json"), &batch(events)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "recorded 2500, already known 0, refused 250");
    assert_eq!(
        body["refused"].as_array().unwrap().len(),
        engine::webhook::MAX_REFUSED_KEPT,
        "the answer stays small"
    );

    let batches = intake.store.pending_webhook_batches(None, 10).await.unwrap();
    let mut sizes: Vec<usize> = batches.iter().map(|b| b.events.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1_000, 1_000], "each batch item lists 1,000 keys at most");
    let refused: Vec<&Vec<String>> = batches.iter().map(|b| &b.refused).filter(|r| !r.is_empty()).collect();
    assert_eq!(refused.len(), 1, "the refusals are reported once, with one batch");
    assert_eq!(refused[0].len(), engine::webhook::MAX_REFUSED_KEPT + 1);
    assert_eq!(
        refused[0].last().unwrap(),
        "and 150 more events refused for reasons not kept"
    );
    let handed_on = intake.publisher.sink().events();
    assert_eq!(handed_on.len(), 3, "one hand-off per batch");
}
