//! Per-recipient campaign activity as streams of typed records, one page of 1,000 at a time.
//!
//! CM records have no ids and coarse (often whole-minute) dates, so each record carries a
//! stable [`ActivityRecord::dedupe_key`], and the stream knows the watermark to store next.
//! The `date` filter is inclusive: polling again from the stored watermark re-reads the records
//! at that moment, which is safe because applying a record twice changes nothing (the Activity
//! Date guard). Within one stream, a record is never yielded twice, even if rows shift between
//! pages while it is walked.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use mapping::email::normalize_email;
use mapping::{Activity, ActivityDetail, ActivityKind, CmTimestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::types::Page;
use crate::{CmClient, CmError};

/// CM's largest page.
pub const PAGE_SIZE: usize = 1000;

/// A record's identity as a digest: a page shifted by records CM added meanwhile serves a
/// record again on the next page, and it is skipped by this key.
pub type RecordKey = [u8; 16];

/// The first 16 bytes of the SHA-256 of the record's identifying fields, each after its length
/// (so ("ab", "c") and ("a", "bc") differ): collisions are out of reach, and no key is formatted
/// or kept as text for each of a million records.
pub fn record_key(
    campaign_id: &str,
    kind: ActivityKind,
    email: &str,
    list_id: &str,
    local: CmTimestamp,
    url: &str,
) -> RecordKey {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for field in [campaign_id, kind.as_str(), email, list_id, url] {
        digest.update((field.len() as u64).to_be_bytes());
        digest.update(field.as_bytes());
    }
    let local = local.naive().and_utc();
    digest.update(local.timestamp().to_be_bytes());
    digest.update(local.timestamp_subsec_nanos().to_be_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.finalize()[..16]);
    key
}

/// One activity record, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRecord {
    /// The campaign.
    pub campaign_id: String,
    /// What happened.
    pub kind: ActivityKind,
    /// The address, trimmed and lower-cased.
    pub email: String,
    /// The list it was sent from.
    pub list_id: String,
    /// CM's local date.
    pub local: CmTimestamp,
    /// The same instant in UTC.
    pub at: DateTime<Utc>,
    /// Kind-specific details.
    pub detail: ActivityDetail,
    /// The record's identity on CM's pages: campaign, kind, email, list, date (and URL for
    /// clicks), as a digest (see [`record_key`]).
    pub dedupe_key: RecordKey,
}

impl ActivityRecord {
    /// The record as the mapping crate's activity.
    pub fn to_activity(&self) -> Activity {
        Activity {
            kind: self.kind,
            email: self.email.clone(),
            at: self.at,
            list_id: self.list_id.clone(),
            detail: self.detail.clone(),
        }
    }

    /// [`Self::to_activity`], taking the record's fields rather than copying them.
    pub fn into_activity(self) -> Activity {
        Activity {
            kind: self.kind,
            email: self.email,
            at: self.at,
            list_id: self.list_id,
            detail: self.detail,
        }
    }
}

/// The raw row shape shared by every activity resource (fields a resource lacks stay empty).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRow<'a> {
    /// Borrowed from the page (normalised into the record's own copy).
    #[serde(borrow)]
    email_address: Cow<'a, str>,
    #[serde(rename = "ListID", default)]
    list_id: String,
    /// Borrowed from the page (parsed, never kept).
    #[serde(default, borrow)]
    date: Option<Cow<'a, str>>,
    #[serde(rename = "URL", default)]
    url: Option<String>,
    #[serde(default)]
    bounce_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The resource name of a kind.
pub fn resource(kind: ActivityKind) -> &'static str {
    match kind {
        ActivityKind::Sent => "recipients",
        ActivityKind::Opened => "opens",
        ActivityKind::Clicked => "clicks",
        ActivityKind::Bounced => "bounces",
        ActivityKind::Unsubscribed => "unsubscribes",
        ActivityKind::MarkedAsSpam => "spam",
    }
}

