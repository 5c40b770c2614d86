//! Writes: sObject Collections (200 records a call) and Bulk API 2.0 ingest, with per-record
//! results in the caller's order. Records failing with a transient code (`UNABLE_TO_LOCK_ROW`)
//! are retried with backoff; every other per-record failure is reported, never stops the rest.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

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
                    code: "NOT_PROCESSED".into(),
                    message: "no result".into(),
                    fields: vec![],
                })),
            })
            .collect())
    }

    /// sObject Collections, in chunks of 200; one outcome per record, in order.
    async fn collections(
        &self,
        object: &str,
        operation: &Operation,
        records: &[Map<String, Value>],
        options: &WriteOptions,
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_LIMIT) {
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
        }
        Ok(outcomes)
    }

    /// One Bulk API 2.0 ingest job: create, upload CSV, close, poll, read results; outcomes in
    /// the caller's order (results are matched back by their row content, since Salesforce does
    /// not keep row order).
    async fn bulk_ingest(
        &self,
        object: &str,
        operation: &Operation,
        records: &[Map<String, Value>],
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let mut columns: Vec<String> = Vec::new();
        for record in records {
            for key in record.keys() {
                if key != "attributes" && !columns.iter().any(|c| c.eq_ignore_ascii_case(key)) {
                    columns.push(key.clone());
                }
            }
        }
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|record| {
                columns
                    .iter()
                    .map(|column| {
                        match record
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(column))
                            .map(|(_, v)| v)
                        {
                            None => String::new(),
                            Some(Value::Null) => "#N/A".to_owned(),
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        }
                    })
                    .collect()
            })
            .collect();
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let csv_error = |e: &dyn std::fmt::Display| SfError::Config(format!("cannot write CSV: {e}"));
        writer.write_record(&columns).map_err(|e| csv_error(&e))?;
        for row in &rows {
            writer.write_record(row).map_err(|e| csv_error(&e))?;
        }
        let data = String::from_utf8(writer.into_inner().map_err(|e| csv_error(&e))?).map_err(|e| csv_error(&e))?;

        let (operation_name, external) = match operation {
            Operation::Create => ("insert", None),
            Operation::Update => ("update", None),
            Operation::Upsert { external_id_field } => ("upsert", Some(external_id_field.clone())),
        };
        let mut job = json!({"object": object, "operation": operation_name, "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"});
        if let Some(field) = external {
            job["externalIdFieldName"] = json!(field);
        }
        let created = self
            .json(CallKind::Bulk, Method::POST, "jobs/ingest", &[], Some(&job))
            .await?;
        let job_id = created["id"]
            .as_str()
            .ok_or_else(|| SfError::Decode("bulk job without id".into()))?
            .to_owned();
        self.request(
            CallKind::Bulk,
            Method::PUT,
            &format!("jobs/ingest/{job_id}/batches"),
            &[],
            crate::Body::Csv(data),
        )
        .await?;
        self.json(
            CallKind::Bulk,
            Method::PATCH,
            &format!("jobs/ingest/{job_id}"),
            &[],
            Some(&json!({"state": "UploadComplete"})),
        )
        .await?;

        let mut wait = self.config.bulk_poll_interval;
        let give_up_at = tokio::time::Instant::now() + self.config.bulk_poll_limit;
        let info = loop {
            let info = self
                .json(CallKind::Bulk, Method::GET, &format!("jobs/ingest/{job_id}"), &[], None)
                .await?;
            match info["state"].as_str().unwrap_or_default() {
                "JobComplete" => break info,
                state @ ("Failed" | "Aborted") => {
                    return Err(SfError::Bulk {
                        job_id,
                        state: state.to_owned(),
                        message: info["errorMessage"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                state if tokio::time::Instant::now() + wait > give_up_at => {
                    // Stop it, so it writes no more behind our back.
                    let aborted = self
                        .json(
                            CallKind::Bulk,
                            Method::PATCH,
                            &format!("jobs/ingest/{job_id}"),
                            &[],
                            Some(&json!({"state": "Aborted"})),
                        )
                        .await;
                    if let Err(error) = aborted {
                        tracing::warn!(job = %job_id, %error, "could not abort a bulk job past its time limit");
                    }
                    return Err(SfError::Bulk {
                        job_id,
                        state: state.to_owned(),
                        message: format!(
                            "still {state} after {}s; aborted",
                            self.config.bulk_poll_limit.as_secs()
                        ),
                    });
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        };
        tracing::debug!(job = %job_id, processed = %info["numberRecordsProcessed"], failed = %info["numberRecordsFailed"], "bulk job complete");

        // Salesforce promises the result columns (`sf__Id`, `sf__Created` or `sf__Error`, and
        // the uploaded fields), not their order nor the rows' order: each file is read by its
        // header, and each row matched back to the caller's by its key: the `Id` of an update,
        // the external id of an upsert, every uploaded field of an insert.
        let key_column = match operation {
            Operation::Update => columns.iter().position(|c| c.eq_ignore_ascii_case("Id")),
            Operation::Upsert { external_id_field } => {
                columns.iter().position(|c| c.eq_ignore_ascii_case(external_id_field))
            }
            Operation::Create => None,
        };
        let key_columns: Vec<usize> = key_column.map_or_else(|| (0..columns.len()).collect(), |i| vec![i]);
        let key_of = |values: &[String]| -> Vec<String> {
            key_columns
                .iter()
                .map(|&i| values.get(i).map_or(String::new(), |v| result_value(v)))
                .collect()
        };
        let mut by_key: HashMap<Vec<String>, VecDeque<usize>> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            by_key.entry(key_of(row)).or_default().push_back(index);
        }
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        // The job's counts say which result files can hold rows: none failed, no failedResults
        // call; every row processed, no unprocessedrecords call (each is an API call). Counts
        // missing from the job info: every file is read.
        let count = |field: &str| info[field].as_u64();
        let files = ["successfulResults", "failedResults", "unprocessedrecords"]
            .into_iter()
            .filter(|kind| match *kind {
                "failedResults" => count("numberRecordsFailed") != Some(0),
                "unprocessedrecords" => count("numberRecordsProcessed") != Some(records.len() as u64),
                _ => true,
            });
        for kind in files {
            let (_, text) = self
                .request(
                    CallKind::Bulk,
                    Method::GET,
                    &format!("jobs/ingest/{job_id}/{kind}"),
                    &[],
                    crate::Body::None,
                )
                .await?;
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| SfError::Decode(format!("bulk {kind}: {e}")))?
                .iter()
                .map(str::to_owned)
                .collect();
            let position = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
            let uploaded: Vec<Option<usize>> = columns.iter().map(|c| position(c)).collect();
            let (id_at, created_at, error_at) = (position("sf__Id"), position("sf__Created"), position("sf__Error"));
            for row in reader.records() {
                let row = row.map_err(|e| SfError::Decode(format!("bulk {kind}: {e}")))?;
                let cell = |at: Option<usize>| at.and_then(|i| row.get(i)).unwrap_or_default().to_owned();
                let values: Vec<String> = uploaded.iter().map(|&at| cell(at)).collect();
                let Some(index) = by_key.get_mut(&key_of(&values)).and_then(VecDeque::pop_front) else {
                    tracing::warn!(job = %job_id, kind, "a bulk result row matches no uploaded row");
                    continue;
                };
                outcomes[index] = Some(match kind {
                    "successfulResults" if cell(created_at).eq_ignore_ascii_case("true") => {
                        RecordOutcome::Created(cell(id_at))
                    }
                    "successfulResults" => RecordOutcome::Updated(cell(id_at)),
                    "failedResults" => RecordOutcome::Failed(parse_bulk_error(&cell(error_at))),
                    _ => RecordOutcome::Failed(RecordError {
                        code: "NOT_PROCESSED".into(),
                        message: "unprocessed by the bulk job".into(),
                        fields: vec![],
                    }),
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(RecordOutcome::Failed(RecordError {
                    code: "NOT_PROCESSED".into(),
                    message: "missing from the job results".into(),
                    fields: vec![],
                }))
            })
            .collect())
    }
}

/// A value as a result file shows it: the `#N/A` that blanks a field on upload reads back empty.
fn result_value(value: &str) -> String {
    if value == "#N/A" {
        String::new()
    } else {
        value.to_owned()
    }
}

/// `sf__Error` as Salesforce writes it: `CODE:message:fields --`, where the message may itself
/// hold colons (`REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --`).
fn parse_bulk_error(text: &str) -> RecordError {
    let text = text.trim().trim_end_matches("--").trim_end();
    let (code, rest) = text.split_once(':').unwrap_or((text, ""));
    let (message, fields) = match rest.rsplit_once(':') {
        Some((message, fields)) if !fields.contains(' ') || fields.trim().is_empty() => (message, fields),
        _ => (rest, ""),
    };
    RecordError {
        code: code.trim().to_owned(),
        message: message.trim().to_owned(),
        fields: fields
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_errors_are_read_as_salesforce_writes_them() {
        let error = parse_bulk_error("REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --");
        assert_eq!(error.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(error.message, "Required fields are missing: [LastName]");
        assert_eq!(error.fields, ["LastName"]);
        let error = parse_bulk_error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--");
        assert_eq!(error.code, "UNABLE_TO_LOCK_ROW");
        assert_eq!(error.message, "unable to obtain exclusive access to this record");
        assert!(error.fields.is_empty());
        let error = parse_bulk_error("INVALID_EMAIL_ADDRESS:Email: invalid email address: x:Email,Status --");
        assert_eq!(error.message, "Email: invalid email address: x");
        assert_eq!(error.fields, ["Email", "Status"]);
        let error = parse_bulk_error("FIELD_CUSTOM_VALIDATION_EXCEPTION:No");
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "No")
        );
    }
}
