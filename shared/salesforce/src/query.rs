//! Reading: SOQL queries and their pages, `IN` lists split to fit the URI and body limits,
//! Composite requests of several queries, describes (cached) and the org's limits.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::*;

/// A field from describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    /// API name.
    pub name: String,
    /// Type (`string`, `double`, `datetime`, ...).
    #[serde(rename = "type")]
    pub field_type: String,
    /// Can be set on create.
    #[serde(default)]
    pub createable: bool,
    /// Can be updated.
    #[serde(default)]
    pub updateable: bool,
    /// External id.
    #[serde(default)]
    pub external_id: bool,
    /// Unique.
    #[serde(default)]
    pub unique: bool,
}

/// An object's describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Describe {
    /// API name.
    pub name: String,
    /// Records can be created (for this user).
    #[serde(default)]
    pub createable: bool,
    /// Fields.
    pub fields: Vec<FieldInfo>,
}

impl Describe {
    /// A field by name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// A query's pages.
pub struct QueryStream<'a> {
    client: &'a SfClient,
    soql: Option<String>,
    next_url: Option<String>,
    done: bool,
    pages: usize,
    seen: std::collections::HashSet<String>,
}

/// More pages than this for one query (100 million rows at 2,000 a page) is not followed.
pub const MAX_QUERY_PAGES: usize = 50_000;

impl std::fmt::Debug for QueryStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream").field("done", &self.done).finish()
    }
}

impl QueryStream<'_> {
    /// The next page of records, or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, SfError> {
        if self.done {
            return Ok(None);
        }
        let value = match (self.soql.take(), self.next_url.take()) {
            (Some(soql), _) => {
                self.client
                    .json(CallKind::Read, Method::GET, "query", &[("q", soql.as_str())], None)
                    .await?
            }
            (None, Some(url)) => self.client.json(CallKind::Read, Method::GET, &url, &[], None).await?,
            (None, None) => return Ok(None),
        };
        let records = value["records"].as_array().cloned().unwrap_or_default();
        self.pages += 1;
        match value["nextRecordsUrl"].as_str() {
            // A cursor handed back twice, or more pages than any real result, is not followed:
            // the walk stops with an error rather than looping.
            Some(url) if value["done"] == false && (self.seen.contains(url) || self.pages >= MAX_QUERY_PAGES) => {
                return Err(SfError::Decode(format!(
                    "query paging stopped after {} pages: next page {url} repeats or exceeds the limit",
                    self.pages
                )));
            }
            Some(url) if value["done"] == false => {
                self.seen.insert(url.to_owned());
                self.next_url = Some(url.to_owned());
            }
            _ => self.done = true,
        }
        Ok(Some(records))
    }
}

