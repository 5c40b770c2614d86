//! The data API: queries (paged, and in Composite requests), sObject rows and Collections,
//! describes, and the fault injection every data call goes through.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::*;
use crate::World;
use crate::sf::{BulkJob, Record, SfError, SfWorld};

/// The per-record fault drawn for one record of `object` (its `Id`, for an update) in a
/// collection or bulk job, if any.
pub(crate) fn record_fault(world: &mut World, object: &str, id: Option<&str>) -> Option<SfError> {
    if id.is_some_and(|id| world.faults.sf.locked_records.iter().any(|locked| locked == id)) {
        return Some(SfError {
            code: "UNABLE_TO_LOCK_ROW",
            message: "unable to obtain exclusive access to this record or 1 records".into(),
            fields: vec![],
        });
    }
    if world
        .faults
        .sf
        .refused_objects
        .iter()
        .any(|o| o.eq_ignore_ascii_case(object))
    {
        return Some(SfError {
            code: "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message: format!("{object} records cannot be saved (validation rule)"),
            fields: vec![],
        });
    }
    if let Some(left) = id
        .and_then(|id| world.lock_streaks.get_mut(id))
        .filter(|left| **left > 0)
    {
        *left -= 1;
        return Some(SfError {
            code: "UNABLE_TO_LOCK_ROW",
            message: "unable to obtain exclusive access to this record or 1 records".into(),
            fields: vec![],
        });
    }
    if world.dice.roll(world.faults.sf.lock_row_rate) {
        if let (Some(id), streak @ 1..) = (id, world.faults.sf.lock_streak_attempts) {
            world.lock_streaks.insert(id.to_owned(), streak);
        }
        return Some(SfError {
            code: "UNABLE_TO_LOCK_ROW",
            message: "unable to obtain exclusive access to this record or 1 records".into(),
            fields: vec![],
        });
    }
    if world.dice.roll(world.faults.sf.validation_error_rate) {
        return Some(SfError {
            code: "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message: "Records of this kind cannot be changed now (validation rule)".into(),
            fields: vec![],
        });
    }
    None
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, SfError> {
    serde_json::from_slice(body).map_err(|e| SfError {
        code: "JSON_PARSER_ERROR",
        message: format!("JSON parse error: {e}"),
        fields: vec![],
    })
}

pub(super) fn data_api(
    world: &mut World,
    method: &Method,
    version: &str,
    rest: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let query_params = url_pairs(uri.query().unwrap_or_default());
    let result: Result<Response, SfError> = (|| match (method.clone(), segments.as_slice()) {
        (Method::POST, ["composite"]) => composite(world, version, body),
        (Method::GET, ["limits"]) => Ok(json_response(
            StatusCode::OK,
            json!({"DailyApiRequests": {"Max": world.sf.org.api_allocation, "Remaining": world.sf.org.api_allocation.saturating_sub(world.sf.api_used)}}),
        )),
        (Method::GET, ["query" | "queryAll"]) if query_params.contains_key("q") => {
            let q = query_params.get("q").and_then(Value::as_str).unwrap_or_default();
            let rows = world.sf.query(q, version)?;
            let batch = headers
                .get("sforce-query-options")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split('=').nth(1))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .map_or(MAX_BATCH, |n| n.clamp(200, MAX_BATCH));
            Ok(query_page(world, version, rows, batch))
        }
        (Method::GET, ["query" | "queryAll", cursor]) => {
            let Some(rows) = world.sf.cursors.remove(*cursor) else {
                return Err(SfError {
                    code: "INVALID_QUERY_LOCATOR",
                    message: "invalid query locator".into(),
                    fields: vec![],
                });
            };
            Ok(query_page(world, version, rows, MAX_BATCH))
        }
        (Method::GET, ["sobjects", object, "describe"]) => {
            Ok(json_response(StatusCode::OK, describe(&world.sf, object)?))
        }
        (Method::POST, ["sobjects", object]) => {
            let fields = as_record(parse_body(body)?)?;
            let id = world.sf.create(object, &fields)?;
            Ok(json_response(
                StatusCode::CREATED,
                json!({"id": id, "success": true, "errors": []}),
            ))
        }
        (Method::GET, ["sobjects", object, id]) => {
            let object_name = world
                .sf
                .schemas
                .values()
                .find(|s| s.name.eq_ignore_ascii_case(object))
                .map(|s| s.name)
                .unwrap_or_default();
            match world.sf.records.get(object_name).and_then(|r| r.get(*id)) {
                Some(record) => {
                    let mut view = world.sf.view(object_name, record);
                    view.insert("attributes", json!({"type": object_name, "url": format!("/services/data/v{version}/sobjects/{object_name}/{id}")}));
                    Ok(json_response(StatusCode::OK, Value::from(view)))
                }
                None => Err(SfError {
                    code: "NOT_FOUND",
                    message: "The requested resource does not exist".into(),
                    fields: vec![],
                }),
            }
        }
        (Method::PATCH, ["sobjects", object, id]) => {
            let fields = as_record(parse_body(body)?)?;
            world.sf.update(object, id, &fields)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::DELETE, ["sobjects", object, id]) => {
            world.sf.delete(object, id)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["composite", "sobjects"]) => collections(world, body, |sf, object, record| {
            sf.create(object, record).map(|id| (id, None))
        }),
        (Method::PATCH, ["composite", "sobjects"]) => collections(world, body, |sf, object, record| {
            let id = record
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("id"))
                .and_then(|(_, v)| v.as_str())
                .unwrap_or_default()
                .to_owned();
            if id.is_empty() {
                return Err(SfError {
                    code: "MISSING_ARGUMENT",
                    message: "Id not specified in an update call".into(),
                    fields: vec![],
                });
            }
            sf.update(object, &id, record).map(|()| (id, None))
        }),
        (Method::PATCH, ["composite", "sobjects", object, key]) => {
            let (object, key) = ((*object).to_owned(), (*key).to_owned());
            collections(world, body, move |sf, record_object, record| {
                if !record_object.eq_ignore_ascii_case(&object) {
                    return Err(SfError {
                        code: "INVALID_TYPE",
                        message: format!("records must all be {object}"),
                        fields: vec![],
                    });
                }
                sf.upsert(&object, &key, record)
                    .map(|(id, created)| (id, Some(created)))
            })
        }
        (Method::DELETE, ["composite", "sobjects"]) => {
            let ids = query_params
                .get("ids")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let results: Vec<Value> = ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|id| {
                    let object = world
                        .sf
                        .schemas
                        .values()
                        .find(|s| id.starts_with(s.prefix))
                        .map(|s| s.name)
                        .unwrap_or("Unknown");
                    match world.sf.delete(object, id) {
                        Ok(()) => json!({"id": id, "success": true, "errors": []}),
                        Err(e) => json!({"id": id, "success": false, "errors": [record_error(&e)]}),
                    }
                })
                .collect();
            Ok(json_response(StatusCode::OK, Value::Array(results)))
        }
        (Method::POST, ["jobs", "ingest"]) => crate::sf::bulk::create_job(world, version, &parse_body(body)?),
        (Method::PUT, ["jobs", "ingest", id, "batches"]) => crate::sf::bulk::upload(world, id, body),
        (Method::PATCH, ["jobs", "ingest", id]) => crate::sf::bulk::set_state(world, version, id, &parse_body(body)?),
        (Method::GET, ["jobs", "ingest", id]) => crate::sf::bulk::job_info(world, version, id),
        (Method::DELETE, ["jobs", "ingest", id]) => crate::sf::bulk::delete_job(world, id),
        (
            Method::GET,
            [
                "jobs",
                "ingest",
                id,
                kind @ ("successfulResults" | "failedResults" | "unprocessedrecords"),
            ],
        ) => crate::sf::bulk::results(world, id, kind),
        _ => Err(SfError {
            code: "NOT_FOUND",
            message: "The requested resource does not exist".into(),
            fields: vec![],
        }),
    })();
    match result {
        Ok(response) => response,
        Err(error) => {
            let status = match error.code {
                "NOT_FOUND" | "ENTITY_IS_DELETED" => StatusCode::NOT_FOUND,
                "SERVER_UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            error_array(status, &error)
        }
    }
}

