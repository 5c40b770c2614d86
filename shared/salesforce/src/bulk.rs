//! Bulk API 2.0 ingest, step by step: the CSV of the records, the job (create, upload,
//! close), the wait for Salesforce to process it (aborted past the time limit), and the result
//! files read back by their header and matched to the caller's records by content, since
//! Salesforce promises neither the columns' nor the rows' order.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::writes::{Operation, RecordError, RecordOutcome};
use crate::{CallKind, SfClient, SfError};

/// The records as a CSV upload: the columns (every field any record has), each record's row,
/// and the file.
struct Upload {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    data: bytes::Bytes,
}

impl Upload {
    fn of(records: &[Map<String, Value>]) -> Result<Upload, SfError> {
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
            .map(|record| columns.iter().map(|column| cell_of(record, column)).collect())
            .collect();
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let csv_error = |e: &dyn std::fmt::Display| SfError::Config(format!("cannot write CSV: {e}"));
        writer.write_record(&columns).map_err(|e| csv_error(&e))?;
        for row in &rows {
            writer.write_record(row).map_err(|e| csv_error(&e))?;
        }
        let data = bytes::Bytes::from(writer.into_inner().map_err(|e| csv_error(&e))?);
        Ok(Upload { columns, rows, data })
    }
}

/// A record's value for a column as the CSV carries it: `#N/A` blanks a field.
fn cell_of(record: &Map<String, Value>, column: &str) -> String {
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
}

/// Matches result rows back to the uploaded records by their key: the `Id` of an update, the
/// external id of an upsert, every uploaded field of an insert. Equal keys are taken in turn.
/// A key is kept as its SHA-256 (the first 16 bytes), not as the row's cells: a job of 50,000
/// inserts would hold every cell twice.
struct RowMatcher {
    key_columns: Vec<usize>,
    by_key: HashMap<[u8; 16], VecDeque<usize>>,
}

impl RowMatcher {
    fn new(operation: &Operation, upload: &Upload) -> RowMatcher {
        let columns = &upload.columns;
        let key_column = match operation {
            Operation::Update => columns.iter().position(|c| c.eq_ignore_ascii_case("Id")),
            Operation::Upsert { external_id_field } => {
                columns.iter().position(|c| c.eq_ignore_ascii_case(external_id_field))
            }
            Operation::Create => None,
        };
        let mut matcher = RowMatcher {
            key_columns: key_column.map_or_else(|| (0..columns.len()).collect(), |i| vec![i]),
            by_key: HashMap::new(),
        };
        for (index, row) in upload.rows.iter().enumerate() {
            let key = matcher.key_of(row);
            matcher.by_key.entry(key).or_default().push_back(index);
        }
        matcher
    }

    fn key_of(&self, values: &[String]) -> [u8; 16] {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for &i in &self.key_columns {
            let value = values.get(i).map_or(String::new(), |v| result_value(v));
            // Length first: ("ab", "c") and ("a", "bc") are different keys.
            digest.update((value.len() as u64).to_be_bytes());
            digest.update(value.as_bytes());
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.finalize()[..16]);
        key
    }

    /// The index of the uploaded record a result row (its uploaded columns' values) stands for.
    fn take(&mut self, values: &[String]) -> Option<usize> {
        let key = self.key_of(values);
        self.by_key.get_mut(&key).and_then(VecDeque::pop_front)
    }
}

