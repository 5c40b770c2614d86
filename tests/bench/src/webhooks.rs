//! The webhook intake at Campaign Monitor's real scale: a delivery of 1,000 events, each with
//! 20 custom fields (about 2 MB, as CM sends them), answered by the release-built intake
//! (`IntakeEngine`, what the function runs) against the emulator's DynamoDB and EventBridge:
//! the time to the answer, and the requests it cost.

use std::sync::Arc;
use std::time::Instant;

use engine::webhook::{IntakeEngine, WebhookTokens};
use events::publisher::{EventBridgeSink, Publisher};
use mapping::Settings;
use serde_json::{Value, json};
use state::SettingsStore;
use state::dynamo::DynamoStore;

use state::dynamo::RequestCounter;

const LIST: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-token-0123456789";

/// One measured delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// From the request to the answer, ms.
    pub millis: f64,
    /// DynamoDB HTTP requests it made.
    pub dynamodb_requests: u64,
    /// EventBridge `PutEvents` requests it made.
    pub put_events: u64,
}

/// The measured deliveries and the body's size.
#[derive(Debug, Clone)]
pub struct WebhookFigures {
    /// Bytes of one delivery.
    pub body_bytes: usize,
    /// Events in one delivery.
    pub events: usize,
    /// The measured deliveries (after one warm-up).
    pub runs: Vec<Delivery>,
}

/// A delivery of 1,000 Deactivate events, new addresses each time (`round`), 20 custom fields.
fn delivery(round: usize) -> Vec<u8> {
    let fields: Vec<Value> = (0..20)
        .map(|i| json!({"Key": format!("Custom field {i}"), "Value": format!("value {i} ").repeat(8)}))
        .collect();
    let events: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({"Type": "Deactivate", "Date": harness::cm_date_ago(mapping::Tz::UTC, 60), "EmailAddress": format!("subscriber-{round}-{i}@example.com"),
                "Name": format!("Subscriber {i}"), "State": if i % 4 == 0 { "Bounced" } else { "Unsubscribed" }, "CustomFields": fields})
        })
        .collect();
    json!({"ListID": LIST, "Events": events}).to_string().into_bytes()
}

/// Measures `reps` deliveries after one warm-up.
pub async fn measure(reps: usize) -> Result<WebhookFigures, String> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo_counter = RequestCounter::default();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(dynamo_counter.clone())
            .build(),
    );
    let name = format!("bench-webhooks-{}", std::process::id());
    DynamoStore::create_table(&dynamo, &name)
        .await
        .map_err(|e| e.to_string())?;
    let store = DynamoStore::new(dynamo, name.clone());
    let mut settings = Settings::new(vec!["fedcba9876543210fedcba9876543210".into()], mapping::Tz::UTC);
    settings.cm_lists = vec![LIST.into()];
    store
        .save_settings(&settings, None, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    let bus_counter = RequestCounter::default();
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&aws)
            .interceptor(bus_counter.clone())
            .build(),
    );
    events.create_event_bus().name(&name).send().await.map_err(|e| {
        format!(
            "creating the bus: {}",
            aws_sdk_eventbridge::error::DisplayErrorContext(&e)
        )
    })?;
    let intake = IntakeEngine {
        store: Arc::new(store),
        publisher: Arc::new(Publisher::new(EventBridgeSink::new(events, name))),
    };
    let tokens = WebhookTokens {
        current: TOKEN.into(),
        previous: None,
    };
    let mut figures = WebhookFigures {
        body_bytes: delivery(0).len(),
        events: 1_000,
        runs: Vec::new(),
    };
    for round in 0..=reps {
        let body = delivery(round);
        dynamo_counter.take();
        bus_counter.take();
        let started = Instant::now();
        let (status, answer) = intake.receive(&tokens, TOKEN, Some("application/json"), &body).await;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        if status != 200 {
            return Err(format!("the intake answered {status}: {answer}"));
        }
        eprintln!(
            "webhook delivery {round}: {millis:.0} ms, {} DynamoDB, {} PutEvents",
            dynamo_counter.total(),
            bus_counter.total()
        );
        if round > 0 {
            figures.runs.push(Delivery {
                millis,
                dynamodb_requests: dynamo_counter.total(),
                put_events: bus_counter.total(),
            });
        }
    }
    Ok(figures)
}

impl WebhookFigures {
    /// The Markdown section of BENCHMARKS.md.
    pub fn report(&self) -> String {
        let mut millis: Vec<f64> = self.runs.iter().map(|r| r.millis).collect();
        millis.sort_by(f64::total_cmp);
        let median = millis.get(millis.len() / 2).copied().unwrap_or_default();
        let (low, high) = (
            millis.first().copied().unwrap_or_default(),
            millis.last().copied().unwrap_or_default(),
        );
        let dynamo = self.runs.first().map_or(0, |r| r.dynamodb_requests);
        let put_events = self.runs.first().map_or(0, |r| r.put_events);
        format!(
            "\n## Webhook intake\n\nA delivery of {} Deactivate events, each with 20 custom fields ({:.1} MB, as CM sends them), new addresses each time, answered by the intake (release build, `IntakeEngine` as the function runs it) against the emulator's DynamoDB and EventBridge; {} deliveries after a warm-up.\n\n| answered in (ms) | DynamoDB requests | PutEvents requests | target: answered within 1 s |\n|---|---|---|---|\n| {median:.0} [{low:.0}–{high:.0}] | {dynamo} | {put_events} | {} |\n",
            self.events,
            self.body_bytes as f64 / 1_000_000.0,
            self.runs.len(),
            if median <= 1000.0 { "yes" } else { "no" }
        )
    }
}
