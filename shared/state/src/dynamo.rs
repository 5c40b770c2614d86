//! The DynamoDB implementation of the store traits (see the crate docs for the key schema).
//!
//! The SDK retries throttling and 5xx answers itself; what reaches us is classified into
//! [`StoreError::Backend`] with `retryable` set, and conditional-check failures become the
//! domain outcomes (version conflict, duplicate, not advanced, lease held).

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

use crate::memory::{link_conflict, no_such_run};
use crate::{
    BatchRecorded, CampaignProgress, EventState, FAILED_RECORD_TTL_DAYS, FailedRecord, Lease, LeaseStore, LinkOutcome,
    LinkRecord, LinkStore, PendingBatch, RetryQueue, RunCheckpoint, RunCommit, RunFailure, RunRecord, RunStart,
    RunStatus, RunStore, SettingsStore, StoreError, VersionedSettings, WatermarkStore, WebhookBatchRecord,
    WebhookEventRecord, WebhookEventStore,
};

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
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
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
        for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
            let mut pending = chunk.to_vec();
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
                    break;
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
        Ok(())
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Milliseconds are what the table keeps; both stores truncate the same way.
pub(crate) fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at.timestamp_millis()).single().unwrap_or(at)
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

impl SettingsStore for DynamoStore {
    async fn load_settings(&self) -> Result<Option<VersionedSettings>, StoreError> {
        let Some(item) = self.get("SETTINGS", "CURRENT").await? else {
            return Ok(None);
        };
        let reader = Reader::new(&item);
        let doc = reader.string("doc")?;
        let settings = Settings::from_json(&doc).map_err(|e| reader.corrupt(e.to_string()))?;
        Ok(Some(VersionedSettings {
            settings,
            version: u64::try_from(reader.number("version")?).map_err(|e| reader.corrupt(e.to_string()))?,
            updated_at: reader.time("updated_at")?,
        }))
    }

    async fn save_settings(
        &self,
        settings: &Settings,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let version = expected_version.unwrap_or(0) + 1;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("SETTINGS"))
            .item("sk", s("CURRENT"))
            .item("doc", s(settings.to_json()))
            .item("version", n(version))
            .item("updated_at", s(rfc3339(now)));
        request = match expected_version {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected)),
        };
        match request.send().await {
            Ok(_) => Ok(version),
            Err(error) if is_condition_failure(&error) => {
                let found = self.load_settings().await.ok().flatten().map(|s| s.version);
                Err(StoreError::VersionConflict {
                    expected: expected_version,
                    found,
                })
            }
            Err(error) => Err(backend("PutItem", error)),
        }
    }
}

