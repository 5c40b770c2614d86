//! Leases, the commit under a lease, and the retry queue.

use super::runs::run_status_name;
use super::*;

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
        // The run ends here: off the unfinished ones in the same write.
        let unfinished = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(super::runs::UNFINISHED_RUNS))
            .key("sk", s(&commit.run_id))
            .build()
            .map_err(build_error)?;
        items.push(TransactWriteItem::builder().delete(unfinished).build());
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