/// A walk over one campaign's records of one kind.
pub struct ActivityStream<'a> {
    client: &'a CmClient,
    campaign_id: String,
    kind: ActivityKind,
    since: Option<CmTimestamp>,
    sent_at: Option<DateTime<Utc>>,
    /// The page the walk yields next.
    next_page: i64,
    /// The page the walk asks CM for next (ahead of `next_page` while pages are in flight).
    next_fetch: i64,
    /// Pages asked for and not taken yet, in page order.
    in_flight: FuturesOrdered<PageFetch<'a>>,
    /// Pages this walk may have in flight at once.
    window: usize,
    /// Shared by the walks of one campaign: a request holds one while it is in flight.
    permits: Option<Arc<Semaphore>>,
    pages: Option<i64>,
    buffer: VecDeque<ActivityRecord>,
    previous_keys: HashSet<RecordKey>,
    current_keys: HashSet<RecordKey>,
    max_seen: Option<CmTimestamp>,
    pages_fetched: u32,
    unreadable: Vec<UnreadableRow>,
}

/// One page asked for: its rows still unread JSON, each read on its own.
type PageFetch<'a> = Pin<Box<dyn Future<Output = Result<Page<Box<RawValue>>, CmError>> + Send + 'a>>;

impl std::fmt::Debug for ActivityStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityStream")
            .field("campaign_id", &self.campaign_id)
            .field("kind", &self.kind)
            .field("next_page", &self.next_page)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// A row of an activity page that could not be read (no address, a malformed date): skipped,
/// kept for the run record, never a reason to lose the rest of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRow {
    /// The resource (`opens`, `clicks`, ...).
    pub resource: &'static str,
    /// The page it was on (1-based).
    pub page: i64,
    /// Its position on the page (0-based).
    pub index: usize,
    /// What was wrong (never the row itself: it may hold an address).
    pub reason: String,
}

impl CmClient {
    /// Opens, clicks, bounces, unsubscribes or spam complaints of a campaign dated at or after
    /// `since` (CM local time; `None`: all), oldest first.
    pub fn activity(&self, campaign_id: &str, kind: ActivityKind, since: Option<CmTimestamp>) -> ActivityStream<'_> {
        ActivityStream::new(self, campaign_id, kind, since, None)
    }

    /// The date of the newest record of one of a campaign's activity streams (one call: the
    /// first page, newest first, of CM's smallest page size); `None` when it has none. A cheap
    /// look for records the summary's counts do not show: they count recipients, not records,
    /// for bounces, unsubscribes, complaints and unique opens.
    pub async fn newest_activity(
        &self,
        campaign_id: &str,
        kind: ActivityKind,
    ) -> Result<Option<DateTime<Utc>>, CmError> {
        let path = format!("campaigns/{campaign_id}/{}.json", resource(kind));
        let query = [
            ("page", "1".to_owned()),
            ("pagesize", "10".to_owned()),
            ("orderfield", "date".to_owned()),
            ("orderdirection", "desc".to_owned()),
        ];
        let page: Page<serde_json::Value> = self.get(&path, &query).await?;
        let newest = page
            .results
            .iter()
            .filter_map(|row| row.get("Date").and_then(serde_json::Value::as_str))
            .filter_map(|date| CmTimestamp::parse(date).ok())
            .max();
        Ok(newest.map(|local| local.to_utc(self.zone())))
    }

    /// The recipients of a campaign as `Sent` records dated `sent_at` (recipients carry no
    /// date of their own).
    pub fn recipients(&self, campaign_id: &str, sent_at: DateTime<Utc>) -> ActivityStream<'_> {
        ActivityStream::new(self, campaign_id, ActivityKind::Sent, None, Some(sent_at))
    }
}

impl<'a> ActivityStream<'a> {
    fn new(
        client: &'a CmClient,
        campaign_id: &str,
        kind: ActivityKind,
        since: Option<CmTimestamp>,
        sent_at: Option<DateTime<Utc>>,
    ) -> Self {
        ActivityStream {
            client,
            campaign_id: campaign_id.to_owned(),
            kind,
            since,
            sent_at,
            next_page: 1,
            next_fetch: 1,
            in_flight: FuturesOrdered::new(),
            window: 1,
            permits: None,
            pages: None,
            buffer: VecDeque::new(),
            previous_keys: HashSet::new(),
            current_keys: HashSet::new(),
            max_seen: None,
            pages_fetched: 0,
            unreadable: Vec::new(),
        }
    }

