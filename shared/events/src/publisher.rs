//! Publishing events to EventBridge without losing or silently dropping any.
//!
//! `PutEvents` takes at most 10 entries and answers 200 even when some entries failed: the
//! response's `FailedEntryCount` and each entry's `ErrorCode` say which. The publisher sends in
//! chunks of 10, retries exactly the failed entries whose error is transient (with exponential
//! backoff and jitter), and reports the rest as a typed error naming each entry's idempotency key.

use std::future::Future;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::{Event, SOURCE};

/// `PutEvents` accepts at most this many entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// One entry as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEntry {
    /// The event's idempotency key (for reports).
    pub idempotency_key: String,
    /// `Source`.
    pub source: String,
    /// `DetailType`.
    pub detail_type: String,
    /// `Detail` (JSON text).
    pub detail: String,
}

/// The outcome of one entry of a `PutEvents` call, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Accepted, with EventBridge's event id.
    Accepted(String),
    /// Refused.
    Failed {
        /// `ErrorCode`, e.g. `ThrottlingException`, `InternalFailure`, `MalformedDetail`.
        code: String,
        /// `ErrorMessage`.
        message: String,
    },
}

/// Error codes of a failed entry that are worth retrying.
pub fn is_transient_entry_error(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException" | "InternalFailure" | "InternalException" | "ServiceUnavailable"
    )
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The `PutEvents` call itself failed (after the SDK's own retries).
    #[error("PutEvents call failed: {message}")]
    Call {
        /// The SDK's error, flattened for display; `retryable` says what to do with it.
        message: String,
        /// A later attempt may succeed (throttling, 5xx, network).
        retryable: bool,
    },
    /// Some entries were still refused after the retries (or permanently).
    #[error("{} event(s) not published: {}", failures.len(), failures.iter().map(|f| format!("{} ({})", f.idempotency_key, f.code)).collect::<Vec<_>>().join(", "))]
    Entries {
        /// Each refused entry.
        failures: Vec<FailedEntry>,
    },
    /// An event could not be serialized (a bug, not a transient fault).
    #[error("event {idempotency_key} could not be serialized: {error}")]
    Serialize {
        /// The event.
        idempotency_key: String,
        /// serde's error.
        error: serde_json::Error,
    },
}

impl PublishError {
    /// Whether the caller (the Lambda handler) should let the trigger retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublishError::Call { retryable, .. } => *retryable,
            PublishError::Entries { failures } => failures.iter().all(|f| is_transient_entry_error(&f.code)),
            PublishError::Serialize { .. } => false,
        }
    }
}

/// An entry that was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// The event's idempotency key.
    pub idempotency_key: String,
    /// The last `ErrorCode`.
    pub code: String,
    /// The last `ErrorMessage`.
    pub message: String,
}

/// The `PutEvents` call, as a narrow trait so tests can wrap the real client with faults.
pub trait EventSink: Send + Sync {
    /// Sends up to 10 entries; returns one outcome per entry, in order.
    fn put_events(
        &self,
        entries: &[OutgoingEntry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, PublishError>> + Send;
}

/// The real sink: an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgeSink {
    /// Publishes to `bus_name` with `client`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        EventBridgeSink {
            client,
            bus_name: bus_name.into(),
        }
    }
}

impl EventSink for EventBridgeSink {
    async fn put_events(&self, entries: &[OutgoingEntry]) -> Result<Vec<EntryOutcome>, PublishError> {
        let request_entries = entries
            .iter()
            .map(|entry| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(&entry.source)
                    .detail_type(&entry.detail_type)
                    .detail(&entry.detail)
                    .build()
            })
            .collect();
        let output = self
            .client
            .put_events()
            .set_entries(Some(request_entries))
            .send()
            .await
            .map_err(|error| {
                let retryable = match &error {
                    aws_sdk_eventbridge::error::SdkError::ServiceError(service) => {
                        let status = service.raw().status().as_u16();
                        status == 429 || status >= 500
                    }
                    aws_sdk_eventbridge::error::SdkError::TimeoutError(_)
                    | aws_sdk_eventbridge::error::SdkError::DispatchFailure(_)
                    | aws_sdk_eventbridge::error::SdkError::ResponseError(_) => true,
                    _ => false,
                };
                PublishError::Call {
                    message: aws_sdk_eventbridge::error::DisplayErrorContext(&error).to_string(),
                    retryable,
                }
            })?;
        let results = output.entries();
        if results.len() != entries.len() {
            return Err(PublishError::Call {
                message: format!(
                    "PutEvents answered {} results for {} entries",
                    results.len(),
                    entries.len()
                ),
                retryable: true,
            });
        }
        Ok(results
            .iter()
            .map(|result| match (result.event_id(), result.error_code()) {
                (_, Some(code)) => EntryOutcome::Failed {
                    code: code.to_owned(),
                    message: result.error_message().unwrap_or_default().to_owned(),
                },
                (Some(id), None) => EntryOutcome::Accepted(id.to_owned()),
                (None, None) => EntryOutcome::Failed {
                    code: "InternalFailure".into(),
                    message: "no event id".into(),
                },
            })
            .collect())
    }
}