impl SfClient {
    /// Runs a query; the stream follows `nextRecordsUrl` one page (up to 2,000 rows) per call.
    pub fn query(&self, soql: &str) -> QueryStream<'_> {
        QueryStream {
            client: self,
            soql: Some(soql.to_owned()),
            next_url: None,
            done: false,
            pages: 0,
            seen: Default::default(),
        }
    }

    /// Every row of a query.
    pub async fn query_all(&self, soql: &str) -> Result<Vec<Value>, SfError> {
        self.check_allocation()?;
        let mut stream = self.query(soql);
        let mut rows = Vec::new();
        while let Some(page) = stream.next_page().await? {
            rows.extend(page);
        }
        Ok(rows)
    }

    /// Every row of `before (values...) after`. The `IN` list is split into queries of at most
    /// [`MAX_IN_VALUES`] values (so each usually fits one 2,000-row page) and
    /// [`MAX_BODY_SOQL_CHARS`] characters, sent [`COMPOSITE_QUERIES`] at a time in one Composite
    /// request: the SOQL travels in the body, clear of the 16,384-byte URI limit, and the whole
    /// Composite request counts as one API call. Reads grow with the values asked for, about
    /// 9,500 addresses a call, never with the size of the org.
    pub async fn query_in(&self, before: &str, values: &[String], after: &str) -> Result<Vec<Value>, SfError> {
        let queries = self.in_list_queries(before, values, after);
        self.query_many(&queries).await
    }

    /// [`SfClient::query_in`], each row handed to `take` as its Composite answer comes (in the
    /// queries' order): a large read never holds every row as JSON at once.
    pub async fn query_in_each(
        &self,
        before: &str,
        values: &[String],
        after: &str,
        take: impl FnMut(Value),
    ) -> Result<(), SfError> {
        let queries = self.in_list_queries(before, values, after);
        self.query_many_each(&queries, take).await
    }

    /// The queries [`SfClient::query_in`] would run.
    pub fn in_list_queries(&self, before: &str, values: &[String], after: &str) -> Vec<String> {
        soql::in_list_queries_by_length(before, values, after, MAX_IN_VALUES, MAX_BODY_SOQL_CHARS)
    }

    /// Every row of each query, the queries sent [`COMPOSITE_QUERIES`] to a Composite request;
    /// a result longer than a page is followed with `nextRecordsUrl`. The Composite requests go
    /// side by side, as many as the client lets be in flight; rows come in the queries' order.
    pub async fn query_many(&self, queries: &[String]) -> Result<Vec<Value>, SfError> {
        let mut rows = Vec::new();
        self.query_many_each(queries, |row| rows.push(row)).await?;
        Ok(rows)
    }

    /// [`SfClient::query_many`], each row handed to `take` as its Composite answer comes.
    pub async fn query_many_each(&self, queries: &[String], mut take: impl FnMut(Value)) -> Result<(), SfError> {
        // The requests made first, then run: a stream holding a closure over borrowed batches
        // is not `Send` for every lifetime, which axum's handlers need.
        let requests: Vec<_> = queries
            .chunks(COMPOSITE_QUERIES)
            .map(|batch| self.composite_queries(batch))
            .collect();
        let mut answers = futures::stream::iter(requests).buffered(self.config.requests_in_flight.max(1));
        while let Some(rows) = answers.try_next().await? {
            rows.into_iter().for_each(&mut take);
        }
        Ok(())
    }

    /// One Composite request of queries, and the pages that follow any of them.
    async fn composite_queries(&self, batch: &[String]) -> Result<Vec<Value>, SfError> {
        self.check_allocation()?;
        let subrequests: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, soql)| {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", soql)
                    .finish();
                serde_json::json!({
                    "method": "GET",
                    "url": format!("/services/data/v{}/query?{query}", self.config.api_version),
                    "referenceId": format!("q{i}"),
                })
            })
            .collect();
        let body = serde_json::json!({"allOrNone": false, "compositeRequest": subrequests});
        let mut value = self
            .json(CallKind::Read, Method::POST, "composite", &[], Some(&body))
            .await?;
        let responses = value["compositeResponse"]
            .as_array_mut()
            .ok_or_else(|| SfError::Decode("composite: no compositeResponse".into()))?;
        if responses.len() != batch.len() {
            return Err(SfError::Decode(format!(
                "composite: {} answers to {} queries",
                responses.len(),
                batch.len()
            )));
        }
        let mut rows = Vec::new();
        for response in responses {
            let status = response["httpStatusCode"].as_u64().unwrap_or(0);
            let body = &mut response["body"];
            if !(200..300).contains(&status) {
                let (code, message) = error_of(&body.to_string(), StatusCode::BAD_REQUEST);
                return Err(SfError::Api {
                    status: status as u16,
                    code,
                    message,
                });
            }
            if let Value::Array(records) = body["records"].take() {
                rows.extend(records);
            }
            if body["done"] == false
                && let Some(next) = body["nextRecordsUrl"].as_str()
            {
                let mut rest = QueryStream {
                    client: self,
                    soql: None,
                    next_url: Some(next.to_owned()),
                    done: false,
                    pages: 0,
                    seen: Default::default(),
                };
                while let Some(page) = rest.next_page().await? {
                    rows.extend(page);
                }
            }
        }
        Ok(rows)
    }

    /// An object's describe, fetched once and cached.
    pub async fn describe(&self, object: &str) -> Result<Arc<Describe>, SfError> {
        if let Some(cached) = self.describes.lock().ok().and_then(|d| d.get(object).cloned()) {
            return Ok(cached);
        }
        let value = self
            .json(
                CallKind::Read,
                Method::GET,
                &format!("sobjects/{object}/describe"),
                &[],
                None,
            )
            .await?;
        let describe: Describe =
            serde_json::from_value(value).map_err(|e| SfError::Decode(format!("describe {object}: {e}")))?;
        let describe = Arc::new(describe);
        if let Ok(mut cache) = self.describes.lock() {
            cache.insert(object.to_owned(), describe.clone());
        }
        Ok(describe)
    }

    /// `GET limits`: the daily allocation, as a fresh reading.
    pub async fn limits(&self) -> Result<ApiUsage, SfError> {
        let value = self.json(CallKind::Read, Method::GET, "limits", &[], None).await?;
        let max = value["DailyApiRequests"]["Max"].as_u64().unwrap_or_default();
        let remaining = value["DailyApiRequests"]["Remaining"].as_u64().unwrap_or_default();
        Ok(ApiUsage {
            used: max.saturating_sub(remaining),
            max,
        })
    }
}
