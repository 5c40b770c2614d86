//! Writes: sObject Collections (200 records a call) and Bulk API 2.0 ingest, with per-record
//! results in the caller's order. Records failing with a transient code (`UNABLE_TO_LOCK_ROW`)
//! are retried with backoff; every other per-record failure is reported, never stops the rest.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::{CallKind, SfClient, SfError, is_transient_code};

/// Collections take at most this many records a call.
pub const COLLECTION_LIMIT: usize = 200;

/// A write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Insert new records.
    Create,
    /// Update by `Id`.
    Update,
    /// Insert or update, matched on an external id field.
    Upsert {
        /// The external id field.
        external_id_field: String,
    },
}

/// Which path a write takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Path {
    /// By size: Bulk API 2.0 from the threshold up.
    #[default]
    Auto,
    /// Always sObject Collections.
    Collections,
    /// Always Bulk API 2.0.
    Bulk,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Roll every record back if one fails (collections only).
    pub all_or_none: bool,
    /// A `DUPLICATE_VALUE` on create means "already there" (idempotent member insert).
    pub duplicate_is_success: bool,
    /// The path.
    pub path: Path,
}

/// Why one record failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// `statusCode` (collections) or the code in `sf__Error` (bulk).
    pub code: String,
    /// Message.
    pub message: String,
    /// Fields concerned.
    pub fields: Vec<String>,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Created, with its new Id.
    Created(String),
    /// Updated (or upserted onto an existing record).
    Updated(String),
    /// `DUPLICATE_VALUE` on create with `duplicate_is_success`: it exists already.
    AlreadyExists,
    /// Failed for good (or still transient after the retries).
    Failed(RecordError),
}

impl RecordOutcome {
    /// Whether the record is in Salesforce as asked.
    pub fn is_success(&self) -> bool {
        !matches!(self, RecordOutcome::Failed(_))
    }
}

/// The outcome of the record at `index` of the caller's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    /// Index in the caller's records.
    pub index: usize,
    /// Outcome.
    pub outcome: RecordOutcome,
}