/// Publishes events through a sink, in chunks of 10, retrying only failed entries.
#[derive(Debug, Clone)]
pub struct Publisher<S> {
    sink: S,
    backoff: ExponentialBuilder,
}

impl<S: EventSink> Publisher<S> {
    /// A publisher with the default retry policy: up to 5 retries, 50 ms doubling to 2 s, jitter.
    pub fn new(sink: S) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(5)
            .with_jitter();
        Publisher { sink, backoff }
    }

    /// Replaces the retry policy.
    pub fn with_backoff(mut self, backoff: ExponentialBuilder) -> Self {
        self.backoff = backoff;
        self
    }

    /// The sink (for tests and counters).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Publishes every event or returns which were not published.
    pub async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let detail = event
                .detail()
                .and_then(|value| serde_json::to_string(&value))
                .map_err(|error| PublishError::Serialize {
                    idempotency_key: event.idempotency_key().to_owned(),
                    error,
                })?;
            entries.push(OutgoingEntry {
                idempotency_key: event.idempotency_key().to_owned(),
                source: SOURCE.to_owned(),
                detail_type: event.detail_type().to_owned(),
                detail,
            });
        }
        let mut failures = Vec::new();
        for chunk in entries.chunks(MAX_ENTRIES_PER_CALL) {
            failures.extend(self.publish_chunk(chunk.to_vec()).await?);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Entries { failures })
        }
    }

    async fn publish_chunk(&self, mut pending: Vec<OutgoingEntry>) -> Result<Vec<FailedEntry>, PublishError> {
        let mut delays = self.backoff.build();
        let mut permanent = Vec::new();
        loop {
            let outcomes = self.sink.put_events(&pending).await?;
            let mut retry = Vec::new();
            for (entry, outcome) in pending.into_iter().zip(outcomes) {
                if let EntryOutcome::Failed { code, message } = outcome {
                    tracing::warn!(idempotency_key = %entry.idempotency_key, %code, "event entry refused");
                    if is_transient_entry_error(&code) {
                        retry.push((entry, code, message));
                    } else {
                        permanent.push(FailedEntry {
                            idempotency_key: entry.idempotency_key,
                            code,
                            message,
                        });
                    }
                }
            }
            if retry.is_empty() {
                return Ok(permanent);
            }
            match delays.next() {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    pending = retry.into_iter().map(|(entry, _, _)| entry).collect();
                }
                None => {
                    permanent.extend(retry.into_iter().map(|(entry, code, message)| FailedEntry {
                        idempotency_key: entry.idempotency_key,
                        code,
                        message,
                    }));
                    return Ok(permanent);
                }
            }
        }
    }
}

/// An in-memory sink for handler tests: keeps what was published.
#[derive(Debug, Default)]
pub struct MemorySink {
    published: std::sync::Mutex<Vec<OutgoingEntry>>,
}

impl MemorySink {
    /// Every entry accepted so far.
    pub fn published(&self) -> Vec<OutgoingEntry> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The accepted entries read back as events.
    pub fn events(&self) -> Vec<Event> {
        self.published()
            .into_iter()
            .filter_map(|entry| {
                let detail = serde_json::from_str(&entry.detail).ok()?;
                Event::from_parts(&entry.source, &entry.detail_type, detail).ok()
            })
            .collect()
    }
}

impl EventSink for MemorySink {
    async fn put_events(&self, entries: &[OutgoingEntry]) -> Result<Vec<EntryOutcome>, PublishError> {
        let mut published = self.published.lock().map_err(|_| PublishError::Call {
            message: "memory sink poisoned".into(),
            retryable: false,
        })?;
        let start = published.len();
        published.extend(entries.iter().cloned());
        Ok((start..published.len())
            .map(|i| EntryOutcome::Accepted(format!("memory-{i}")))
            .collect())
    }
}
