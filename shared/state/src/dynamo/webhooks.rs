//! Webhook events and their pending batches.

use futures::StreamExt;

use super::*;

fn event_state_attributes(state: &EventState) -> (String, String) {
    match state {
        EventState::Received => ("received".into(), String::new()),
        EventState::Applied { outcome } => ("applied".into(), outcome.clone()),
        EventState::Failed { reason } => ("failed".into(), reason.clone()),
    }
}

impl WebhookEventStore for DynamoStore {
    async fn record_webhook_batch(&self, batch: &WebhookBatchRecord) -> Result<BatchRecorded, StoreError> {
        // Which events are known, in one read per 100 (a redelivery writes nothing); then each
        // new one written only if still absent: two overlapping deliveries of a new event both
        // see it unknown, and a plain write by the later one would put an event the consumer
        // applied meanwhile back to Received and hand it on again. The writes go out in
        // parallel (a 1,000-event delivery must be recorded within CM's wait).
        let keys: Vec<String> = batch.events.iter().map(|e| e.dedupe_key.clone()).collect();
        let known: HashMap<String, WebhookEventRecord> = self
            .webhook_events(&keys)
            .await?
            .into_iter()
            .map(|e| (e.dedupe_key.clone(), e))
            .collect();
        let mut recorded = BatchRecorded::default();
        let mut to_apply = Vec::new();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for event in &batch.events {
            match known.get(&event.dedupe_key) {
                None if seen.insert(event.dedupe_key.as_str()) => fresh.push(event),
                None => recorded.duplicates += 1,
                Some(known) => {
                    recorded.duplicates += 1;
                    if !matches!(known.state, EventState::Applied { .. }) {
                        to_apply.push(event.dedupe_key.clone());
                    }
                }
            }
        }
        // The batch first, then its new events: a call cut off half-way (an error, a timeout)
        // leaves a pending batch the sweep hands on, never events no batch lists. A key whose
        // event was not written yet is skipped by the consumer (and CM delivers again: 5xx).
        to_apply.extend(fresh.iter().map(|e| e.dedupe_key.clone()));
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
        let mut writes = Vec::with_capacity(fresh.len());
        for event in fresh.iter().copied() {
            writes.push(self.put_new_event(event));
        }
        let written: Vec<Result<bool, StoreError>> = futures::stream::iter(writes)
            .buffer_unordered(NEW_EVENT_WRITES_IN_FLIGHT)
            .collect()
            .await;
        for outcome in written {
            if outcome? {
                recorded.new += 1;
            } else {
                // Recorded meanwhile by an overlapping delivery: handed on again all the same
                // (the consumer skips it once applied), since its own hand-off may be lost.
                recorded.duplicates += 1;
            }
        }
        Ok(recorded)
    }

    async fn pending_webhook_batch(&self, batch: &str) -> Result<Option<PendingBatch>, StoreError> {
        match self.get(PENDING_BATCHES, batch).await? {
            Some(item) => Ok(Some(self.pending_batch(&item).await?)),
            None => Ok(None),
        }
    }

    async fn pending_webhook_batches(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PendingBatch>, StoreError> {
        let mut batches = Vec::new();
        for item in self.query_partition_after(PENDING_BATCHES, after, Some(limit)).await? {
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

    async fn park_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        self.move_batch(PENDING_BATCHES, PARKED_BATCHES, batch).await
    }

    async fn parked_webhook_batches(&self, limit: usize) -> Result<Vec<PendingBatch>, StoreError> {
        let mut batches = Vec::new();
        for item in self.query_partition(PARKED_BATCHES, false, Some(limit)).await? {
            batches.push(self.pending_batch(&item).await?);
        }
        Ok(batches)
    }

    async fn webhook_backlog(&self, limit: usize) -> Result<Vec<WebhookBacklogEntry>, StoreError> {
        let mut backlog = Vec::new();
        for (partition, parked) in [(PENDING_BATCHES, false), (PARKED_BATCHES, true)] {
            for item in self.query_partition(partition, false, Some(limit)).await? {
                let reader = Reader::new(&item);
                let keys: Vec<String> = reader.json("keys")?;
                backlog.push(WebhookBacklogEntry {
                    batch: reader.string("sk")?,
                    list_id: reader.string("list_id")?,
                    received_at: reader.time("received_at")?,
                    events: keys.len(),
                    parked,
                });
            }
        }
        backlog.sort_by(|a, b| a.batch.cmp(&b.batch));
        Ok(backlog)
    }

    async fn unpark_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        self.move_batch(PARKED_BATCHES, PENDING_BATCHES, batch).await
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
/// Batches waiting for an admin (an event tried `MAX_WEBHOOK_ATTEMPTS` times).
const PARKED_BATCHES: &str = "WEBHOOK_PARKED";

/// New events written at once by one delivery.
const NEW_EVENT_WRITES_IN_FLIGHT: usize = 32;

/// Keys of one `BatchGetItem` at most (DynamoDB's limit).
const BATCH_GET_LIMIT: usize = 100;

impl DynamoStore {
    /// Writes an event only if its key is not recorded yet: `false` when it was.
    async fn put_new_event(&self, event: &WebhookEventRecord) -> Result<bool, StoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(webhook_event_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(backend("PutItem", e)),
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
    /// A batch item moved between the pending and parked partitions in one transaction (the
    /// new item put, the old one deleted only if still there): never in both, never lost.
    async fn move_batch(&self, from: &str, to: &str, batch: &str) -> Result<(), StoreError> {
        let Some(mut item) = self.get(from, batch).await? else {
            return Ok(());
        };
        item.insert("pk".to_owned(), s(to));
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_error)?;
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key("pk", s(from))
            .key("sk", s(batch))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .send()
            .await
            .map_err(|e| backend("TransactWriteItems", e))?;
        Ok(())
    }

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
    let mut item = HashMap::from([
        ("pk".to_owned(), s(format!("WEBHOOK#{}", event.dedupe_key))),
        ("sk".to_owned(), s("EVENT")),
        ("list_id".to_owned(), s(&event.list_id)),
        ("payload".to_owned(), s(to_json(&event.payload)?)),
        ("received_at".to_owned(), s(rfc3339(event.received_at))),
        ("expires_at".to_owned(), n(event.expires_at.timestamp())),
        ("state".to_owned(), s(state)),
        ("reason".to_owned(), s(reason)),
        ("attempts".to_owned(), n(event.attempts)),
    ]);
    if let Some(person) = &event.person {
        item.insert("person".to_owned(), s(person));
    }
    Ok(item)
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
        person: reader.opt_string("person"),
        received_at: reader.time("received_at")?,
        expires_at: Utc
            .timestamp_opt(expires, 0)
            .single()
            .ok_or_else(|| reader.corrupt("bad expires_at".into()))?,
        state,
        // Absent on events recorded before attempts were counted: none made yet.
        attempts: if item.contains_key("attempts") {
            u32::try_from(reader.number("attempts")?).unwrap_or(u32::MAX)
        } else {
            0
        },
    })
}
