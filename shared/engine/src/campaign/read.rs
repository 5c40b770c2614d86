//! Stage 1: the campaign summary, and unless its counts show nothing new, what changed in CM
//! since the watermarks, up to CM's clock less the settle lag; the whole activity of people
//! queued for a retry. Held in memory up to one part; a larger campaign spills to temporary
//! files.

use std::collections::{BTreeMap, BTreeSet};

use campaign_monitor::activity::UnreadableRow;
use chrono::{DateTime, DurationRound, Utc};
use events::publisher::EventSink;
use futures::StreamExt;
use mapping::overlap::{self, RecentCounts, SliceCounts};
use mapping::{Activity, ActivityKind, CmTimestamp};
use state::{RunFailure, Store};

use super::CampaignRun;
use crate::spool::{Parts, Spool};
use crate::{Deadline, Engine, EngineError};

/// The activity streams of a campaign, in the order they are read.
const STREAMS: [ActivityKind; 6] = [
    ActivityKind::Sent,
    ActivityKind::Opened,
    ActivityKind::Clicked,
    ActivityKind::Bounced,
    ActivityKind::Unsubscribed,
    ActivityKind::MarkedAsSpam,
];

/// At most this many queued people are retried per sync; the rest wait for the next one.
const RETRY_BATCH: usize = 5_000;

