//! webhook-intake: the URL Campaign Monitor posts list events to (a Lambda Function URL).
//!
//! `POST /hooks/{token}`: the token is checked in constant time; the body strictly; each event
//! is recorded (deduplicated) in the state table and handed on through EventBridge before the
//! 2xx. Bad input gets a 4xx and records nothing; if the table or the bus fails, a 5xx makes CM
//! deliver again.

use std::sync::Arc;

use events::publisher::{EventBridgeSink, Publisher};
use lambda_http::{Body, Error, Request, Response, service_fn};
use serde_json::json;
use state::SettingsStore;
use state::dynamo::DynamoStore;

struct Intake {
    store: Arc<DynamoStore>,
    publisher: Arc<Publisher<EventBridgeSink>>,
    token: String,
}

fn required(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("environment variable {name} is required").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_support::init_logging();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secret_id = required("WEBHOOK_SECRET_ID")?;
    let token = lambda_support::webhook_token(&aws_sdk_secretsmanager::Client::new(&aws), &secret_id).await?;
    let intake = Arc::new(Intake {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            required("STATE_TABLE")?,
        )),
        publisher: Arc::new(Publisher::new(EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(&aws),
            required("EVENT_BUS")?,
        ))),
        token,
    });
    lambda_http::run(service_fn(move |request: Request| {
        let intake = intake.clone();
        async move { Ok::<_, Error>(handle(&intake, request).await) }
    }))
    .await
}

fn reply(status: u16, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(json!({"message": message}).to_string()))
        .unwrap_or_else(|_| Response::new(Body::from(message.to_owned())))
}

async fn handle(intake: &Intake, request: Request) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let Some(token) = path
        .trim_end_matches('/')
        .rsplit_once("/hooks/")
        .map(|(_, t)| t.to_owned())
    else {
        return reply(404, "not found");
    };
    if request.method() != "POST" {
        return reply(405, "POST only");
    }
    let settings = match intake.store.load_settings().await {
        Ok(Some(stored)) => stored.settings,
        Ok(None) => return reply(503, "not configured yet"),
        Err(error) => {
            tracing::error!(%error, "state table unavailable");
            return reply(503, "temporarily unavailable");
        }
    };
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let engine = engine::webhook::IntakeEngine {
        store: intake.store.clone(),
        publisher: intake.publisher.clone(),
    };
    let (status, message) = engine
        .receive(
            &settings,
            &intake.token,
            &token,
            content_type.as_deref(),
            request.body().as_ref(),
        )
        .await;
    reply(status, &message)
}