pub(super) fn as_record(value: Value) -> Result<Record, SfError> {
    match value {
        Value::Object(map) => Ok(Record::from(map)),
        _ => Err(SfError {
            code: "JSON_PARSER_ERROR",
            message: "expected a JSON object".into(),
            fields: vec![],
        }),
    }
}

pub(super) fn query_page(world: &mut World, version: &str, rows: Vec<Value>, batch: usize) -> Response {
    json_response(StatusCode::OK, query_page_json(world, version, rows, batch))
}

/// One page of query results; the rest is kept behind a cursor (`nextRecordsUrl`).
pub(super) fn query_page_json(world: &mut World, version: &str, mut rows: Vec<Value>, batch: usize) -> Value {
    let total = rows.len();
    // "There's no guarantee that the requested batch size is the actual batch size" (REST API
    // Developer Guide, "Query Options Header"): pages may be shorter.
    let batch = if world.faults.sf.short_query_pages {
        world.dice.between(1, batch)
    } else {
        batch
    };
    if rows.len() <= batch {
        return json!({"totalSize": total, "done": true, "records": rows});
    }
    let rest = rows.split_off(batch);
    let cursor = format!("01gSB{}-{batch}", uuid::Uuid::new_v4().simple());
    world.sf.cursors.insert(cursor.clone(), rest);
    json!({"totalSize": total, "done": false, "nextRecordsUrl": format!("/services/data/v{version}/query/{cursor}"), "records": rows})
}

