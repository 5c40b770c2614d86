//! The DynamoDB implementation of the store traits (see the crate docs for the key schema).
//!
//! The SDK retries throttling and 5xx answers itself; what reaches us is classified into
//! [`StoreError::Backend`] with `retryable` set, and conditional-check failures become the
//! domain outcomes (version conflict, duplicate, not advanced, lease held).

mod audit;
mod catalog;
mod erasure;
mod leases;
mod requests;
mod runs;
mod settings_links;
mod tokens;
mod watermarks;
mod webhooks;
pub use requests::RequestCounter;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest, KeySchemaElement, KeyType,
    Put, PutRequest, ReturnValue, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
    WriteRequest,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use mapping::Settings;
use mapping::autocreate::LinkOrigin;

use crate::records::{link_conflict, no_such_run, truncate_to_millis};
use crate::{
    AuditEntry, AuditStore, BatchRecorded, CampaignProgress, CatalogRecord, CatalogStore, EventState,
    FAILED_RECORD_TTL_DAYS, FailedRecord, Lease, LeaseStore, LinkOutcome, LinkRecord, LinkStore, PendingBatch,
    PreviewRecord, PreviewStore, RetryQueue, RunCheckpoint, RunCommit, RunFailure, RunRecord, RunStart, RunStatus,
    RunStore, SealedTokens, SettingsStore, StoreError, TokenStore, VersionedSettings, WatermarkStore,
    WebhookBacklogEntry, WebhookBatchRecord, WebhookEventRecord, WebhookEventStore,
};

pub use erasure::{Erasure, FORGOTTEN, PersonNeedles};

type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on items per `BatchWriteItem`.
pub const BATCH_WRITE_LIMIT: usize = 25;

/// The store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with the key schema and TTL of the crate docs. Production tables come
    /// from the infrastructure template; this serves tests and the local demo.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk").map_err(build_error)?)
            .attribute_definitions(attribute("sk").map_err(build_error)?)
            .key_schema(key("pk", KeyType::Hash).map_err(build_error)?)
            .key_schema(key("sk", KeyType::Range).map_err(build_error)?)
            .send()
            .await
            .map_err(|e| backend("CreateTable", e))?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(|e| backend("UpdateTimeToLive", e))?;
        Ok(())
    }

    /// Reads one item.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(output.item)
    }

    /// Every item of a partition, following pages.
    async fn query_partition(&self, pk: &str, descending: bool, limit: Option<usize>) -> Result<Vec<Item>, StoreError> {
        self.query_range(pk, None, descending, limit).await
    }

    /// A partition's items whose `sk` sorts after `after`, in order.
    async fn query_partition_after(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_range(pk, after, false, limit).await
    }

    async fn query_range(
        &self,
        pk: &str,
        after: Option<&str>,
        descending: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk));
            let query = match after {
                Some(after) => query
                    .key_condition_expression("pk = :pk AND sk > :after")
                    .expression_attribute_values(":after", s(after)),
                None => query.key_condition_expression("pk = :pk"),
            };
            let output = query
                .scan_index_forward(!descending)
                .consistent_read(true)
                .set_limit(limit.map(|l| i32::try_from(l.saturating_sub(items.len())).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if limit.is_none_or(|l| items.len() < l) => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// `BatchWriteItem` in chunks of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        use futures::{StreamExt, TryStreamExt};
        // Every caller writes distinct keys, all puts or all deletes: the order of the
        // requests does not matter, and a large run's failures go out side by side.
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(BATCH_WRITE_LIMIT).map(<[_]>::to_vec).collect();
        let writes: Vec<_> = chunks.into_iter().map(|chunk| self.batch_write_chunk(chunk)).collect();
        futures::stream::iter(writes)
            .buffer_unordered(BATCH_WRITES_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// One `BatchWriteItem` of at most [`BATCH_WRITE_LIMIT`] requests, its unprocessed items
    /// sent again with backoff.
    async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut delays = unprocessed_backoff();
        loop {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| backend("BatchWriteItem", e))?;
            let unprocessed = output
                .unprocessed_items
                .and_then(|mut map| map.remove(&self.table))
                .unwrap_or_default();
            if unprocessed.is_empty() {
                return Ok(());
            }
            match delays.next() {
                Some(delay) => {
                    tracing::debug!(count = unprocessed.len(), "retrying unprocessed batch items");
                    tokio::time::sleep(delay).await;
                    pending = unprocessed;
                }
                None => {
                    return Err(StoreError::Backend {
                        operation: "BatchWriteItem",
                        message: format!("{} items still unprocessed after retries", unprocessed.len()),
                        retryable: true,
                    });
                }
            }
        }
    }
}

/// `BatchWriteItem` requests one store has in flight at once.
const BATCH_WRITES_IN_FLIGHT: usize = 4;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend {
        operation: "build request",
        message: error.to_string(),
        retryable: false,
    }
}

fn backend<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || code == "ServiceUnavailable"
                || code == "TransactionConflictException"
        }
        _ => false,
    };
    StoreError::Backend {
        operation,
        message: DisplayErrorContext(&error).to_string(),
        retryable,
    }
}

fn is_condition_failure<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// Reads attributes of one item, naming the item in every error.
struct Reader<'a> {
    item: &'a Item,
    key: String,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        let part = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        Reader {
            item,
            key: format!("{}/{}", part("pk"), part("sk")),
        }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            key: self.key.clone(),
            reason,
        }
    }

    fn string(&self, name: &str) -> Result<String, StoreError> {
        self.item
            .get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| self.corrupt(format!("missing string attribute `{name}`")))
    }

    fn opt_string(&self, name: &str) -> Option<String> {
        self.item.get(name).and_then(|v| v.as_s().ok()).cloned()
    }

    fn number(&self, name: &str) -> Result<i64, StoreError> {
        self.item
            .get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.corrupt(format!("missing number attribute `{name}`")))
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        let text = self.string(name)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.corrupt(format!("`{name}` is not a time: {e}")))
    }

    fn millis(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        let ms = self.number(name)?;
        Utc.timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| self.corrupt(format!("`{name}` is out of range")))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        let text = self.string(name)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format!("`{name}` does not read back: {e}")))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: "(new item)".into(),
        reason: e.to_string(),
    })
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How items or keys a batch call left unprocessed are retried (DynamoDB asks for backoff).
fn unprocessed_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(25))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter()
        .build()
}