/// How far every stream has been read: the earliest watermark of the activity streams, `None`
/// while one (or the recipients) was never read.
pub(crate) fn read_up_to(watermarks: &std::collections::BTreeMap<String, DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let mut earliest: Option<DateTime<Utc>> = None;
    for kind in STREAMS {
        let at = *watermarks.get(kind.as_str())?;
        if kind != ActivityKind::Sent {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Reads every stream from its watermark, side by side (one request in flight each, pages
    /// taken as they come: the sync waits for the longest stream, not for the sum of them).
    /// `None`: the deadline came first. A continuation cuts its parts at the watermarks the
    /// first read fixed.
    pub(super) async fn read_changes(
        &self,
        run: &mut CampaignRun<'_>,
        deadline: &Deadline,
    ) -> Result<Option<Spool>, EngineError> {
        let zone = run.settings.zone();
        // The summary before CM's clock: every record it counts is dated before that moment.
        let summary = self.cm.summary(run.cm_id()).await?;
        run.link.name = summary.name.clone();
        run.total.link.name = summary.name.clone();
        let counts = summary.to_stats();
        run.summary = Some(summary);
        run.progress = self.store.campaign_progress(run.cm_id()).await?;
        run.next_progress = run.progress.clone();
        let watermarks = self.store.watermarks(run.cm_id()).await?;
        let cm_now = self.cm.system_date().await?;
        run.cm_now = Some(cm_now.to_utc(zone));
        run.found_new = mapping::probe::counts_changed(run.progress.probe.as_ref(), &counts);
        let unchanged = run.resumed.is_none()
            && mapping::probe::activity_unchanged(
                run.progress.probe.as_ref(),
                &counts,
                read_up_to(&watermarks),
                cm_now.to_utc(zone),
            );
        if unchanged {
            run.counts.unchanged_in_cm = 1;
            return Ok(Some(Spool::new(self.options.part_size)));
        }
        run.next_progress.probe = Some(mapping::probe::next_probe(
            run.progress.probe.as_ref(),
            &counts,
            cm_now.to_utc(zone),
        ));
        let settled = (cm_now.to_utc(zone) - self.options.settle_lag)
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(cm_now.to_utc(zone));
        let overlap = run.settings.activity_overlap();
        let mut streams = Vec::new();
        for kind in STREAMS {
            let stored = watermarks.get(kind.as_str()).copied();
            if kind == ActivityKind::Sent {
                if stored.is_some() {
                    continue; // recipients are read once
                }
                let Some(at) = self.sent_at_once(run).await? else {
                    continue;
                };
                streams.push(self.cm.recipients(run.cm_id(), at));
                run.next_watermarks.insert(kind.as_str().to_owned(), at);
                continue;
            }
            // Read again from the overlap before the watermark: a record CM shows late with an
            // earlier date is still read (§2 `activity_overlap_minutes`).
            let since = stored.map(|w| CmTimestamp::since(overlap::read_from(w, overlap), zone));
            streams.push(self.cm.activity(run.cm_id(), kind, since));
            // Everything dated up to the settled moment has been read (CM shows records within
            // the settle lag); later records are read again next time, and re-applying them
            // changes nothing.
            let next = stored.map_or(settled, |stored| stored.max(settled));
            run.next_watermarks.insert(kind.as_str().to_owned(), next);
        }
        let mut spool = Spool::new(self.options.part_size);
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
        // Records dated before their stream's watermark wait until every stream is read: their
        // quarter-hour's count decides whether they were applied already.
        let mut held: Vec<Activity> = Vec::new();
        let mut counted: BTreeMap<ActivityKind, SliceCounts> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            if deadline.passed() {
                return Ok(None);
            }
            let (records, skipped) = page?;
            for record in &records {
                let activity = record.to_activity();
                if activity.kind == ActivityKind::Sent {
                    spool.push(activity)?;
                    continue;
                }
                counted.entry(activity.kind).or_default().add(activity.at);
                if watermarks.get(activity.kind.as_str()).is_some_and(|w| activity.at < *w) {
                    held.push(activity);
                } else {
                    spool.push(activity)?;
                }
            }
            unreadable.extend(skipped);
        }
        drop(pages);
        let none_read = SliceCounts::default();
        for activity in held {
            let stored = run.progress.recent.streams.get(activity.kind.as_str());
            let fresh = counted.get(&activity.kind).unwrap_or(&none_read);
            if overlap::already_applied(stored, fresh, overlap::slice_of(activity.at)) {
                run.counts.already_applied += 1;
            } else {
                spool.push(activity)?;
            }
        }
        if let Some(fixed) = run.fixed_by_hand_over() {
            run.next_watermarks = fixed.watermarks.clone();
        } else {
            // Reported once, by the invocation that first read them.
            self.record_unreadable(run, unreadable).await?;
        }
        run.next_progress.recent = RecentCounts {
            // Every stream read, those that had no record too: a late record in an empty
            // quarter-hour must not pass for one applied.
            streams: STREAMS
                .iter()
                .filter(|kind| **kind != ActivityKind::Sent)
                .filter_map(|kind| {
                    let to = *run.next_watermarks.get(kind.as_str())?;
                    let counts = counted.get(kind).unwrap_or(&none_read);
                    Some((
                        kind.as_str().to_owned(),
                        counts.kept(overlap::read_from(to, overlap), to),
                    ))
                })
                .collect(),
        };
        Ok(Some(spool))
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
        Ok(self.store.add_run_failures(&run.record_id, &failures).await?)
    }

    /// People an admin queued for another attempt (`cm-sf-admin retry`): their whole activity
    /// is read again, whatever the watermarks say (CM cannot filter a campaign's activity by
    /// subscriber, so the streams are read from the start and filtered). Not in a dry run.
    /// `false`: the deadline came first.
    pub(super) async fn read_retried(
        &self,
        run: &mut CampaignRun<'_>,
        spool: &mut Spool,
        deadline: &Deadline,
    ) -> Result<bool, EngineError> {
        if run.mode.is_dry_run() {
            return Ok(true);
        }
        run.retried = self
            .store
            .failed_records(run.cm_id(), RETRY_BATCH)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect();
        if run.retried.is_empty() {
            return Ok(true);
        }
        let wanted: BTreeSet<String> = run.retried.iter().cloned().collect();
        for kind in STREAMS {
            let mut stream = if kind == ActivityKind::Sent {
                let Some(at) = self.sent_at_once(run).await? else {
                    continue;
                };
                self.cm.recipients(run.cm_id(), at)
            } else {
                self.cm.activity(run.cm_id(), kind, None)
            };
            while let Some(page) = stream.next_page().await? {
                if deadline.passed() {
                    return Ok(false);
                }
                for record in page
                    .iter()
                    .filter(|r| wanted.contains(&mapping::email::person_key(&r.email)))
                {
                    spool.push(record.to_activity())?;
                }
            }
            let _ = stream.take_unreadable(); // reported by the run that first met them
        }
        Ok(true)
    }

    /// The activity split into parts.
    pub(super) async fn split_parts(&self, run: &mut CampaignRun<'_>, spool: Spool) -> Result<Parts, EngineError> {
        run.counts.activities = spool.len() as u64;
        let fixed = run.fixed_by_hand_over().map(|c| (c.part_count as usize, c.parts_done));
        let mut parts = spool.into_parts(fixed.map(|(count, _)| count))?;
        run.part_count = parts.count();
        if run.part_count > 1 {
            run.counts.parts = run.part_count as u64;
        }
        // The parts an earlier invocation applied: their people's activity up to the fixed
        // watermarks is in Salesforce; anything later is read again by the next run.
        for _ in 0..fixed.map_or(0, |(_, done)| done) {
            parts.next_part()?;
            run.first_part = false;
        }
        Ok(parts)
    }

    /// The campaign's sent date for its cadence: as stored by an earlier sync, else looked up
    /// once (a paged listing of sent campaigns) and kept. Not looked up with the cadence off.
    pub(super) async fn sent_at_for_cadence(
        &self,
        run: &mut CampaignRun<'_>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(known) = run.progress.sent_at {
            return Ok(Some(known));
        }
        if !run.settings.sync_cadence.enabled && run.sent_at.is_none() {
            return Ok(None);
        }
        let found = self.sent_at_once(run).await?;
        run.next_progress.sent_at = found;
        Ok(found)
    }

    /// The campaign's sent date, looked up once per run.
    async fn sent_at_once(&self, run: &mut CampaignRun<'_>) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(known) = run.sent_at {
            return Ok(known);
        }
        let found = self.sent_at(run.settings, run.cm_id()).await?;
        run.sent_at = Some(found);
        Ok(found)
    }

    /// The campaign's sent date, from the sent-campaign lists of the configured clients.
    async fn sent_at(&self, settings: &mapping::Settings, cm_id: &str) -> Result<Option<DateTime<Utc>>, EngineError> {
        for client in &settings.cm_clients {
            let sent = self.cm.sent_campaigns(client, &Default::default()).await?;
            if let Some(campaign) = sent.iter().find(|c| c.campaign_id == cm_id) {
                return Ok(Some(self.cm.to_utc(&campaign.sent_date)?));
            }
        }
        Ok(None)
    }
}