/// Subrequests a composite request may hold, and how many of them may be queries.
pub(super) const COMPOSITE_SUBREQUESTS: usize = 25;

pub(super) const COMPOSITE_QUERIES: usize = 5;

/// `POST composite`: the query subrequests (`GET .../query?q=` and `GET .../query/<cursor>`) the
/// product sends, run in order; the whole request is one API call. The SOQL travels in the body,
/// so the URI limit does not apply to it (the 100,000-character SOQL limit does).
pub(super) fn composite(world: &mut World, version: &str, body: &[u8]) -> Result<Response, SfError> {
    let request = parse_body(body)?;
    let subrequests = request["compositeRequest"].as_array().cloned().unwrap_or_default();
    let invalid = |message: String| SfError {
        code: "INVALID_FIELD",
        message,
        fields: vec![],
    };
    if subrequests.is_empty() || subrequests.len() > COMPOSITE_SUBREQUESTS {
        return Err(invalid(format!(
            "compositeRequest must hold 1 to {COMPOSITE_SUBREQUESTS} subrequests"
        )));
    }
    if subrequests.len() > COMPOSITE_QUERIES {
        return Err(invalid(format!(
            "a composite request may hold at most {COMPOSITE_QUERIES} query subrequests"
        )));
    }
    let mut responses = Vec::with_capacity(subrequests.len());
    for sub in &subrequests {
        let reference = sub["referenceId"].as_str().unwrap_or_default().to_owned();
        let url = sub["url"].as_str().unwrap_or_default();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let params = url_pairs(query);
        let after_version = path
            .strip_prefix(&format!("/services/data/v{version}/"))
            .unwrap_or_default();
        let segments: Vec<&str> = after_version.split('/').filter(|s| !s.is_empty()).collect();
        let result = match (sub["method"].as_str(), segments.as_slice()) {
            (Some("GET"), ["query" | "queryAll"]) if params.contains_key("q") => {
                let q = params.get("q").and_then(Value::as_str).unwrap_or_default();
                world
                    .sf
                    .query(q, version)
                    .map(|rows| query_page_json(world, version, rows, MAX_BATCH))
            }
            (Some("GET"), ["query" | "queryAll", cursor]) => match world.sf.cursors.remove(*cursor) {
                Some(rows) => Ok(query_page_json(world, version, rows, MAX_BATCH)),
                None => Err(SfError {
                    code: "INVALID_QUERY_LOCATOR",
                    message: "invalid query locator".into(),
                    fields: vec![],
                }),
            },
            _ => Err(invalid(format!(
                "the sandbox's composite supports query subrequests only, not {url}"
            ))),
        };
        responses.push(match result {
            Ok(body) => json!({"body": body, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": reference}),
            Err(error) => json!({
                "body": [{"errorCode": error.code, "message": error.message}],
                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference
            }),
        });
    }
    Ok(json_response(StatusCode::OK, json!({"compositeResponse": responses})))
}

/// Per-record error as collections report it (`statusCode`, not `errorCode`).
pub fn record_error(error: &SfError) -> Value {
    json!({"statusCode": error.code, "message": error.message, "fields": error.fields})
}

pub(super) fn collections(
    world: &mut World,
    body: &[u8],
    mut apply: impl FnMut(&mut SfWorld, &str, &Record) -> Result<(String, Option<bool>), SfError>,
) -> Result<Response, SfError> {
    let request = parse_body(body)?;
    let all_or_none = request.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let records = request
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if records.len() > MAX_COLLECTION {
        return Err(SfError {
            code: "EXCEEDED_ID_LIMIT",
            message: format!("record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"),
            fields: vec![],
        });
    }
    let snapshot = all_or_none.then(|| world.sf.snapshot());
    let mut results = Vec::with_capacity(records.len());
    for record in &records {
        let object = record
            .pointer("/attributes/type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut fields = record.as_object().map(Record::from).unwrap_or_default();
        if world.faults.sf.unknown_status_gets_default {
            let id = fields.get("Id").and_then(Value::as_str).map(str::to_owned);
            world.sf.unknown_status_to_default(&object, id.as_deref(), &mut fields);
        }
        let id = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("id"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned);
        let outcome = if let Some(fault) = record_fault(world, &object, id.as_deref()) {
            Err(fault)
        } else if object.is_empty() {
            Err(SfError {
                code: "INVALID_TYPE",
                message: "Must send a concrete entity type.".into(),
                fields: vec![],
            })
        } else {
            apply(&mut world.sf, &object, &fields)
        };
        results.push(outcome);
    }
    let failed = results.iter().any(Result::is_err);
    if all_or_none
        && failed
        && let Some(snapshot) = snapshot
    {
        world.sf.restore(snapshot);
    }
    let body: Vec<Value> = results
        .iter()
        .map(|outcome| match outcome {
            Ok(_) if all_or_none && failed => json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]}),
            Ok((id, created)) => {
                let mut result = json!({"id": id, "success": true, "errors": []});
                if let Some(created) = created {
                    result["created"] = json!(created);
                }
                result
            }
            Err(error) => json!({"success": false, "errors": [record_error(error)]}),
        })
        .collect();
    Ok(json_response(StatusCode::OK, Value::Array(body)))
}

