//! Stage `read`: the campaign summary, and unless its counts show nothing new, what changed in
//! CM since the watermarks (each stream read again over the overlap, through
//! `mapping::overlap`'s filter), up to CM's clock less the settle lag. Held in memory up to one
//! part; a larger campaign spills to temporary files.

use campaign_monitor::activity::{ActivityStream, UnreadableRow};
use chrono::{DateTime, Utc};
use events::publisher::EventSink;
use futures::StreamExt;
use mapping::overlap::{self, OverlapFilter};
use mapping::{ActivityKind, CmTimestamp};
use state::RunFailure;

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::{Deadline, EngineError};
use crate::spool::Spool;

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Reads every stream from its watermark, side by side (one request in flight each, pages
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
        let Some(unreadable) = read_pages(streams, &mut filter, &mut spool, deadline).await? else {
            return Ok(None);
        };
        if let Some(fixed) = run.fixed_by_hand_over() {
            run.next_watermarks = fixed.watermarks.clone();
        } else {
            // Reported once, by the invocation that first read them.
            self.record_unreadable(run, unreadable).await?;
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
    /// from the sent date), and where each watermark moves when the run commits.
    async fn open_streams<'c>(
        &'c self,
        run: &mut CampaignRun<'_>,
        watermarks: &std::collections::BTreeMap<String, DateTime<Utc>>,
        settled: DateTime<Utc>,
    ) -> Result<Vec<ActivityStream<'c>>, EngineError> {
        let zone = run.settings.zone();
        let overlap = run.settings.activity_overlap();
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
                streams.push(self.engine.cm.recipients(run.cm_id(), at));
                run.next_watermarks.insert(kind.as_str().to_owned(), at);
                continue;
            }
            // Read again from the overlap before the watermark: a record CM shows late with an
            // earlier date is still read (§2 `activity_overlap_minutes`).
            let since = stored.map(|w| CmTimestamp::since(overlap::read_since(w, overlap), zone));
            streams.push(self.engine.cm.activity(run.cm_id(), kind, since));
            // Everything dated up to the settled moment has been read (CM shows records within
            // the settle lag); later records are read again next time, and re-applying them
            // changes nothing.
            let next = stored.map_or(settled, |stored| stored.max(settled));
            run.next_watermarks.insert(kind.as_str().to_owned(), next);
        }
        Ok(streams)
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

/// Takes the streams' pages as they come, each record through the overlap filter into the
/// spool. The rows that could not be read; `None`: the deadline came first.
async fn read_pages(
    streams: Vec<ActivityStream<'_>>,
    filter: &mut OverlapFilter<'_>,
    spool: &mut Spool,
    deadline: &Deadline,
) -> Result<Option<Vec<UnreadableRow>>, EngineError> {
    let mut pages = futures::stream::select_all(streams.into_iter().map(|stream| {
        Box::pin(futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            match stream.next_page().await {
                Ok(Some(page)) => Some((Ok((page, stream.take_unreadable())), Some(stream))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        }))
    }));
    let mut unreadable = Vec::new();
    while let Some(page) = pages.next().await {
        if deadline.passed() {
            return Ok(None);
        }
        let (records, skipped) = page?;
        for record in &records {
            if let Some(activity) = filter.admit(record.to_activity()) {
                spool.push(activity)?;
            }
        }
        unreadable.extend(skipped);
    }
    Ok(Some(unreadable))
}
