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
        let mut new_events = Vec::new();
        for event in &batch.events {
            match known.get(&event.dedupe_key) {
                None => new_events.push(event),
                Some(known) => {
                    recorded.duplicates += 1;
                    if !matches!(known.state, EventState::Applied { .. }) {
                        to_apply.push(event.dedupe_key.clone());
                    }
                }
            }
        }
        // Written only if still absent: a delivery recorded at the same moment (CM redelivers a
        // refused delivery unchanged) must not put an event applied meanwhile back to received.
        let written = self.put_absent_events(&new_events).await?;
        recorded.new = written.len();
        recorded.duplicates += new_events.len() - written.len();
        // Those recorded meanwhile by the other delivery are handed on too: applying an event
        // applied already changes nothing.
        to_apply.extend(new_events.iter().map(|e| e.dedupe_key.clone()));
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

/// Keys of one `BatchGetItem` at most (DynamoDB's limit).
const BATCH_GET_LIMIT: usize = 100;

/// Items one `TransactWriteItems` takes at most (DynamoDB's limit).
const TRANSACTION_LIMIT: usize = 100;

impl DynamoStore {
    /// Puts each event unless an item with its key exists: a transaction of up to 100
    /// conditional puts, or, when one of them meets an existing item (a concurrent delivery),
    /// one conditional put each for that chunk. The events written.
    async fn put_absent_events<'a>(
        &self,
        events: &[&'a WebhookEventRecord],
    ) -> Result<Vec<&'a WebhookEventRecord>, StoreError> {
        let put = |event: &WebhookEventRecord| -> Result<Put, StoreError> {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(webhook_event_item(event)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)
        };
        let mut written = Vec::with_capacity(events.len());
        for chunk in events.chunks(TRANSACTION_LIMIT) {
            let mut transaction = self.client.transact_write_items();
            for event in chunk {
                transaction = transaction.transact_items(TransactWriteItem::builder().put(put(event)?).build());
            }
            match transaction.send().await {
                Ok(_) => written.extend_from_slice(chunk),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_transaction_canceled_exception()) =>
                {
                    for event in chunk {
                        let single = self
                            .client
                            .put_item()
                            .table_name(&self.table)
                            .set_item(Some(webhook_event_item(event)?))
                            .condition_expression("attribute_not_exists(pk)")
                            .send()
                            .await;
                        match single {
                            Ok(_) => written.push(*event),
                            Err(error) if is_condition_failure(&error) => {} // recorded meanwhile
                            Err(error) => return Err(backend("PutItem", error)),
                        }
                    }
                }
                Err(error) => return Err(backend("TransactWriteItems", error)),
            }
        }
        Ok(written)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;

    /// Issue #32 item 9: two deliveries of one new event recorded at once both find it unknown;
    /// the consumer applies it after the first one's write. The second write must not put it
    /// back to received (with its address) to be handed on again: it is conditional.
    #[tokio::test]
    async fn an_event_recorded_meanwhile_is_not_put_back() {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "run through `make test` (moto)"
        );
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = Client::new(&config);
        let table = format!("state-{}", uuid::Uuid::new_v4().simple());
        DynamoStore::create_table(&client, &table).await.unwrap();
        let store = DynamoStore::new(client, table);
        let now = Utc::now();
        let received = WebhookEventRecord {
            dedupe_key: "k1".into(),
            list_id: "l1".into(),
            payload: serde_json::json!({"EmailAddress": "ann@example.com"}),
            received_at: now,
            expires_at: now + ChronoDuration::days(30),
            state: EventState::Received,
        };
        // The first delivery's write, then the consumer's.
        assert_eq!(store.put_absent_events(&[&received]).await.unwrap().len(), 1);
        let applied = WebhookEventRecord {
            payload: serde_json::Value::Null,
            state: EventState::Applied {
                outcome: "opted out".into(),
            },
            ..received.clone()
        };
        store.save_webhook_events(std::slice::from_ref(&applied)).await.unwrap();
        // The second delivery's write, decided on its read from before both.
        let other = WebhookEventRecord {
            dedupe_key: "k2".into(),
            ..received.clone()
        };
        let written = store.put_absent_events(&[&received, &other]).await.unwrap();
        assert_eq!(written.len(), 1, "only the event no one recorded is written");
        assert_eq!(written[0].dedupe_key, "k2");
        let stored = store.webhook_event("k1").await.unwrap().unwrap();
        assert_eq!(stored.state, applied.state, "still applied");
        assert_eq!(stored.payload, serde_json::Value::Null, "its address not put back");
    }
}
