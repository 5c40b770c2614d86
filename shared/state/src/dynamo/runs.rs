//! Run records and their failures.

use super::*;

pub(super) fn run_status_name(status: RunStatus) -> String {
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
        // Indexed as unfinished first: a crash after it leaves a marker the check clears, a
        // crash before it leaves no run.
        if matches!(run.status, RunStatus::Running | RunStatus::Continued) {
            self.mark_unfinished(&run.run_id, run.expires_at).await?;
        }
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
        self.mark_unfinished(run_id, None).await?;
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
        // Sort keys stay unique across calls: the call's time in nanoseconds, then the chunk.
        let batch = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let mut requests = Vec::new();
        for (index, chunk) in packed_failures(failures, FAILURES_ITEM_BYTES)?.into_iter().enumerate() {
            let mut put = PutRequest::builder()
                .item("pk", s(format!("RUN#{run_id}")))
                .item("sk", s(format!("FAILURES#{batch:020}#{index:06}")))
                .item("failures", s(chunk));
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

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut unfinished = Vec::new();
        for marker in self.query_partition(UNFINISHED_RUNS, false, None).await? {
            let run_id = Reader::new(&marker).string("sk")?;
            let run = match self.get("RUNS", &run_id).await? {
                Some(item) => Some(run_from(&item)?),
                None => None,
            };
            match run {
                Some(run) if matches!(run.status, RunStatus::Running | RunStatus::Continued) => unfinished.push(run),
                // Finished (its marker outlived a crash) or expired: the marker goes.
                _ => self.clear_unfinished(&run_id).await?,
            }
        }
        Ok(unfinished)
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
        let mut failures = Vec::new();
        for item in self.query_partition(&format!("RUN#{run_id}"), false, None).await? {
            let reader = Reader::new(&item);
            if reader.opt_string("failures").is_some() {
                failures.extend(reader.json::<Vec<RunFailure>>("failures")?);
            } else {
                // One failure an item, as runs recorded before failures were packed.
                failures.push(RunFailure {
                    record: reader.string("record")?,
                    person: reader.opt_string("person"),
                    reason: reader.string("reason")?,
                    code: reader.opt_string("code"),
                });
            }
        }
        Ok(Some((run, failures)))
    }
}

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
            Ok(_) => {}
            Err(error) if is_condition_failure(&error) => return Err(no_such_run(run_id)),
            Err(error) => return Err(backend("UpdateItem", error)),
        }
        if status != RunStatus::Continued {
            self.clear_unfinished(run_id).await?;
        }
        Ok(())
    }

    /// Lists a run among the unfinished ones (expiring with the run when its expiry is known).
    async fn mark_unfinished(&self, run_id: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(UNFINISHED_RUNS))
            .item("sk", s(run_id));
        if let Some(expires) = expires_at {
            put = put.item("expires_at", n(expires.timestamp()));
        }
        put.send().await.map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    /// Takes a run off the unfinished ones.
    async fn clear_unfinished(&self, run_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(UNFINISHED_RUNS))
            .key("sk", s(run_id))
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(())
    }
}

/// The partition listing unfinished runs (sort key: the run id), so finding them never
/// depends on how many runs came after.
pub(super) const UNFINISHED_RUNS: &str = "RUNS_UNFINISHED";

/// The most JSON one run-failure item holds: well under DynamoDB's 400 KB an item, so a
/// `BatchWriteItem` of 25 stays under its 16 MB.
const FAILURES_ITEM_BYTES: usize = 300_000;

/// The longest reason kept of a failure that would not fit an item on its own.
const REASON_CHARS_KEPT: usize = 2_000;

/// Failures as JSON arrays of at most `max_bytes` each, in order: a run's thousands of
/// unmatched recipients are a few items (a few write units a kilobyte) instead of one item, and
/// one write unit at least, each.
fn packed_failures(failures: &[RunFailure], max_bytes: usize) -> Result<Vec<String>, StoreError> {
    let mut chunks = Vec::new();
    let mut chunk = String::from("[");
    for failure in failures {
        let mut json = to_json(failure)?;
        if json.len() + 2 > max_bytes {
            let mut cut = failure.clone();
            cut.reason = cut.reason.chars().take(REASON_CHARS_KEPT).collect();
            json = to_json(&cut)?;
        }
        if chunk.len() > 1 && chunk.len() + json.len() + 2 > max_bytes {
            chunk.push(']');
            chunks.push(std::mem::replace(&mut chunk, String::from("[")));
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&json);
    }
    if chunk.len() > 1 {
        chunk.push(']');
        chunks.push(chunk);
    }
    Ok(chunks)
}