fn origin_name(origin: LinkOrigin) -> String {
    serde_json::to_value(origin)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn link_from(item: &Item) -> Result<LinkRecord, StoreError> {
    let reader = Reader::new(item);
    let origin = reader.string("origin")?;
    Ok(LinkRecord {
        cm_campaign_id: reader.string("sk")?,
        sf_campaign_id: reader.string("sf_campaign_id")?,
        origin: serde_json::from_value(serde_json::Value::String(origin.clone()))
            .map_err(|_| reader.corrupt(format!("unknown origin `{origin}`")))?,
        linked_at: reader.time("linked_at")?,
    })
}

impl LinkStore for DynamoStore {
    async fn put_link(&self, link: &LinkRecord) -> Result<LinkOutcome, StoreError> {
        let forward = Put::builder()
            .table_name(&self.table)
            .item("pk", s("LINKS"))
            .item("sk", s(&link.cm_campaign_id))
            .item("sf_campaign_id", s(&link.sf_campaign_id))
            .item("origin", s(origin_name(link.origin)))
            .item("linked_at", s(rfc3339(link.linked_at)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let reverse = Put::builder()
            .table_name(&self.table)
            .item("pk", s("SFLINKS"))
            .item("sk", s(&link.sf_campaign_id))
            .item("cm_campaign_id", s(&link.cm_campaign_id))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(forward).build())
            .transact_items(TransactWriteItem::builder().put(reverse).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(LinkOutcome::Created),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                let by_cm = self.link(&link.cm_campaign_id).await?.map(|l| l.sf_campaign_id);
                let by_sf = self.cm_campaign_for(&link.sf_campaign_id).await?;
                if by_cm.as_deref() == Some(link.sf_campaign_id.as_str())
                    && by_sf.as_deref() == Some(link.cm_campaign_id.as_str())
                {
                    Ok(LinkOutcome::AlreadyLinked)
                } else if by_cm.is_none() && by_sf.is_none() {
                    // Cancelled for another reason (a concurrent transaction): let the caller retry.
                    Err(backend("TransactWriteItems", error))
                } else {
                    Err(link_conflict(link, by_cm, by_sf))
                }
            }
            Err(error) => Err(backend("TransactWriteItems", error)),
        }
    }

    async fn link(&self, cm_campaign_id: &str) -> Result<Option<LinkRecord>, StoreError> {
        self.get("LINKS", cm_campaign_id)
            .await?
            .as_ref()
            .map(link_from)
            .transpose()
    }

    async fn cm_campaign_for(&self, sf_campaign_id: &str) -> Result<Option<String>, StoreError> {
        self.get("SFLINKS", sf_campaign_id)
            .await?
            .map(|item| Reader::new(&item).string("cm_campaign_id"))
            .transpose()
    }

    async fn links(&self) -> Result<Vec<LinkRecord>, StoreError> {
        self.query_partition("LINKS", false, None)
            .await?
            .iter()
            .map(link_from)
            .collect()
    }

    async fn delete_link(&self, cm_campaign_id: &str) -> Result<(), StoreError> {
        let Some(link) = self.link(cm_campaign_id).await? else {
            return Ok(());
        };
        let delete = |pk: &str, sk: &str| {
            Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .build()
                .map_err(build_error)
        };
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .delete(delete("LINKS", cm_campaign_id)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .delete(delete("SFLINKS", &link.sf_campaign_id)?)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend("TransactWriteItems", e))?;
        Ok(())
    }
}

impl WatermarkStore for DynamoStore {
    async fn campaign_progress(&self, cm_campaign_id: &str) -> Result<CampaignProgress, StoreError> {
        let key = format!("PROGRESS#{cm_campaign_id}");
        let Some(item) = self.get(&key, "PROGRESS").await? else {
            return Ok(CampaignProgress::default());
        };
        let doc = Reader::new(&item).string("doc")?;
        serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt {
            key,
            reason: e.to_string(),
        })
    }

    async fn watermark(&self, scope: &str, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.get(&format!("WATERMARK#{scope}"), stream)
            .await?
            .map(|item| Reader::new(&item).millis("at_ms"))
            .transpose()
    }

    async fn watermarks(&self, scope: &str) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        self.query_partition(&format!("WATERMARK#{scope}"), false, None)
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                Ok((reader.string("sk")?, reader.millis("at_ms")?))
            })
            .collect()
    }

    async fn advance_watermark(&self, scope: &str, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("WATERMARK#{scope}")))
            .item("sk", s(stream))
            .item("at_ms", n(to.timestamp_millis()))
            .item("updated_at", s(rfc3339(Utc::now())))
            .condition_expression("attribute_not_exists(pk) OR at_ms < :to")
            .expression_attribute_values(":to", n(to.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(backend("PutItem", error)),
        }
    }

    async fn sync_schedule(&self) -> Result<BTreeMap<String, mapping::cadence::NextSync>, StoreError> {
        self.query_partition("SCHEDULE", false, None)
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                let key = reader.string("sk")?;
                let next = serde_json::from_str(&reader.string("doc")?).map_err(|e| StoreError::Corrupt {
                    key: format!("SCHEDULE/{key}"),
                    reason: e.to_string(),
                })?;
                Ok((key, next))
            })
            .collect()
    }

    async fn reset_watermarks(&self, scope: &str) -> Result<usize, StoreError> {
        let pk = format!("WATERMARK#{scope}");
        let mut requests = Vec::new();
        for item in self.query_partition(&pk, false, None).await? {
            let delete = DeleteRequest::builder()
                .key("pk", s(&pk))
                .key("sk", s(Reader::new(&item).string("sk")?))
                .build()
                .map_err(build_error)?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let count = requests.len();
        // What the last sync saw goes with the watermarks: the next sync reads and writes afresh.
        let progress = DeleteRequest::builder()
            .key("pk", s(format!("PROGRESS#{scope}")))
            .key("sk", s("PROGRESS"))
            .build()
            .map_err(build_error)?;
        requests.push(WriteRequest::builder().delete_request(progress).build());
        let schedule = DeleteRequest::builder()
            .key("pk", s("SCHEDULE"))
            .key("sk", s(scope))
            .build()
            .map_err(build_error)?;
        requests.push(WriteRequest::builder().delete_request(schedule).build());
        self.batch_write(requests).await?;
        Ok(count)
    }
}

