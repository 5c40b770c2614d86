//! Stage `read`: the campaign summary, and unless its counts show nothing new, what changed in
//! CM since the watermarks (each stream read again over the overlap, through
//! `mapping::overlap`'s filter), up to CM's clock less the settle lag. Held in memory up to one
//! part; a larger campaign spills to temporary files.

use std::sync::Arc;

use campaign_monitor::activity::{ActivityStream, UnreadableRow};
use chrono::{DateTime, Utc};
use events::publisher::EventSink;
use futures::StreamExt;
use mapping::overlap::{self, OverlapFilter};
use mapping::{ActivityKind, CmTimestamp};
use state::RunFailure;
use tokio::sync::Semaphore;

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::{Deadline, EngineError};
use crate::spool::Spool;

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Reads every stream from its watermark, side by side (pages asked for ahead, at most
    /// [`crate::EngineOptions::cm_pages_in_flight`] requests for the campaign at once; pages
    /// taken as they come: the sync waits for the longest stream, not for the sum of them).
    /// `None`: the deadline came first. A continuation cuts its parts at the watermarks the
    /// first read fixed.
    pub(super) async fn read_changes(
        &self,
        run: &mut CampaignRun<'_>,
        deadline: &Deadline,
    ) -> Result<Option<Spool>, EngineError> {
        let engine = self.engine;
        let zone = run.settings.zone();
        // The summary before CM's clock: every record it counts is dated before that moment.
        let summary = engine.cm.summary(run.cm_id()).await?;
        run.link.name = summary.name.clone();
        run.total.link.name = summary.name.clone();
        let counts = summary.to_stats();
        run.summary = Some(summary);
        run.progress = engine.store.campaign_progress(run.cm_id()).await?;
        run.next_progress = run.progress.clone();
        let watermarks = engine.store.watermarks(run.cm_id()).await?;
        run.watermarks = watermarks.clone();
        let cm_now = engine.cm.system_date().await?.to_utc(zone);
        run.cm_now = Some(cm_now);
        run.found_new = mapping::probe::counts_changed(run.progress.probe.as_ref(), &counts);
        let unchanged = run.resumed.is_none()
            && mapping::probe::activity_unchanged(
                run.progress.probe.as_ref(),
                &counts,
                mapping::probe::read_up_to(&watermarks),
                cm_now,
            );
        if unchanged {
            run.counts.unchanged_in_cm = 1;
            return Ok(Some(Spool::new(engine.options.part_size)));
        }
        run.next_progress.probe = Some(mapping::probe::next_probe(run.progress.probe.as_ref(), &counts, cm_now));
        let settled = overlap::settled(cm_now, engine.options.settle_lag);
        let streams = self.open_streams(run, &watermarks, settled).await?;
        let stored = run.progress.recent.clone();
        let mut filter = OverlapFilter::new(&watermarks, &stored);
        let mut spool = Spool::new(engine.options.part_size);
        // A continuation reads what the first invocation read, never less (its parts are cut
        // from it): it is not cut, and each stream stops past where the first one's stopped.
        let budget = match run.fixed_by_hand_over() {
            Some(_) => ReadBudget::default(),
            None => ReadBudget {
                cut_at: deadline.share_of_time_left(engine.options.read_share),
                pages: engine.options.read_pages_per_run,
            },
        };
        let Some(read) = read_pages(streams, &mut filter, &mut spool, deadline, &budget).await? else {
            return Ok(None);
        };
        if let Some(fixed) = run.fixed_by_hand_over().cloned() {
            run.next_watermarks = fixed.watermarks;
            run.recipients_to_page = fixed.recipients_to_page;
            run.next_progress.recipients_from_page = fixed.recipients_to_page;
        } else {
            self.take_cut(run, &read.cut);
            // Reported once, by the invocation that first read them.
            self.record_unreadable(run, read.unreadable).await?;
        }
        let filtered = filter.finish(&run.next_watermarks, run.settings.activity_overlap());
        run.counts.already_applied += filtered.already_applied;
        for activity in filtered.to_apply {
            spool.push(activity)?;
        }
        // A continuation applies only the parts left: records it read into the parts done before
        // (late ones among them) are not applied, so its counts must not say they were. It keeps
        // the last commit's counts, and the next sync applies again what grew since.
        if run.fixed_by_hand_over().is_none() {
            run.next_progress.recent = filtered.counts;
        }
        Ok(Some(spool))
    }

    /// One stream per activity kind, each from its watermark less the overlap (recipients once,
    /// from the sent date, going on from the page a cut read stopped at), and where each
    /// watermark moves when the run commits.
    async fn open_streams<'c>(
        &'c self,
        run: &mut CampaignRun<'_>,
        watermarks: &std::collections::BTreeMap<String, DateTime<Utc>>,
        settled: DateTime<Utc>,
    ) -> Result<Vec<StreamRead<'c>>, EngineError> {
        let zone = run.settings.zone();
        let overlap = run.settings.activity_overlap();
        let fixed = run.fixed_by_hand_over().cloned();
        // One bound for the campaign: its streams share it, each may use all of it (at least
        // one request each: see `EngineOptions::cm_pages_in_flight`).
        let in_flight = self.engine.options.cm_pages_in_flight.max(ActivityKind::COUNT);
        let permits = Arc::new(Semaphore::new(in_flight));
        let mut streams = Vec::new();
        for kind in ActivityKind::ALL {
            let stored = watermarks.get(kind.as_str()).copied();
            if !kind.is_interaction() {
                if stored.is_some() {
                    continue; // recipients are read once
                }
                let Some(at) = self.sent_at_once(run).await? else {
                    continue;
                };
                let from_page = run.progress.recipients_from_page.unwrap_or(1);
                let stream = self
                    .engine
                    .cm
                    .recipients(run.cm_id(), at)
                    .from_page(from_page)
                    .pages_in_flight(in_flight, Arc::clone(&permits));
                streams.push(StreamRead::new(
                    stream,
                    StreamEnd::BeforePage(fixed.as_ref().and_then(|f| f.recipients_to_page)),
                ));
                run.next_watermarks.insert(kind.as_str().to_owned(), at);
                continue;
            }
            if fixed
                .as_ref()
                .is_some_and(|f| !f.watermarks.contains_key(kind.as_str()))
            {
                continue; // the first invocation's read was cut before this stream served a page
            }
            // Read again from the overlap before the watermark: a record CM shows late with an
            // earlier date is still read (§2 `activity_overlap_minutes`).
            let since = stored.map(|w| CmTimestamp::since(overlap::read_since(w, overlap), zone));
            let until = fixed.as_ref().and_then(|f| f.watermarks.get(kind.as_str()).copied());
            streams.push(StreamRead::new(
                self.engine
                    .cm
                    .activity(run.cm_id(), kind, since)
                    .pages_in_flight(in_flight, Arc::clone(&permits)),
                StreamEnd::PastDate(until),
            ));
            // Everything dated up to the settled moment has been read (CM shows records within
            // the settle lag); later records are read again next time, and re-applying them
            // changes nothing.
            let next = stored.map_or(settled, |stored| stored.max(settled));
            run.next_watermarks.insert(kind.as_str().to_owned(), next);
        }
        Ok(streams)
    }

    /// A read cut short: each stream it stopped in moves its watermark only as far as it read
    /// whole (the recipients keep the page to go on from), and the next run is asked for.
    fn take_cut(&self, run: &mut CampaignRun<'_>, cut: &[StreamCut]) {
        if cut.is_empty() {
            return;
        }
        run.counts.streams_read_in_part = cut.len() as u64;
        for stream in cut {
            let key = stream.kind.as_str().to_owned();
            if !stream.kind.is_interaction() {
                run.next_watermarks.remove(&key);
                run.recipients_to_page = Some(stream.next_page);
                run.next_progress.recipients_from_page = Some(stream.next_page);
                continue;
            }
            let stored = run.watermarks.get(&key).copied();
            let read_to = stream.newest.map(overlap::read_in_part_up_to);
            match (stored, read_to) {
                (Some(stored), Some(read_to)) => run.next_watermarks.insert(key, stored.max(read_to)),
                (Some(stored), None) => run.next_watermarks.insert(key, stored),
                (None, Some(read_to)) => run.next_watermarks.insert(key, read_to),
                (None, None) => run.next_watermarks.remove(&key),
            };
        }
        tracing::info!(
            campaign = run.cm_id(),
            streams = cut.len(),
            "read too long for one invocation: applying what was read, the next run goes on"
        );
    }

    /// Rows CM served that could not be read: skipped (the rest of their page is synced),
    /// counted, and kept in the run record with what was wrong.
    async fn record_unreadable(&self, run: &mut CampaignRun<'_>, rows: Vec<UnreadableRow>) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        run.counts.unreadable_rows += rows.len() as u64;
        tracing::warn!(
            campaign = run.cm_id(),
            rows = rows.len(),
            "unreadable CM activity rows skipped"
        );
        if run.mode.is_dry_run() {
            return Ok(());
        }
        let failures: Vec<RunFailure> = rows
            .into_iter()
            .map(|row| {
                RunFailure::new(
                    &format!("CM {} page {} row {}", row.resource, row.page, row.index + 1),
                    &row.reason,
                    Some("CM_ROW_UNREADABLE"),
                )
            })
            .collect();
        Ok(self.engine.store.add_run_failures(&run.record_id, &failures).await?)
    }
}