    /// The rows skipped as unreadable since the last call.
    pub fn take_unreadable(&mut self) -> Vec<UnreadableRow> {
        std::mem::take(&mut self.unreadable)
    }

    /// The newest date yielded so far, in UTC.
    pub fn newest_seen(&self) -> Option<DateTime<Utc>> {
        self.max_seen.map(|m| m.to_utc(self.client.zone()))
    }

    /// The newest CM date yielded so far.
    pub fn max_seen(&self) -> Option<CmTimestamp> {
        self.max_seen
    }

    /// Starts the walk at `page` (1 = the first): a read that a run cut after page `page - 1`
    /// goes on where it stopped. Only for an order that does not change between reads (the
    /// recipients, by email, of a campaign already sent).
    pub fn from_page(mut self, page: i64) -> Self {
        self.next_page = page.max(1);
        self.next_fetch = self.next_page;
        self
    }

    /// Asks for up to `window` pages at once, each request holding one of `permits` while it
    /// is in flight (shared by a campaign's walks, they bound its requests to CM). Pages are
    /// still taken in order; the count of pages comes with the first, so the walk asks for one
    /// page until it knows how many there are.
    pub fn pages_in_flight(mut self, window: usize, permits: Arc<Semaphore>) -> Self {
        self.window = window.max(1);
        self.permits = Some(permits);
        self
    }

    fn path(&self) -> String {
        format!("campaigns/{}/{}.json", self.campaign_id, resource(self.kind))
    }

    fn query(&self, page: i64) -> Vec<(&'static str, String)> {
        let mut query = vec![("page", page.to_string()), ("pagesize", PAGE_SIZE.to_string())];
        if self.kind == ActivityKind::Sent {
            query.push(("orderfield", "email".to_owned()));
        } else {
            query.push(("orderfield", "date".to_owned()));
            query.push(("orderdirection", "asc".to_owned()));
            if let Some(since) = self.since {
                query.push(("date", since.to_cm_string()));
            }
        }
        query
    }

    /// Asks for the pages up to the last one known, as many as the window holds.
    fn ask_ahead(&mut self) {
        let last = self.pages.unwrap_or(self.next_page).max(self.next_page);
        while self.in_flight.len() < self.window && self.next_fetch <= last {
            let client = self.client;
            let path = self.path();
            let query = self.query(self.next_fetch);
            let permits = self.permits.clone();
            self.in_flight.push_back(Box::pin(async move {
                let _permit = match permits {
                    Some(permits) => permits.acquire_owned().await.ok(),
                    None => None,
                };
                client.get::<Page<Box<RawValue>>>(&path, &query).await
            }));
            self.next_fetch += 1;
        }
    }

    /// The page the walk asks for next.
    pub fn next_page_number(&self) -> i64 {
        self.next_page
    }

    /// The kind of records this stream reads.
    pub fn kind(&self) -> ActivityKind {
        self.kind
    }

    /// Pages fetched so far (one API call each).
    pub fn pages_fetched(&self) -> u32 {
        self.pages_fetched
    }

    /// The watermark to store once every record of this stream is applied: the newest date
    /// seen, less `overlap` (records CM makes visible late, dated a little earlier, are read
    /// again next time), never before where this stream started. `None` if nothing was seen
    /// and the stream had no start.
    pub fn next_watermark(&self, overlap: Duration) -> Option<DateTime<Utc>> {
        let zone = self.client.zone();
        let start = self.since.map(|s| s.to_utc(zone));
        match (self.max_seen.map(|m| m.to_utc(zone) - overlap), start) {
            (Some(seen), Some(start)) => Some(seen.max(start)),
            (Some(seen), None) => Some(seen),
            (None, start) => start,
        }
    }