fn event_state_attributes(state: &EventState) -> (String, String) {
    match state {
        EventState::Received => ("received".into(), String::new()),
        EventState::Applied { outcome } => ("applied".into(), outcome.clone()),
        EventState::Failed { reason } => ("failed".into(), reason.clone()),
    }
}

impl WebhookEventStore for DynamoStore {
    async fn record_webhook_batch(&self, batch: &WebhookBatchRecord) -> Result<BatchRecorded, StoreError> {
        // Which events are known, in one read per 100; then the new ones in writes of 25, and the
        // batch: a 1,000-event delivery costs about 50 requests, not 1,000.
        let keys: Vec<String> = batch.events.iter().map(|e| e.dedupe_key.clone()).collect();
        let known: HashMap<String, WebhookEventRecord> = self
            .webhook_events(&keys)
            .await?
            .into_iter()
            .map(|e| (e.dedupe_key.clone(), e))
            .collect();
        let mut recorded = BatchRecorded::default();
        let mut to_apply = Vec::new();
        let mut writes = Vec::new();
        for event in &batch.events {
            match known.get(&event.dedupe_key) {
                None => {
                    recorded.new += 1;
                    to_apply.push(event.dedupe_key.clone());
                    writes.push(
                        WriteRequest::builder()
                            .put_request(
                                PutRequest::builder()
                                    .set_item(Some(webhook_event_item(event)?))
                                    .build()
                                    .map_err(build_error)?,
                            )
                            .build(),
                    );
                }
                Some(known) => {
                    recorded.duplicates += 1;
                    if !matches!(known.state, EventState::Applied { .. }) {
                        to_apply.push(event.dedupe_key.clone());
                    }
                }
            }
        }
        self.batch_write(writes).await?;
        recorded.to_apply = to_apply.len();
        recorded.pending = !to_apply.is_empty() || !batch.refused.is_empty();
        if recorded.pending {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(PENDING_BATCHES))
                .item("sk", s(&batch.batch))
                .item("list_id", s(&batch.list_id))
                .item("received_at", s(rfc3339(batch.received_at)))
                .item("expires_at", n(batch.expires_at.timestamp()))
                .item("keys", s(to_json(&to_apply)?));
            if !batch.refused.is_empty() {
                put = put.item("refused", s(to_json(&batch.refused)?));
            }
            put.send().await.map_err(|e| backend("PutItem", e))?;
        }
        Ok(recorded)
    }

    async fn pending_webhook_batch(&self, batch: &str) -> Result<Option<PendingBatch>, StoreError> {
        match self.get(PENDING_BATCHES, batch).await? {
            Some(item) => Ok(Some(self.pending_batch(&item).await?)),
            None => Ok(None),
        }
    }

    async fn pending_webhook_batches(&self, limit: usize) -> Result<Vec<PendingBatch>, StoreError> {
        let mut batches = Vec::new();
        for item in self.query_partition(PENDING_BATCHES, false, Some(limit)).await? {
            batches.push(self.pending_batch(&item).await?);
        }
        Ok(batches)
    }

    async fn save_webhook_events(&self, events: &[WebhookEventRecord]) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(events.len());
        for event in events {
            writes.push(
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(webhook_event_item(event)?))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build(),
            );
        }
        self.batch_write(writes).await
    }

    async fn finish_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(PENDING_BATCHES))
            .key("sk", s(batch))
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(())
    }

    async fn webhook_event(&self, dedupe_key: &str) -> Result<Option<WebhookEventRecord>, StoreError> {
        let Some(item) = self.get(&format!("WEBHOOK#{dedupe_key}"), "EVENT").await? else {
            return Ok(None);
        };
        webhook_event_from(dedupe_key, &item).map(Some)
    }
}