/// Where a stream stops before its end: a continuation reads what the first invocation read.
#[derive(Debug, Clone, Copy)]
enum StreamEnd {
    /// After the page holding a record dated past this moment (activity, oldest first).
    PastDate(Option<DateTime<Utc>>),
    /// Before this page (the recipients, in an order that does not change).
    BeforePage(Option<i64>),
}

/// One stream of a read, with where it stops.
struct StreamRead<'c> {
    stream: ActivityStream<'c>,
    end: StreamEnd,
}

impl<'c> StreamRead<'c> {
    fn new(stream: ActivityStream<'c>, end: StreamEnd) -> Self {
        StreamRead { stream, end }
    }
}

/// How much of an invocation a read may take before it is cut (none: not cut).
#[derive(Debug, Default)]
struct ReadBudget {
    cut_at: Option<std::time::Instant>,
    pages: Option<u32>,
}

impl ReadBudget {
    fn spent(&self, pages: u32) -> bool {
        self.pages.is_some_and(|most| pages >= most) || self.cut_at.is_some_and(|at| std::time::Instant::now() >= at)
    }
}

/// A stream a cut read stopped in: the newest date it served, and the page it would have read
/// next.
#[derive(Debug)]
struct StreamCut {
    kind: ActivityKind,
    newest: Option<DateTime<Utc>>,
    next_page: i64,
}