    /// The next page of records (`None` when the walk is over). Records already yielded in the
    /// previous or this page are skipped.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ActivityRecord>>, CmError> {
        if self.pages.is_some_and(|pages| self.next_page > pages) {
            return Ok(None);
        }
        self.ask_ahead();
        let path = self.path();
        let page = match self.in_flight.next().await {
            Some(Ok(page)) => page,
            Some(Err(error)) => {
                self.in_flight = FuturesOrdered::new(); // the walk ends here
                return Err(error);
            }
            None => return Ok(None),
        };
        let page_number = self.next_page;
        if page.number_of_pages > 0 && page.number_of_pages < page_number {
            // Asked ahead past an end that moved back: the walk is over.
            self.pages = Some(page.number_of_pages);
            self.in_flight = FuturesOrdered::new();
            return Ok(None);
        }
        page.check(&path, page_number)?;
        self.pages_fetched += 1;
        self.pages = Some(page.number_of_pages);
        self.next_page += 1;
        self.previous_keys = std::mem::take(&mut self.current_keys);
        let mut records = Vec::with_capacity(page.results.len());
        // Rows are read one by one: a malformed row is skipped and reported, never the page.
        for (index, row) in page.results.into_iter().enumerate() {
            let read = serde_json::from_str::<RawRow>(row.get())
                .map_err(|e| e.to_string())
                .and_then(|row| self.convert(row, &path).map_err(|e| e.to_string()));
            let record = match read {
                Ok(record) => record,
                Err(reason) => {
                    self.unreadable.push(UnreadableRow {
                        resource: resource(self.kind),
                        page: page_number,
                        index,
                        reason,
                    });
                    continue;
                }
            };
            if self.previous_keys.contains(&record.dedupe_key) || !self.current_keys.insert(record.dedupe_key) {
                continue;
            }
            if self.kind != ActivityKind::Sent {
                self.max_seen = Some(self.max_seen.map_or(record.local, |m| m.max(record.local)));
            }
            records.push(record);
        }
        if page.number_of_pages == 0 {
            return Ok(None);
        }
        Ok(Some(records))
    }

    fn convert(&self, row: RawRow<'_>, path: &str) -> Result<ActivityRecord, CmError> {
        let zone = self.client.zone();
        let (local, at) = match (&row.date, self.sent_at) {
            (Some(date), _) => {
                let local = CmTimestamp::parse(date).map_err(|e| CmError::Decode {
                    endpoint: path.to_owned(),
                    detail: e.to_string(),
                })?;
                (local, local.to_utc(zone))
            }
            (None, Some(sent_at)) => (CmTimestamp::from_utc(sent_at, zone), sent_at),
            (None, None) => {
                return Err(CmError::Decode {
                    endpoint: path.to_owned(),
                    detail: "record without a Date".into(),
                });
            }
        };
        let email = normalize_email(&row.email_address);
        if email.is_empty() {
            return Err(CmError::Decode {
                endpoint: path.to_owned(),
                detail: "record without an EmailAddress".into(),
            });
        }
        let dedupe_key = record_key(
            &self.campaign_id,
            self.kind,
            &email,
            &row.list_id,
            local,
            row.url.as_deref().unwrap_or_default(),
        );
        let detail = match self.kind {
            ActivityKind::Clicked => ActivityDetail::Click {
                url: row.url.unwrap_or_default(),
            },
            ActivityKind::Bounced => ActivityDetail::Bounce {
                bounce_type: row.bounce_type.unwrap_or_default(),
                reason: row.reason.unwrap_or_default(),
            },
            _ => ActivityDetail::None,
        };
        Ok(ActivityRecord {
            campaign_id: self.campaign_id.clone(),
            kind: self.kind,
            email,
            list_id: row.list_id,
            local,
            at,
            detail,
            dedupe_key,
        })
    }

    /// The next record.
    pub async fn next(&mut self) -> Option<Result<ActivityRecord, CmError>> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            match self.next_page().await {
                Ok(Some(records)) => self.buffer.extend(records),
                Ok(None) => return None,
                Err(error) => {
                    // End the walk after an error: the caller decides whether to start again.
                    self.pages = Some(0);
                    return Some(Err(error));
                }
            }
        }
    }

    /// The walk as a `futures::Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Result<ActivityRecord, CmError>> + 'a {
        futures::stream::unfold(
            self,
            |mut walk| async move { walk.next().await.map(|item| (item, walk)) },
        )
    }
}