/// The partition of pending webhook batches (sort key: the batch, which starts with its time).
const PENDING_BATCHES: &str = "WEBHOOK_PENDING";

/// How items or keys a batch call left unprocessed are retried (DynamoDB asks for backoff).
fn unprocessed_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(25))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter()
        .build()
}

/// Keys of one `BatchGetItem` at most (DynamoDB's limit).
const BATCH_GET_LIMIT: usize = 100;

impl DynamoStore {
    /// Ends an invocation's part in a run: its status and counts (and, for a hand-over, what
    /// the continuation needs).
    async fn close_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        status: RunStatus,
        counts: &BTreeMap<String, u64>,
        checkpoint: Option<&RunCheckpoint>,
    ) -> Result<(), StoreError> {
        let mut update = "SET ended_at = :ended, #status = :status, counts = :counts".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("RUNS"))
            .key("sk", s(run_id))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":ended", s(rfc3339(at)))
            .expression_attribute_values(":status", s(run_status_name(status)))
            .expression_attribute_values(":counts", s(to_json(counts)?));
        match checkpoint {
            Some(checkpoint) => {
                update += ", checkpoint = :checkpoint";
                request = request.expression_attribute_values(":checkpoint", s(to_json(checkpoint)?));
            }
            // A run that ended has nothing to hand over: a later retry starts afresh.
            None => update += " REMOVE checkpoint",
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Err(no_such_run(run_id)),
            Err(error) => Err(backend("UpdateItem", error)),
        }
    }

    /// Recorded events by key (those not found are left out), 100 keys a request, unprocessed
    /// keys retried with backoff.
    async fn webhook_events(&self, keys: &[String]) -> Result<Vec<WebhookEventRecord>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(BATCH_GET_LIMIT) {
            let mut wanted = Vec::with_capacity(chunk.len());
            for key in chunk {
                wanted.push(HashMap::from([
                    ("pk".to_owned(), s(format!("WEBHOOK#{key}"))),
                    ("sk".to_owned(), s("EVENT")),
                ]));
            }
            let mut request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(wanted))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let mut delays = unprocessed_backoff();
            loop {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| backend("BatchGetItem", e))?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let key = Reader::new(&item).string("pk")?;
                    let key = key.strip_prefix("WEBHOOK#").unwrap_or(&key).to_owned();
                    found.push(webhook_event_from(&key, &item)?);
                }
                let Some(unprocessed) = output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) else {
                    break;
                };
                if unprocessed.keys().is_empty() {
                    break;
                }
                match delays.next() {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        request = unprocessed;
                    }
                    None => {
                        return Err(StoreError::Backend {
                            operation: "BatchGetItem",
                            message: format!("{} keys still unprocessed after retries", unprocessed.keys().len()),
                            retryable: true,
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    /// A pending batch item with its events as they stand, in the batch's order.
    async fn pending_batch(&self, item: &Item) -> Result<PendingBatch, StoreError> {
        let reader = Reader::new(item);
        let keys: Vec<String> = reader.json("keys")?;
        let mut by_key: HashMap<String, WebhookEventRecord> = self
            .webhook_events(&keys)
            .await?
            .into_iter()
            .map(|e| (e.dedupe_key.clone(), e))
            .collect();
        Ok(PendingBatch {
            batch: reader.string("sk")?,
            list_id: reader.string("list_id")?,
            received_at: reader.time("received_at")?,
            events: keys.iter().filter_map(|k| by_key.remove(k)).collect(),
            refused: match reader.opt_string("refused") {
                Some(_) => reader.json("refused")?,
                None => Vec::new(),
            },
        })
    }
}

fn webhook_event_item(event: &WebhookEventRecord) -> Result<Item, StoreError> {
    let (state, reason) = event_state_attributes(&event.state);
    Ok(HashMap::from([
        ("pk".to_owned(), s(format!("WEBHOOK#{}", event.dedupe_key))),
        ("sk".to_owned(), s("EVENT")),
        ("list_id".to_owned(), s(&event.list_id)),
        ("payload".to_owned(), s(to_json(&event.payload)?)),
        ("received_at".to_owned(), s(rfc3339(event.received_at))),
        ("expires_at".to_owned(), n(event.expires_at.timestamp())),
        ("state".to_owned(), s(state)),
        ("reason".to_owned(), s(reason)),
    ]))
}

fn webhook_event_from(dedupe_key: &str, item: &Item) -> Result<WebhookEventRecord, StoreError> {
    let reader = Reader::new(item);
    let reason = reader.opt_string("reason").unwrap_or_default();
    let state = match reader.string("state")?.as_str() {
        "received" => EventState::Received,
        "applied" => EventState::Applied { outcome: reason },
        "failed" => EventState::Failed { reason },
        other => return Err(reader.corrupt(format!("unknown state `{other}`"))),
    };
    let expires = reader.number("expires_at")?;
    Ok(WebhookEventRecord {
        dedupe_key: dedupe_key.to_owned(),
        list_id: reader.string("list_id")?,
        payload: reader.json("payload")?,
        received_at: reader.time("received_at")?,
        expires_at: Utc
            .timestamp_opt(expires, 0)
            .single()
            .ok_or_else(|| reader.corrupt("bad expires_at".into()))?,
        state,
    })
}

fn run_status_name(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn run_from(item: &Item) -> Result<RunRecord, StoreError> {
    let reader = Reader::new(item);
    let status = reader.string("status")?;
    Ok(RunRecord {
        run_id: reader.string("sk")?,
        scope: reader.string("scope")?,
        started_at: reader.time("started_at")?,
        ended_at: reader
            .opt_string("ended_at")
            .map(|_| reader.time("ended_at"))
            .transpose()?,
        status: serde_json::from_value(serde_json::Value::String(status.clone()))
            .map_err(|_| reader.corrupt(format!("unknown status `{status}`")))?,
        counts: reader.json("counts")?,
        failure_count: u64::try_from(reader.number("failure_count")?).unwrap_or(0),
        resumed_at: reader
            .opt_string("resumed_at")
            .map(|_| reader.time("resumed_at"))
            .transpose()?,
        expires_at: match item.get("expires_at") {
            Some(_) => Some(
                Utc.timestamp_opt(reader.number("expires_at")?, 0)
                    .single()
                    .ok_or_else(|| reader.corrupt("`expires_at` is out of range".into()))?,
            ),
            None => None,
        },
    })
}

impl RunStore for DynamoStore {
    async fn start_run(&self, run: &RunRecord) -> Result<RunStart, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("RUNS"))
            .item("sk", s(&run.run_id))
            .item("scope", s(&run.scope))
            .item("started_at", s(rfc3339(run.started_at)))
            .item("status", s(run_status_name(run.status)))
            .item("counts", s(to_json(&run.counts)?))
            .item("failure_count", n(run.failure_count))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(ended) = run.ended_at {
            request = request.item("ended_at", s(rfc3339(ended)));
        }
        if let Some(expires) = run.expires_at {
            request = request.item("expires_at", n(expires.timestamp()));
        }
        match request.send().await {
            Ok(_) => Ok(RunStart::New),
            Err(error) if is_condition_failure(&error) => Ok(RunStart::Continued),
            Err(error) => Err(backend("PutItem", error)),
        }
    }

    async fn finish_run(
        &self,
        run_id: &str,
        ended_at: DateTime<Utc>,
        status: RunStatus,
        counts: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        self.close_run(run_id, ended_at, status, counts, None).await
    }

    async fn hand_over_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        checkpoint: &RunCheckpoint,
    ) -> Result<(), StoreError> {
        self.close_run(run_id, at, RunStatus::Continued, &checkpoint.counts, Some(checkpoint))
            .await
    }

    async fn resume_run(&self, run_id: &str, at: DateTime<Utc>) -> Result<Option<RunCheckpoint>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("RUNS"))
            .key("sk", s(run_id))
            .update_expression("SET #status = :status, resumed_at = :at REMOVE ended_at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", s(rfc3339(at)))
            .expression_attribute_values(":status", s(run_status_name(RunStatus::Running)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                let reader = Reader::new(&item);
                match reader.opt_string("checkpoint") {
                    Some(_) => Ok(Some(reader.json("checkpoint")?)),
                    None => Ok(None),
                }
            }
            Err(error) if is_condition_failure(&error) => Err(no_such_run(run_id)),
            Err(error) => Err(backend("UpdateItem", error)),
        }
    }

    async fn add_run_failures(&self, run_id: &str, failures: &[RunFailure]) -> Result<(), StoreError> {
        if failures.is_empty() {
            return Ok(());
        }
        // Counted first, which also reads the run's expiry: its failures expire with it.
        let run = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("RUNS"))
            .key("sk", s(run_id))
            .update_expression("ADD failure_count :n")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":n", n(failures.len()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        let expires_at = run.attributes.as_ref().and_then(|item| item.get("expires_at")).cloned();
        // Sort keys stay unique across calls: the call's time in nanoseconds, then the index.
        let batch = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let mut requests = Vec::with_capacity(failures.len());
        for (index, failure) in failures.iter().enumerate() {
            let mut put = PutRequest::builder()
                .item("pk", s(format!("RUN#{run_id}")))
                .item("sk", s(format!("FAILURE#{batch:020}#{index:06}")))
                .item("record", s(&failure.record))
                .item("reason", s(&failure.reason));
            if let Some(code) = &failure.code {
                put = put.item("code", s(code));
            }
            if let Some(person) = &failure.person {
                put = put.item("person", s(person));
            }
            if let Some(expires) = &expires_at {
                put = put.item("expires_at", expires.clone());
            }
            requests.push(
                WriteRequest::builder()
                    .put_request(put.build().map_err(build_error)?)
                    .build(),
            );
        }
        self.batch_write(requests).await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.query_partition("RUNS", true, Some(limit))
            .await?
            .iter()
            .map(run_from)
            .collect()
    }

    async fn run(&self, run_id: &str) -> Result<Option<(RunRecord, Vec<RunFailure>)>, StoreError> {
        let Some(item) = self.get("RUNS", run_id).await? else {
            return Ok(None);
        };
        let run = run_from(&item)?;
        let failures = self
            .query_partition(&format!("RUN#{run_id}"), false, None)
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                Ok(RunFailure {
                    record: reader.string("record")?,
                    person: reader.opt_string("person"),
                    reason: reader.string("reason")?,
                    code: reader.opt_string("code"),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((run, failures)))
    }
}