pub(super) fn describe(sf: &SfWorld, object: &str) -> Result<Value, SfError> {
    let schema = sf
        .schemas
        .values()
        .find(|s| s.name.eq_ignore_ascii_case(object))
        .ok_or(SfError {
            code: "NOT_FOUND",
            message: format!("The requested resource does not exist: sObject type '{object}' is not supported."),
            fields: vec![],
        })?;
    let fields: Vec<Value> = schema
        .fields
        .values()
        .map(|f| {
            json!({
                "name": f.name,
                "type": f.field_type.describe_name(),
                "createable": !matches!(f.access, crate::sf::schema::Access::ReadOnly),
                "updateable": matches!(f.access, crate::sf::schema::Access::ReadWrite),
                "nillable": !f.required,
                "externalId": f.external_id,
                "unique": f.external_id,
                "custom": f.name.ends_with("__c"),
                "length": if matches!(f.field_type, crate::sf::schema::FieldType::Text | crate::sf::schema::FieldType::Picklist) { 255 } else { 0 },
                "referenceTo": match f.field_type { crate::sf::schema::FieldType::Reference(t) => json!([t]), _ => json!([]) },
            })
        })
        .collect();
    Ok(
        json!({"name": schema.name, "keyPrefix": schema.prefix, "createable": true, "updateable": true, "queryable": true, "fields": fields}),
    )
}

/// A bulk job's JSON.
pub fn job_json(job: &BulkJob, version: &str) -> Value {
    let (processed, failed) = job.counts;
    json!({
        "id": job.id,
        "operation": job.operation,
        "object": job.object,
        "createdById": "005SB0000000001AAA",
        "createdDate": format_datetime(job.created),
        "systemModstamp": format_datetime(job.created),
        "state": job.state,
        "externalIdFieldName": job.external_id_field,
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": version.parse::<f64>().unwrap_or(66.0),
        "jobType": "V2Ingest",
        "contentUrl": format!("services/data/v{version}/jobs/ingest/{}/batches", job.id),
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "numberRecordsProcessed": processed,
        "numberRecordsFailed": failed,
        "retries": 0,
        "totalProcessingTime": 1,
        "errorMessage": job.error_message,
    })
}
