//! Webhook events and their pending batches.

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
        // Which events are known, in one read per 50 (a redelivery writes nothing); then the new
        // ones written 25 a request. A plain write is safe because an event's item holds only
        // what CM sent: its outcome is an item of its own that only the consumer writes, so
        // overlapping deliveries that both see an event unknown write the same item twice and
        // never put an event the consumer applied meanwhile back to Received. (A conditional
        // put per event would guard the same race at one request per event: a 1,000-event
        // delivery must be recorded well within CM's wait.)
        let keys: Vec<String> = batch.events.iter().map(|e| e.dedupe_key.clone()).collect();
        let known = self.known_events(&keys).await?;
        let mut recorded = BatchRecorded::default();
        let mut to_apply = Vec::new();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for event in &batch.events {
            match known.get(&event.dedupe_key) {
                None if seen.insert(event.dedupe_key.as_str()) => fresh.push(event),
                None => recorded.duplicates += 1,
                Some(applied) => {
                    recorded.duplicates += 1;
                    if !applied {
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
        recorded.new = fresh.len();
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
        for event in fresh {
            writes.push(put_request(event_item(event)?)?);
        }
        self.batch_write(writes).await?;
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
        let mut writes = Vec::with_capacity(2 * events.len());
        for event in events {
            writes.push(put_request(event_item(event)?)?);
            writes.push(put_request(outcome_item(event))?);
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
        Ok(self.webhook_events(&[dedupe_key.to_owned()]).await?.pop())
    }
}

/// The partition of pending webhook batches (sort key: the batch, which starts with its time).
const PENDING_BATCHES: &str = "WEBHOOK_PENDING";
/// Batches waiting for an admin (an event tried `MAX_WEBHOOK_ATTEMPTS` times).
const PARKED_BATCHES: &str = "WEBHOOK_PARKED";

/// Keys of one `BatchGetItem` at most (DynamoDB's limit).
const BATCH_GET_LIMIT: usize = 100;

/// `BatchGetItem` requests one read of events has in flight at once.
const BATCH_GETS_IN_FLIGHT: usize = 4;

/// The sort key of an event's item: what CM sent, written by the intake.
const EVENT: &str = "EVENT";
/// The sort key of an event's outcome: its state and attempts, written by the consumer only.
const OUTCOME: &str = "OUTCOME";

fn event_key(dedupe_key: &str, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("WEBHOOK#{dedupe_key}"))),
        ("sk".to_owned(), s(sk)),
    ])
}

fn put_request(item: Item) -> Result<WriteRequest, StoreError> {
    Ok(WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_error)?,
        )
        .build())
}

impl DynamoStore {
    /// Recorded events by key (those not found are left out).
    async fn webhook_events(&self, keys: &[String]) -> Result<Vec<WebhookEventRecord>, StoreError> {
        let (events, outcomes) = self.event_items(keys, false).await?;
        let mut found = Vec::with_capacity(events.len());
        for (key, item) in events {
            found.push(webhook_event_from(&key, &item, outcomes.get(&key))?);
        }
        Ok(found)
    }

    /// Which of the events are recorded, and whether each is applied: their keys and states
    /// only (a redelivery of 1,000 events reads no payloads).
    async fn known_events(&self, keys: &[String]) -> Result<HashMap<String, bool>, StoreError> {
        let (events, outcomes) = self.event_items(keys, true).await?;
        let mut known = HashMap::with_capacity(events.len());
        for (key, item) in events {
            let (state, _) = stored_state(&item, outcomes.get(&key))?;
            known.insert(key, matches!(state, EventState::Applied { .. }));
        }
        Ok(known)
    }