impl LeaseStore for DynamoStore {
    async fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let until = truncate_to_millis(until);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("LEASE#{scope}")))
            .item("sk", s("LEASE"))
            .item("owner", s(owner))
            .item("lease_until_ms", n(until.timestamp_millis()))
            // TTL only cleans up; expiry is decided by `lease_until_ms` (TTL deletion is lazy).
            .item("expires_at", n((until + ChronoDuration::days(1)).timestamp()))
            .condition_expression("attribute_not_exists(pk) OR lease_until_ms < :now OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(Lease {
                scope: scope.to_owned(),
                owner: owner.to_owned(),
                until,
            })),
            Err(error) if is_condition_failure(&error) => Ok(None),
            Err(error) => Err(backend("PutItem", error)),
        }
    }

    async fn release_lease(&self, scope: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{scope}")))
            .key("sk", s("LEASE"))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(backend("DeleteItem", error)),
        }
    }

    async fn commit_under_lease(&self, lease: &Lease, commit: &RunCommit) -> Result<bool, StoreError> {
        let now = commit.ended_at;
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{}", lease.scope)))
            .key("sk", s("LEASE"))
            .condition_expression("#owner = :owner AND lease_until_ms >= :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .build()
            .map_err(build_error)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build());
        for item in self.commit_items(commit)? {
            request = request.transact_items(item);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                // The lease check is the first item: its failure means the lease was lost.
                let lease_lost = match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                        cancelled.cancellation_reasons().first().and_then(|r| r.code())
                            == Some("ConditionalCheckFailed")
                    }
                    _ => false,
                };
                if lease_lost {
                    Ok(false)
                } else {
                    Err(backend("TransactWriteItems", error))
                }
            }
            Err(error) => Err(backend("TransactWriteItems", error)),
        }
    }
}