impl SfClient {
    /// Writes records of one object: collections below the bulk threshold, Bulk API 2.0 from
    /// it up (or as `options.path` says). Results come back in the caller's order.
    pub async fn write(
        &self,
        object: &str,
        operation: &Operation,
        records: &[Map<String, Value>],
        options: &WriteOptions,
    ) -> Result<Vec<RecordResult>, SfError> {
        self.check_allocation()?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.stop_unstopped_jobs().await?;
        let bulk = match options.path {
            Path::Auto => records.len() >= self.config.bulk_threshold && !options.all_or_none,
            Path::Collections => false,
            Path::Bulk => true,
        };
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut delays = self.config.retry.delays();
        loop {
            let subset: Vec<Map<String, Value>> = pending.iter().map(|&i| records[i].clone()).collect();
            let results = if bulk && subset.len() >= self.config.bulk_threshold.min(records.len()) {
                match self.bulk_ingest(object, operation, &subset).await {
                    // A job Salesforce failed, aborted or left unfinished too long: its rows go
                    // through Collections (what the job did write is written again, which our
                    // updates and duplicate-tolerant creates make harmless).
                    Err(error @ SfError::Bulk { .. }) => {
                        tracing::warn!(%error, records = subset.len(), "bulk job did not complete; writing through Collections");
                        self.collections(object, operation, &subset, options).await?
                    }
                    other => other?,
                }
            } else {
                self.collections(object, operation, &subset, options).await?
            };
            let mut retry = Vec::new();
            for (position, outcome) in results.into_iter().enumerate() {
                let index = pending[position];
                match outcome {
                    RecordOutcome::Failed(error) if is_transient_code(&error.code) => {
                        retry.push(index);
                        outcomes[index] = Some(RecordOutcome::Failed(error));
                    }
                    RecordOutcome::Failed(error)
                        if error.code == "DUPLICATE_VALUE"
                            && options.duplicate_is_success
                            && *operation == Operation::Create =>
                    {
                        outcomes[index] = Some(RecordOutcome::AlreadyExists);
                    }
                    other => outcomes[index] = Some(other),
                }
            }
            if retry.is_empty() {
                break;
            }
            match delays.next() {
                Some(delay) => {
                    tracing::warn!(records = retry.len(), "retrying records refused with a transient error");
                    tokio::time::sleep(delay).await;
                    pending = retry;
                }
                None => break,
            }
        }
        Ok(outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| RecordResult {
                index,
                outcome: outcome.unwrap_or(RecordOutcome::Failed(RecordError {
                    code: crate::NOT_PROCESSED.into(),
                    message: "no result".into(),
                    fields: vec![],
                })),
            })
            .collect())
    }

    /// sObject Collections, in chunks of 200 sent side by side (as many at once as the
    /// client's requests in flight); one outcome per record, in order.
    async fn collections(
        &self,
        object: &str,
        operation: &Operation,
        records: &[Map<String, Value>],
        options: &WriteOptions,
    ) -> Result<Vec<RecordOutcome>, SfError> {
        use futures::{StreamExt, TryStreamExt};
        // Collected first: a lazy `map` held across the awaits makes the future `Send` only
        // for one lifetime, which the console's handlers cannot use.
        let calls: Vec<_> = records
            .chunks(COLLECTION_LIMIT)
            .map(|chunk| self.collection(object, operation, chunk, options))
            .collect();
        let chunks: Vec<Vec<RecordOutcome>> = futures::stream::iter(calls)
            .buffered(self.config.requests_in_flight.max(1))
            .try_collect()
            .await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// One sObject Collections call of at most 200 records.
    async fn collection(
        &self,
        object: &str,
        operation: &Operation,
        chunk: &[Map<String, Value>],
        options: &WriteOptions,
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let mut outcomes = Vec::with_capacity(chunk.len());
        let body_records: Vec<Value> = chunk
            .iter()
            .map(|record| {
                let mut fields = Map::new();
                fields.insert("attributes".into(), json!({"type": object}));
                for (key, value) in record {
                    let key = if key.eq_ignore_ascii_case("id") {
                        "id".to_owned()
                    } else {
                        key.clone()
                    };
                    fields.insert(key, value.clone());
                }
                Value::Object(fields)
            })
            .collect();
        let body = json!({"allOrNone": options.all_or_none, "records": body_records});
        let (method, path) = match operation {
            Operation::Create => (Method::POST, "composite/sobjects".to_owned()),
            Operation::Update => (Method::PATCH, "composite/sobjects".to_owned()),
            Operation::Upsert { external_id_field } => (
                Method::PATCH,
                format!("composite/sobjects/{object}/{external_id_field}"),
            ),
        };
        let value = self.json(CallKind::Write, method, &path, &[], Some(&body)).await?;
        let results = value
            .as_array()
            .ok_or_else(|| SfError::Decode("collections answered no array".into()))?;
        if results.len() != chunk.len() {
            return Err(SfError::Decode(format!(
                "collections answered {} results for {} records",
                results.len(),
                chunk.len()
            )));
        }
        for result in results {
            let id = result["id"].as_str().map(str::to_owned);
            outcomes.push(if result["success"] == true {
                let id = id.unwrap_or_default();
                match (operation, result["created"].as_bool()) {
                    (Operation::Create, _) | (_, Some(true)) => RecordOutcome::Created(id),
                    _ => RecordOutcome::Updated(id),
                }
            } else {
                let error = &result["errors"][0];
                RecordOutcome::Failed(RecordError {
                    code: error["statusCode"].as_str().unwrap_or("UNKNOWN_EXCEPTION").to_owned(),
                    message: error["message"].as_str().unwrap_or_default().to_owned(),
                    fields: error["fields"]
                        .as_array()
                        .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                })
            });
        }
        Ok(outcomes)
    }
}