    /// The items of the events and of their outcomes, by dedupe key (whole, or their keys and
    /// state only): 50 events a request, a few requests in flight.
    async fn event_items(
        &self,
        keys: &[String],
        state_only: bool,
    ) -> Result<(HashMap<String, Item>, HashMap<String, Item>), StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        let reads: Vec<_> = unique
            .chunks(BATCH_GET_LIMIT / 2)
            .map(|chunk| {
                let wanted = chunk
                    .iter()
                    .flat_map(|key| [EVENT, OUTCOME].map(|sk| event_key(key, sk)))
                    .collect();
                self.batch_get(wanted, state_only)
            })
            .collect();
        let pages: Vec<Vec<Item>> = futures::stream::iter(reads)
            .buffer_unordered(BATCH_GETS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut events = HashMap::new();
        let mut outcomes = HashMap::new();
        for item in pages.into_iter().flatten() {
            let reader = Reader::new(&item);
            let pk = reader.string("pk")?;
            let key = pk.strip_prefix("WEBHOOK#").unwrap_or(&pk).to_owned();
            match reader.string("sk")?.as_str() {
                OUTCOME => outcomes.insert(key, item),
                _ => events.insert(key, item),
            };
        }
        Ok((events, outcomes))
    }

    /// The items of up to [`BATCH_GET_LIMIT`] keys that exist, read consistently (whole, or
    /// their keys and `state` only).
    async fn batch_get(&self, keys: Vec<Item>, state_only: bool) -> Result<Vec<Item>, StoreError> {
        let mut request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true);
        if state_only {
            // `state` is a reserved word of DynamoDB's expressions.
            request = request
                .projection_expression("pk, sk, #state")
                .expression_attribute_names("#state", "state");
        }
        let mut request = request.build().map_err(build_error)?;
        let mut found = Vec::new();
        let mut delays = unprocessed_backoff();
        loop {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| backend("BatchGetItem", e))?;
            found.extend(
                output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            let Some(unprocessed) = output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) else {
                return Ok(found);
            };
            if unprocessed.keys().is_empty() {
                return Ok(found);
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

/// An event's item: what CM sent, the same for every delivery of it.
fn event_item(event: &WebhookEventRecord) -> Result<Item, StoreError> {
    let mut item = event_key(&event.dedupe_key, EVENT);
    item.extend([
        ("list_id".to_owned(), s(&event.list_id)),
        ("payload".to_owned(), s(to_json(&event.payload)?)),
        ("received_at".to_owned(), s(rfc3339(event.received_at))),
        ("expires_at".to_owned(), n(event.expires_at.timestamp())),
    ]);
    if let Some(person) = &event.person {
        item.insert("person".to_owned(), s(person));
    }
    Ok(item)
}

/// An event's outcome: its state and the consumer's attempts, expiring with the event.
fn outcome_item(event: &WebhookEventRecord) -> Item {
    let (state, reason) = event_state_attributes(&event.state);
    let mut item = event_key(&event.dedupe_key, OUTCOME);
    item.extend([
        ("state".to_owned(), s(state)),
        ("reason".to_owned(), s(reason)),
        ("attempts".to_owned(), n(event.attempts)),
        ("expires_at".to_owned(), n(event.expires_at.timestamp())),
    ]);
    item
}

/// An event's state and attempts, from its outcome's item (none yet: received, not tried).
fn stored_state(item: &Item, outcome: Option<&Item>) -> Result<(EventState, u32), StoreError> {
    // Events recorded before outcomes had items of their own hold their state in theirs.
    let Some(outcome) = outcome.or_else(|| item.contains_key("state").then_some(item)) else {
        return Ok((EventState::Received, 0));
    };
    let reader = Reader::new(outcome);
    let reason = reader.opt_string("reason").unwrap_or_default();
    let state = match reader.string("state")?.as_str() {
        "received" => EventState::Received,
        "applied" => EventState::Applied { outcome: reason },
        "failed" => EventState::Failed { reason },
        other => return Err(reader.corrupt(format!("unknown state `{other}`"))),
    };
    // Absent on events recorded before attempts were counted (and from a read of states only).
    let attempts = match outcome.contains_key("attempts") {
        true => u32::try_from(reader.number("attempts")?).unwrap_or(u32::MAX),
        false => 0,
    };
    Ok((state, attempts))
}

/// An event from its item and its outcome's.
fn webhook_event_from(dedupe_key: &str, item: &Item, outcome: Option<&Item>) -> Result<WebhookEventRecord, StoreError> {
    let reader = Reader::new(item);
    let (state, attempts) = stored_state(item, outcome)?;
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
        attempts,
    })
}