impl DynamoStore {
    /// The writes of a run commit, after the lease check.
    fn commit_items(&self, commit: &RunCommit) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::new();
        for (stream, at) in &commit.watermarks {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("WATERMARK#{}", commit.scope)))
                .item("sk", s(stream))
                .item("at_ms", n(at.timestamp_millis()))
                .item("updated_at", s(rfc3339(commit.ended_at)))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let run = Update::builder()
            .table_name(&self.table)
            .key("pk", s("RUNS"))
            .key("sk", s(&commit.run_id))
            .update_expression("SET ended_at = :ended, #status = :status, counts = :counts REMOVE checkpoint")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":ended", s(rfc3339(commit.ended_at)))
            .expression_attribute_values(":status", s(run_status_name(commit.status)))
            .expression_attribute_values(":counts", s(to_json(&commit.counts)?))
            .build()
            .map_err(build_error)?;
        items.push(TransactWriteItem::builder().update(run).build());
        if let Some(progress) = &commit.progress {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("PROGRESS#{}", commit.scope)))
                .item("sk", s("PROGRESS"))
                .item("doc", s(to_json(progress)?))
                .item("updated_at", s(rfc3339(commit.ended_at)))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let Some(next) = &commit.next_sync {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s("SCHEDULE"))
                .item("sk", s(&commit.scope))
                .item("doc", s(to_json(next)?))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }
}

