//! Bulk API 2.0 ingest jobs: create, upload CSV, `UploadComplete`, state, results as CSV.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use crate::World;
use crate::sf::http::job_json;
use crate::sf::{BulkJob, Record, SfError};

fn not_found(id: &str) -> SfError {
    SfError {
        code: "NOT_FOUND",
        message: format!("Job {id} not found"),
        fields: vec![],
    }
}

fn json_ok(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// `POST jobs/ingest`.
pub fn create_job(world: &mut World, version: &str, request: &Value) -> Result<Response, SfError> {
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
    let object = text("object").ok_or(SfError {
        code: "INVALIDJOB",
        message: "object is required".into(),
        fields: vec![],
    })?;
    let operation = text("operation").unwrap_or_default();
    if !["insert", "update", "upsert", "delete", "hardDelete"].contains(&operation.as_str()) {
        return Err(SfError {
            code: "INVALIDJOB",
            message: format!("InvalidJob : Invalid operation: {operation}"),
            fields: vec![],
        });
    }
    if !world.sf.schemas.values().any(|s| s.name.eq_ignore_ascii_case(&object)) {
        return Err(SfError {
            code: "INVALIDJOB",
            message: format!("InvalidJob : Invalid object: {object}"),
            fields: vec![],
        });
    }
    let external_id_field = text("externalIdFieldName");
    if operation == "upsert" && external_id_field.is_none() {
        return Err(SfError {
            code: "INVALIDJOB",
            message: "InvalidJob : External ID was blank for upsert".into(),
            fields: vec![],
        });
    }
    let delimiter = match text("columnDelimiter").as_deref() {
        None | Some("COMMA") => b',',
        Some("TAB") => b'\t',
        Some("SEMICOLON") => b';',
        Some("PIPE") => b'|',
        Some("CARET") => b'^',
        Some("BACKQUOTE") => b'`',
        Some(other) => {
            return Err(SfError {
                code: "INVALIDJOB",
                message: format!("Invalid columnDelimiter {other}"),
                fields: vec![],
            });
        }
    };
    let id = format!("750SB{:013}", world.sf.jobs.len() + 1);
    let job = BulkJob {
        id: id.clone(),
        object,
        operation,
        external_id_field,
        state: "Open".into(),
        data: String::new(),
        delimiter,
        created: Utc::now(),
        results: Vec::new(),
        header: Vec::new(),
        in_progress_polls: 0,
        error_message: None,
        counts: (0, 0),
        rows_released: false,
    };
    let body = job_json(&job, version);
    world.sf.jobs.insert(id, job);
    Ok(json_ok(StatusCode::OK, body))
}

/// `PUT jobs/ingest/{id}/batches`.
pub fn upload(world: &mut World, id: &str, body: &[u8]) -> Result<Response, SfError> {
    let job = world.sf.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
    if job.state != "Open" {
        return Err(SfError {
            code: "INVALIDJOBSTATE",
            message: format!("Job {id} is not open for uploads"),
            fields: vec![],
        });
    }
    job.data.push_str(&String::from_utf8_lossy(body));
    Ok(StatusCode::CREATED.into_response())
}

/// `PATCH jobs/ingest/{id}`: `UploadComplete` processes the data; `Aborted` aborts.
pub fn set_state(world: &mut World, version: &str, id: &str, request: &Value) -> Result<Response, SfError> {
    let state = request
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let job = world.sf.jobs.get(id).cloned().ok_or_else(|| not_found(id))?;
    match state.as_str() {
        "UploadComplete" if job.state == "Open" => {
            let processed = process(world, job)?;
            let body = job_json(&processed, version);
            world.sf.jobs.insert(id.to_owned(), processed);
            release_old_rows(world);
            Ok(json_ok(StatusCode::OK, body))
        }
        "Aborted" if world.faults.sf.bulk_abort_failures > 0 => {
            world.faults.sf.bulk_abort_failures -= 1;
            Err(SfError {
                code: "SERVER_UNAVAILABLE",
                message: "Server temporarily unavailable".into(),
                fields: vec![],
            })
        }
        "Aborted" if matches!(job.state.as_str(), "Open" | "UploadComplete" | "InProgress") => {
            let mut job = job;
            job.state = "Aborted".into();
            let body = job_json(&job, version);
            world.sf.jobs.insert(id.to_owned(), job);
            Ok(json_ok(StatusCode::OK, body))
        }
        _ => Err(SfError {
            code: "INVALIDJOBSTATE",
            message: format!("Cannot move job from {} to {state}", job.state),
            fields: vec![],
        }),
    }
}

fn process(world: &mut World, mut job: BulkJob) -> Result<BulkJob, SfError> {
    if let Some(message) = world.faults.sf.bulk_job_failure.clone() {
        job.state = "Failed".into();
        job.error_message = Some(message);
        return Ok(job);
    }
    // Uploads grow the text by doubling: what is kept is what was sent.
    job.data.shrink_to_fit();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(job.delimiter)
        .from_reader(job.data.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| SfError {
            code: "INVALIDJOB",
            message: format!("invalid CSV header: {e}"),
            fields: vec![],
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    job.header = header.clone();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                job.results.push(Err(Box::new(SfError {
                    code: "INVALID_FIELD",
                    message: format!("bad CSV row: {e}"),
                    fields: vec![],
                })));
                continue;
            }
        };
        let pairs: Vec<(String, String)> = header.iter().cloned().zip(row.iter().map(str::to_owned)).collect();
        let mut record = Record::new();
        for (name, value) in &pairs {
            if value.is_empty() {
                continue; // Empty means "leave as is" in Bulk API 2.0; `#N/A` clears.
            }
            let value = if value == "#N/A" {
                Value::Null
            } else {
                Value::String(value.clone())
            };
            record.insert(name.clone(), value);
        }
        let id = pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if world.faults.sf.unknown_status_gets_default {
            let existing = (!id.is_empty()).then_some(id.as_str());
            world.sf.unknown_status_to_default(&job.object, existing, &mut record);
        }
        let locked_id = (!id.is_empty()).then_some(id.as_str());
        let outcome = if let Some(fault) = crate::sf::http::record_fault(world, &job.object, locked_id) {
            Err(fault)
        } else {
            match job.operation.as_str() {
                "insert" => world.sf.create(&job.object, &record).map(|id| (id, true)),
                "update" => {
                    record.retain(|k, _| !k.eq_ignore_ascii_case("Id"));
                    world.sf.update(&job.object, &id, &record).map(|()| (id.clone(), false))
                }
                "upsert" => world
                    .sf
                    .upsert(&job.object, job.external_id_field.as_deref().unwrap_or("Id"), &record),
                _ => world.sf.delete(&job.object, &id).map(|()| (id.clone(), false)),
            }
        };
        job.results.push(
            outcome
                .map(|(id, created)| (id.into_boxed_str(), created))
                .map_err(Box::new),
        );
    }
    // The rows are applied now, but the job may still say `InProgress` for a while: a client
    // that gives up and aborts it finds its rows written all the same, as on a real org where
    // an aborted job keeps what it already processed.
    job.counts = (job.results.len(), job.results.iter().filter(|r| r.is_err()).count());
    job.in_progress_polls = world.faults.sf.bulk_in_progress_polls;
    job.state = if job.in_progress_polls > 0 {
        "InProgress"
    } else {
        "JobComplete"
    }
    .into();
    Ok(job)
}