/// What a read got: the rows that could not be read, and the streams it stopped in (empty:
/// every stream read to its end).
struct Read {
    unreadable: Vec<UnreadableRow>,
    cut: Vec<StreamCut>,
}

/// Where one stream's walk is.
enum Walk<'c> {
    Reading(Box<StreamRead<'c>>),
    /// Its last page was served; its end is next.
    Ending,
    Done,
}

/// A page of one stream, or its end.
enum Served {
    Page {
        index: usize,
        records: Vec<campaign_monitor::activity::ActivityRecord>,
        unreadable: Vec<UnreadableRow>,
        newest: Option<DateTime<Utc>>,
        next_page: i64,
    },
    End {
        index: usize,
    },
}

/// Takes the streams' pages as they come, each record through the overlap filter into the
/// spool, until every stream ends or the budget is spent (then the read is cut: see
/// [`Read::cut`]). `None`: the deadline came first.
async fn read_pages(
    streams: Vec<StreamRead<'_>>,
    filter: &mut OverlapFilter<'_>,
    spool: &mut Spool,
    deadline: &Deadline,
    budget: &ReadBudget,
) -> Result<Option<Read>, EngineError> {
    let kinds: Vec<ActivityKind> = streams.iter().map(|s| s.stream.kind()).collect();
    let mut open: Vec<Option<(Option<DateTime<Utc>>, i64)>> = streams
        .iter()
        .map(|s| Some((None, s.stream.next_page_number())))
        .collect();
    let mut pages = futures::stream::select_all(streams.into_iter().enumerate().map(|(index, read)| {
        Box::pin(futures::stream::unfold(
            Walk::Reading(Box::new(read)),
            move |walk| async move {
                let mut read = match walk {
                    Walk::Reading(read) => read,
                    Walk::Ending => return Some((Ok(Served::End { index }), Walk::Done)),
                    Walk::Done => return None,
                };
                if let StreamEnd::BeforePage(Some(last)) = read.end
                    && read.stream.next_page_number() >= last
                {
                    return Some((Ok(Served::End { index }), Walk::Done));
                }
                match read.stream.next_page().await {
                    Ok(Some(records)) => {
                        let past_end = match read.end {
                            StreamEnd::PastDate(Some(until)) => records.iter().any(|r| r.at > until),
                            _ => false,
                        };
                        let served = Served::Page {
                            index,
                            records,
                            unreadable: read.stream.take_unreadable(),
                            newest: read.stream.newest_seen(),
                            next_page: read.stream.next_page_number(),
                        };
                        Some((Ok(served), if past_end { Walk::Ending } else { Walk::Reading(read) }))
                    }
                    Ok(None) => Some((Ok(Served::End { index }), Walk::Done)),
                    Err(error) => Some((Err(EngineError::from(error)), Walk::Done)),
                }
            },
        ))
    }));
    let mut unreadable = Vec::new();
    let mut pages_read = 0u32;
    while let Some(served) = pages.next().await {
        if deadline.passed() {
            return Ok(None);
        }
        match served? {
            Served::End { index } => open[index] = None,
            Served::Page {
                index,
                records,
                unreadable: skipped,
                newest,
                next_page,
            } => {
                pages_read += 1;
                for record in records {
                    if let Some(activity) = filter.admit(record.into_activity()) {
                        spool.push(activity)?;
                    }
                }
                unreadable.extend(skipped);
                if let Some(stream) = open[index].as_mut() {
                    *stream = (newest, next_page);
                }
            }
        }
        if open.iter().any(Option::is_some) && budget.spent(pages_read) {
            let cut = open
                .iter()
                .enumerate()
                .filter_map(|(index, stream)| {
                    stream.map(|(newest, next_page)| StreamCut {
                        kind: kinds[index],
                        newest,
                        next_page,
                    })
                })
                .collect();
            return Ok(Some(Read { unreadable, cut }));
        }
    }
    Ok(Some(Read {
        unreadable,
        cut: Vec::new(),
    }))
}
