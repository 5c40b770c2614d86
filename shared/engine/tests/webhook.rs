//! The webhook intake: a table of bad deliveries, each refused with the right status and
//! recording nothing; good deliveries recorded once and handed on; the parser fuzzed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::Arc;

use engine::webhook::IntakeEngine;
use events::publisher::{MemorySink, Publisher};
use mapping::Settings;
use proptest::prelude::*;
use serde_json::{Value, json};
use state::WebhookEventStore;
use state::memory::MemoryStore;

const TOKEN: &str = "s3cret-token-0123456789";
const LIST: &str = "0123456789abcdef0123456789abcdef";

fn settings() -> Settings {
    let mut settings = Settings::new(vec!["fedcba9876543210fedcba9876543210".into()], mapping::Tz::UTC);
    settings.cm_lists = vec![LIST.into()];
    settings
}

fn intake() -> IntakeEngine<MemoryStore, MemorySink> {
    IntakeEngine {
        store: Arc::new(MemoryStore::new()),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
    }
}

fn event(kind: &str, email: &str) -> Value {
    json!({"Type": kind, "Date": "2026-11-27 10:00:00", "EmailAddress": email, "Name": "Jo", "State": "Unsubscribed", "CustomFields": []})
}

fn batch(events: Vec<Value>) -> Vec<u8> {
    json!({"ListID": LIST, "Events": events}).to_string().into_bytes()
}

async fn deliver(
    intake: &IntakeEngine<MemoryStore, MemorySink>,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> u16 {
    intake.receive(&settings(), TOKEN, token, content_type, body).await.0
}

#[tokio::test]
async fn bad_deliveries_are_refused_and_record_nothing() {
    let json = Some("application/json");
    let good = event("Deactivate", "jo@example.com");
    let with = |key: &str, value: Value| {
        let mut e = good.clone();
        e[key] = value;
        batch(vec![e])
    };
    let without = |key: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(key);
        batch(vec![e])
    };
    let huge_name = with("Name", json!("x".repeat(11 * 1024 * 1024)));
    let many = batch(
        (0..10_000)
            .map(|i| event("Subscribe", &format!("p{i}@example.com")))
            .collect(),
    );
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
        ("10 MB body", TOKEN, json, huge_name, 413),
        ("10,000 events", TOKEN, json, many, 413),
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
            "unknown event type",
            TOKEN,
            json,
            batch(vec![event("Forward", "jo@example.com")]),
            400,
        ),
        ("missing EmailAddress", TOKEN, json, without("EmailAddress"), 400),
        ("missing Date", TOKEN, json, without("Date"), 400),
        ("bad Date", TOKEN, json, with("Date", json!("yesterday")), 400),
        (
            "ISO Date",
            TOKEN,
            json,
            with("Date", json!("2026-11-27T10:00:00Z")),
            400,
        ),
        ("number as email", TOKEN, json, with("EmailAddress", json!(42)), 400),
        (
            "not an email",
            TOKEN,
            json,
            with("EmailAddress", json!("jo.example.com")),
            400,
        ),
        (
            "HTML in the email",
            TOKEN,
            json,
            with("EmailAddress", json!("<script>alert(1)</script>@x.com")),
            400,
        ),
        (
            "control characters",
            TOKEN,
            json,
            with("EmailAddress", json!("jo\u{0}@example.com")),
            400,
        ),
        (
            "SOQL-looking email",
            TOKEN,
            json,
            with("EmailAddress", json!("x' OR Email != '@example.com")),
            400,
        ),
        ("Deactivate without State", TOKEN, json, without("State"), 400),
        (
            "CustomFields wrong type",
            TOKEN,
            json,
            with("CustomFields", json!("x")),
            400,
        ),
        (
            "ListID missing",
            TOKEN,
            json,
            json!({"Events": [good]}).to_string().into_bytes(),
            400,
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, token, content_type, body, expected) in cases {
        let intake = intake();
        let status = deliver(&intake, token, content_type, &body).await;
        assert_eq!(status, expected, "{name}");
        assert!(
            intake.publisher.sink().published().is_empty(),
            "{name}: nothing published"
        );
    }
    // HTML in a name is data, not markup: accepted and stored as sent.
    let intake = intake();
    let status = deliver(&intake, TOKEN, json, &with("Name", json!("<b>Jo</b>"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_redelivered_batch_is_accepted_and_records_nothing_new() {
    let intake = intake();
    let body = batch(vec![
        event("Deactivate", " Jo@Example.COM "),
        event("Subscribe", "sam@example.com"),
    ]);
    for _ in 0..3 {
        assert_eq!(
            deliver(&intake, TOKEN, Some("application/json; charset=utf-8"), &body).await,
            200
        );
    }
    let published = intake.publisher.sink().events();
    // Recorded once each; republished while not yet applied, so a lost hand-off is recovered.
    let keys: std::collections::BTreeSet<String> = published.iter().map(|e| e.idempotency_key().to_owned()).collect();
    assert_eq!(keys.len(), 2);
    let key = keys.iter().next().unwrap();
    let recorded = intake.store.webhook_event(key).await.unwrap().unwrap();
    assert_eq!(recorded.list_id, LIST);
    let email = recorded.payload["EmailAddress"].as_str().unwrap();
    assert!(
        email == "jo@example.com" || email == "sam@example.com",
        "normalised: {email}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)))]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = engine::webhook::validate(TOKEN, TOKEN, Some("application/json"), &body, &settings());
    }

    /// Arbitrary JSON-shaped deliveries never panic either, and are refused or accepted cleanly.
    #[test]
    fn arbitrary_json_never_panics(kind in "[A-Za-z]{0,12}", email in "\\PC{0,40}", date in "\\PC{0,25}", state in prop::option::of("\\PC{0,12}")) {
        let body = json!({"ListID": LIST, "Events": [{"Type": kind, "Date": date, "EmailAddress": email, "State": state}]}).to_string();
        let outcome = engine::webhook::validate(TOKEN, TOKEN, Some("application/json"), body.as_bytes(), &settings());
        if let Err(refused) = outcome {
            prop_assert!(refused.status >= 400 && refused.status < 500);
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
    let intake = IntakeEngine {
        store: Arc::new(MemoryStore::new()),
        publisher: Arc::new(Publisher::new(Down)),
    };
    let body = batch(vec![event("Deactivate", "jo@example.com")]);
    let (status, _) = intake
        .receive(&settings(), TOKEN, TOKEN, Some("application/json"), &body)
        .await;
    assert_eq!(status, 503);
    // The event was recorded but not handed on: the redelivery publishes it.
    let working = IntakeEngine {
        store: intake.store.clone(),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
    };
    let (status, message) = working
        .receive(&settings(), TOKEN, TOKEN, Some("application/json"), &body)
        .await;
    assert_eq!((status, message.as_str()), (200, "recorded 0, already known 1"));
    assert_eq!(working.publisher.sink().published().len(), 1, "nothing lost");
}
