//! The Lambda edge of webhook-intake: `POST /hooks/{token}`. The token is checked in constant
//! time before anything else; the delivery is recorded as one batch (deduplicated, an event wrong
//! on its own refused alone) in the state table and handed on through EventBridge before the 2xx.
//! A body that is not a delivery gets a 4xx and records nothing; if the table or the bus fails, a
//! 5xx makes CM deliver again.

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use engine::webhook::{IntakeEngine, WebhookTokens};
use events::publisher::{EventSink, Publisher};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use state::Store;
use tokio::sync::RwLock;

/// What the intake builds once per container.
pub(crate) struct Intake<S, P> {
    pub store: Arc<S>,
    pub publisher: Arc<Publisher<P>>,
    pub tokens: Tokens,
}

/// Reads the tokens again (from the secret).
pub(crate) type Reload = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<WebhookTokens, lambda_support::StartupError>> + Send>> + Send + Sync,
>;

/// The webhook tokens of a warm container. A token it does not know may be the new one of a
/// rotation made since the container started: the secret is read again, at most once a minute,
/// so a rotation has no window of refused deliveries.
pub(crate) struct Tokens {
    known: RwLock<(WebhookTokens, Option<Instant>)>,
    reload: Option<Reload>,
}

/// How often an unknown token may make the container read the secret again.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(60);

impl Tokens {
    pub(crate) fn new(tokens: WebhookTokens, reload: Option<Reload>) -> Tokens {
        Tokens {
            known: RwLock::new((tokens, None)),
            reload,
        }
    }

    /// The tokens in the secret `secret_id`, read again from it when an unknown one arrives.
    pub(crate) async fn from_secret(
        secrets: aws_sdk_secretsmanager::Client,
        secret_id: String,
    ) -> Result<Tokens, lambda_support::StartupError> {
        let tokens = lambda_support::webhook_tokens(&secrets, &secret_id).await?;
        let reload: Reload = Box::new(move || {
            let (secrets, secret_id) = (secrets.clone(), secret_id.clone());
            Box::pin(async move { lambda_support::webhook_tokens(&secrets, &secret_id).await })
        });
        Ok(Tokens::new(tokens, Some(reload)))
    }

    /// The tokens to check `token` against: those known, or, for a token they do not accept,
    /// those the secret holds now (read again at most once a minute).
    async fn for_request(&self, token: &str) -> WebhookTokens {
        let (known, reloaded_at) = self.known.read().await.clone();
        let due = reloaded_at.is_none_or(|at| at.elapsed() >= RELOAD_AT_MOST_EVERY);
        let Some(reload) = self.reload.as_ref().filter(|_| !known.accepts(token) && due) else {
            return known;
        };
        let mut guard = self.known.write().await;
        guard.1 = Some(Instant::now());
        match reload().await {
            Ok(fresh) => {
                guard.0 = fresh.clone();
                fresh
            }
            Err(error) => {
                tracing::warn!(%error, "the webhook secret could not be read again; the tokens known are kept");
                known
            }
        }
    }
}

fn reply(status: u16, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::from(body.to_string())))
}

/// Answers one request: the token first (before any I/O), then the intake.
pub(crate) async fn handle<S: Store, P: EventSink>(intake: &Intake<S, P>, request: Request) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let Some(token) = path
        .trim_end_matches('/')
        .rsplit_once("/hooks/")
        .map(|(_, t)| t.to_owned())
    else {
        return reply(404, &json!({"message": "not found"}));
    };
    if request.method() != "POST" {
        return reply(405, &json!({"message": "POST only"}));
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let engine = IntakeEngine {
        store: intake.store.clone(),
        publisher: intake.publisher.clone(),
    };
    let tokens = intake.tokens.for_request(&token).await;
    let (status, body) = engine
        .receive(&tokens, &token, content_type.as_deref(), request.body().as_ref())
        .await;
    reply(status, &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;
    use events::publisher::MemorySink;
    use mapping::Settings;
    use state::SettingsStore;
    use state::memory::MemoryStore;

    const TOKEN: &str = "s3cret-token-0123456789abcdef";
    const LIST: &str = "0123456789abcdef0123456789abcdef";

    async fn intake() -> Intake<MemoryStore, MemorySink> {
        let store = MemoryStore::new();
        let mut settings = Settings::new(vec!["fedcba9876543210fedcba9876543210".into()], mapping::Tz::UTC);
        settings.cm_lists = vec![LIST.into()];
        store.save_settings(&settings, None, chrono::Utc::now()).await.unwrap();
        Intake {
            store: Arc::new(store),
            publisher: Arc::new(Publisher::new(MemorySink::default())),
            tokens: Tokens::new(
                WebhookTokens {
                    current: TOKEN.into(),
                    previous: None,
                },
                None,
            ),
        }
    }

    fn post(token: &str) -> Request {
        // Posted now: the intake refuses dates far from its clock.
        let date = mapping::CmTimestamp::from_utc(chrono::Utc::now() - chrono::Duration::hours(1), mapping::Tz::UTC);
        let body = json!({"ListID": LIST, "Events": [{"Type": "Deactivate", "Date": date.to_cm_string(),
            "EmailAddress": "jo@example.com", "Name": "Jo", "State": "Unsubscribed", "CustomFields": []}]});
        lambda_http::http::Request::builder()
            .method("POST")
            .uri(format!("https://example.lambda-url.eu-west-1.on.aws/hooks/{token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_delivery_with_the_token_is_recorded_and_handed_on_and_a_wrong_token_changes_nothing() {
        let intake = intake().await;
        let refused = handle(&intake, post("not-the-token")).await;
        assert_eq!(refused.status(), 401);
        assert!(intake.publisher.sink().events().is_empty());
        let accepted = handle(&intake, post(TOKEN)).await;
        assert_eq!(accepted.status(), 200);
        let handed_on = intake.publisher.sink().events();
        assert_eq!(handed_on.len(), 1);
        assert_eq!(handed_on[0].detail_type(), "webhook-batch-received.v1");
    }

    #[tokio::test]
    async fn a_token_rotated_since_the_container_started_is_accepted_after_one_read_of_the_secret() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let reload: Reload = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Ok(WebhookTokens {
                    current: "the-new-token-0123456789".into(),
                    previous: Some(TOKEN.into()),
                })
            })
        });
        let mut intake = intake().await;
        intake.tokens = Tokens::new(
            WebhookTokens {
                current: TOKEN.into(),
                previous: None,
            },
            Some(reload),
        );
        assert_eq!(handle(&intake, post(TOKEN)).await.status(), 200);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "a known token reads nothing");
        assert_eq!(handle(&intake, post("the-new-token-0123456789")).await.status(), 200);
        assert_eq!(
            handle(&intake, post(TOKEN)).await.status(),
            200,
            "the old one still works"
        );
        assert_eq!(handle(&intake, post("not-the-token")).await.status(), 401);
        assert_eq!(handle(&intake, post("not-the-token-either")).await.status(), 401);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "unknown tokens read the secret at most once a minute"
        );
    }
}