impl RetryQueue for DynamoStore {
    async fn enqueue_failed(&self, records: &[FailedRecord]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(records.len());
        for record in records {
            let put = PutRequest::builder()
                .item("pk", s(format!("RETRY#{}", record.scope)))
                .item("sk", s(&record.key))
                .item("payload", s(to_json(&record.payload)?))
                .item("reason", s(&record.reason))
                .item("attempts", n(record.attempts))
                .item("first_failed_at", s(rfc3339(record.first_failed_at)))
                .item(
                    "expires_at",
                    n((record.first_failed_at + ChronoDuration::days(FAILED_RECORD_TTL_DAYS)).timestamp()),
                )
                .build()
                .map_err(build_error)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(requests).await
    }

    async fn failed_records(&self, scope: &str, limit: usize) -> Result<Vec<FailedRecord>, StoreError> {
        self.query_partition(&format!("RETRY#{scope}"), false, Some(limit))
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                Ok(FailedRecord {
                    scope: scope.to_owned(),
                    key: reader.string("sk")?,
                    payload: reader.json("payload")?,
                    reason: reader.string("reason")?,
                    attempts: u32::try_from(reader.number("attempts")?).unwrap_or(u32::MAX),
                    first_failed_at: reader.time("first_failed_at")?,
                })
            })
            .collect()
    }

    async fn remove_failed(&self, scope: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let delete = DeleteRequest::builder()
                .key("pk", s(format!("RETRY#{scope}")))
                .key("sk", s(key))
                .build()
                .map_err(build_error)?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.batch_write(requests).await
    }
}