/// Jobs whose uploaded rows and outcomes the stand-in keeps: the most recent ones. Salesforce
/// keeps a job's results for 7 days; a client reads them right after the job completes, and a
/// million-recipient sync runs dozens of jobs, whose rows held to the end would be hundreds of
/// megabytes here. The results of an older job answer `NOT_FOUND`, as those of a deleted one.
pub const JOBS_WITH_ROWS: usize = 16;

fn release_old_rows(world: &mut World) {
    let processed: Vec<String> = world
        .sf
        .jobs
        .values()
        .filter(|job| job.state != "Open")
        .map(|job| job.id.clone())
        .collect();
    let old = processed.len().saturating_sub(JOBS_WITH_ROWS);
    for id in &processed[..old] {
        if let Some(job) = world.sf.jobs.get_mut(id)
            && !job.rows_released
        {
            job.data = String::new();
            job.results = Vec::new();
            job.rows_released = true;
        }
    }
}

/// `GET jobs/ingest/{id}`.
pub fn job_info(world: &mut World, version: &str, id: &str) -> Result<Response, SfError> {
    let job = world.sf.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
    if job.state == "InProgress" {
        if job.in_progress_polls == 0 {
            job.state = "JobComplete".into();
        } else {
            job.in_progress_polls -= 1;
        }
    }
    Ok(json_ok(StatusCode::OK, job_json(job, version)))
}