impl SfClient {
    /// One Bulk API 2.0 ingest job: create, upload CSV, close, poll, read results; outcomes in
    /// the caller's order (results are matched back by their row content, since Salesforce does
    /// not keep row order).
    pub(crate) async fn bulk_ingest(
        &self,
        object: &str,
        operation: &Operation,
        records: &[Map<String, Value>],
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let upload = Upload::of(records)?;
        let mut matcher = RowMatcher::new(operation, &upload);
        let Upload { columns, data, .. } = upload; // the rows' cells are not needed again
        let job_id = self.bulk_submit(object, operation, data).await?;
        let info = self.bulk_wait(&job_id).await?;
        tracing::debug!(job = %job_id, processed = %info["numberRecordsProcessed"], failed = %info["numberRecordsFailed"], "bulk job complete");
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
            self.bulk_read_results(&job_id, kind, &columns, &mut matcher, &mut outcomes)
                .await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(RecordOutcome::Failed(RecordError {
                    code: crate::NOT_PROCESSED.into(),
                    message: "missing from the job results".into(),
                    fields: vec![],
                }))
            })
            .collect())
    }

    /// Creates the job, uploads the CSV and closes the upload; the job's id.
    async fn bulk_submit(&self, object: &str, operation: &Operation, data: bytes::Bytes) -> Result<String, SfError> {
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
        Ok(job_id)
    }

    /// Polls the job, backing off, until it completes; a job that fails, or is still running
    /// past the time limit (then aborted, so it writes no more behind our back), is an error.
    async fn bulk_wait(&self, job_id: &str) -> Result<Value, SfError> {
        let mut wait = self.config.bulk_poll_interval;
        let give_up_at = tokio::time::Instant::now() + self.config.bulk_poll_limit;
        loop {
            let info = self
                .json(CallKind::Bulk, Method::GET, &format!("jobs/ingest/{job_id}"), &[], None)
                .await?;
            match info["state"].as_str().unwrap_or_default() {
                "JobComplete" => return Ok(info),
                state @ ("Failed" | "Aborted") => {
                    return Err(SfError::Bulk {
                        job_id: job_id.to_owned(),
                        state: state.to_owned(),
                        message: info["errorMessage"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                state if tokio::time::Instant::now() + wait > give_up_at => {
                    if !self.bulk_stop(job_id).await {
                        // Still running: it may write its rows after a later run wrote newer
                        // values. Nothing is written (not even through Collections) until it
                        // is stopped or done; the run fails retryable.
                        self.remember_unstopped(job_id);
                        return Err(bulk_not_stopped(job_id));
                    }
                    return Err(SfError::Bulk {
                        job_id: job_id.to_owned(),
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
        }
    }

    /// Stops a job past its time limit: aborted, or found finished (completed, failed or
    /// aborted). An abort that fails is tried again, with the retry policy's delays, the job's
    /// state read between attempts. `false`: it may still be writing.
    pub(crate) async fn bulk_stop(&self, job_id: &str) -> bool {
        let mut delays = self.config.retry.delays();
        loop {
            let aborted = self
                .json(
                    CallKind::Bulk,
                    Method::PATCH,
                    &format!("jobs/ingest/{job_id}"),
                    &[],
                    Some(&json!({"state": "Aborted"})),
                )
                .await;
            let error = match aborted {
                Ok(_) => return true,
                Err(error) => error,
            };
            if let Ok(info) = self
                .json(CallKind::Bulk, Method::GET, &format!("jobs/ingest/{job_id}"), &[], None)
                .await
                && matches!(info["state"].as_str(), Some("JobComplete" | "Failed" | "Aborted"))
            {
                return true;
            }
            let Some(delay) = delays.next() else {
                tracing::warn!(job = %job_id, %error, "could not stop a bulk job past its time limit");
                return false;
            };
            tokio::time::sleep(delay).await;
        }
    }

    fn remember_unstopped(&self, job_id: &str) {
        if let Ok(mut jobs) = self.unstopped_jobs.lock()
            && !jobs.iter().any(|j| j == job_id)
        {
            jobs.push(job_id.to_owned());
        }
    }

    /// Before any write: the jobs this client could not stop are stopped now, or the write is
    /// refused (retryable), so no newer value is written while an old job may still land.
    pub(crate) async fn stop_unstopped_jobs(&self) -> Result<(), SfError> {
        let jobs = self.unstopped_jobs.lock().map(|j| j.clone()).unwrap_or_default();
        for job_id in jobs {
            if !self.bulk_stop(&job_id).await {
                return Err(bulk_not_stopped(&job_id));
            }
            if let Ok(mut unstopped) = self.unstopped_jobs.lock() {
                unstopped.retain(|j| *j != job_id);
            }
            tracing::info!(job = %job_id, "a bulk job left running earlier is stopped");
        }
        Ok(())
    }

    /// One result file (`successfulResults`, `failedResults` or `unprocessedrecords`), read by
    /// its header, each row's outcome put at the uploaded record it matches.
    async fn bulk_read_results(
        &self,
        job_id: &str,
        kind: &str,
        columns: &[String],
        matcher: &mut RowMatcher,
        outcomes: &mut [Option<RecordOutcome>],
    ) -> Result<(), SfError> {
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
            let Some(index) = matcher.take(&values) else {
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
                    code: crate::NOT_PROCESSED.into(),
                    message: "unprocessed by the bulk job".into(),
                    fields: vec![],
                }),
            });
        }
        Ok(())
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

/// A Bulk job past its time limit that could not be stopped: retryable, and not a job failure
/// (whose rows would be written through Collections at once).
fn bulk_not_stopped(job_id: &str) -> SfError {
    SfError::Unavailable {
        code: format!(
            "BULK_JOB_NOT_STOPPED (job {job_id} may still be writing; nothing more is written until it is stopped)"
        ),
        attempts: 1,
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