/// `DELETE jobs/ingest/{id}`.
pub fn delete_job(world: &mut World, id: &str) -> Result<Response, SfError> {
    world.sf.jobs.remove(id).ok_or_else(|| not_found(id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Results as CSV: `sf__Id`, `sf__Created` (or `sf__Error`, `CODE:message:fields --` as
/// Salesforce writes it), and the uploaded columns. Salesforce documents those columns, not
/// their order nor the rows' ("Get Job Successful Record Results", Bulk API 2.0 Developer
/// Guide), so unless `bulk_results_in_upload_order` is set, the columns come sorted by name and
/// the rows shuffled (seeded): the less convenient of what Salesforce may do.
pub fn results(world: &mut World, id: &str, kind: &str) -> Result<Response, SfError> {
    let in_order = world.faults.sf.bulk_results_in_upload_order;
    let dropped = world.faults.sf.bulk_results_dropped_rows;
    let job = world
        .sf
        .jobs
        .get(id)
        .filter(|job| !job.rows_released)
        .ok_or_else(|| SfError {
            code: "NOT_FOUND",
            message: format!("The results of job {id} are no longer kept"),
            fields: vec![],
        })?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let write = |writer: &mut csv::Writer<Vec<u8>>, row: Vec<String>| {
        writer.write_record(row).map_err(|e| SfError {
            code: "UNKNOWN_EXCEPTION",
            message: e.to_string(),
            fields: vec![],
        })
    };
    // The uploaded rows, in upload order: the outcome of position i is that of row i (a row
    // the CSV reader refused has an outcome too, and no values).
    let uploaded = || {
        csv::ReaderBuilder::new()
            .delimiter(job.delimiter)
            .from_reader(job.data.as_bytes())
            .into_records()
            .map(|row| {
                row.map(|r| r.iter().map(str::to_owned).collect::<Vec<String>>())
                    .unwrap_or_default()
            })
    };
    // The uploaded values of a row after its leading `sf__` cells.
    let row =
        |leading: [String; 2], values: Vec<String>| -> Vec<String> { leading.into_iter().chain(values).collect() };
    let id_column = job.header.iter().position(|h| h.eq_ignore_ascii_case("Id"));
    let (leading, mut rows): (&[&str], Vec<Vec<String>>) = match kind {
        "successfulResults" => (
            &["sf__Id", "sf__Created"],
            uploaded()
                .zip(&job.results)
                .filter_map(|(values, outcome)| {
                    let (id, created) = outcome.as_ref().ok()?;
                    Some(row([id.to_string(), created.to_string()], values))
                })
                .skip(dropped)
                .collect(),
        ),
        "failedResults" => (
            &["sf__Id", "sf__Error"],
            uploaded()
                .zip(&job.results)
                .filter_map(|(values, outcome)| {
                    let error = outcome.as_ref().err()?;
                    let id = id_column.and_then(|i| values.get(i)).cloned().unwrap_or_default();
                    let message = format!("{}:{}:{} --", error.code, error.message, error.fields.join(","));
                    Some(row([id, message], values))
                })
                .collect(),
        ),
        _ if (job.state == "Aborted" || job.state == "Failed") && job.results.is_empty() => (&[], uploaded().collect()),
        _ => (&[], Vec::new()),
    };
    let mut header: Vec<String> = leading
        .iter()
        .map(|h| (*h).to_owned())
        .chain(job.header.iter().cloned())
        .collect();
    if !in_order {
        let mut order: Vec<usize> = (0..header.len()).collect();
        order.sort_by_key(|&i| header[i].to_ascii_lowercase());
        header = order.iter().map(|&i| header[i].clone()).collect();
        for row in &mut rows {
            *row = order.iter().map(|&i| row.get(i).cloned().unwrap_or_default()).collect();
        }
        world.dice.shuffle(&mut rows);
    }
    write(&mut writer, header)?;
    for row in rows {
        write(&mut writer, row)?;
    }
    let bytes = writer.into_inner().map_err(|e| SfError {
        code: "UNKNOWN_EXCEPTION",
        message: e.to_string(),
        fields: vec![],
    })?;
    Ok((StatusCode::OK, [("content-type", "text/csv")], bytes).into_response())
}
