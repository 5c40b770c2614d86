//! Stage `due`: which linked campaigns a scheduled run syncs (issue #20): those their cadence
//! makes due, the retired ones whose daily check finds new activity; and for the hot schedule,
//! the young ones.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::Event;
use events::publisher::EventSink;
use futures::StreamExt;
use mapping::cadence::NextSync;
use mapping::{ActivityKind, Settings};
use serde::Serialize;
use state::{Clock, ClockStore, LeaseStore, LinkStore, Scope, WatermarkStore};

use super::Tick;
use crate::core::{EngineError, link_map, publish};

/// Retired campaigns checked side by side (one CM summary each).
const RETIRED_CHECKS_IN_FLIGHT: usize = 4;

/// The linked campaigns a scheduled run syncs.
#[derive(Debug, Clone, Default)]
pub(crate) struct DueSyncs {
    /// Due by their cadence, or never scheduled yet.
    pub due: Vec<String>,
    /// Retired, and their day's check found new activity.
    pub active_again: Vec<String>,
    /// Not synced at this run.
    pub not_due: usize,
}

/// What a run of the hot schedule did.
#[derive(Debug, Clone, Serialize)]
pub struct HotRunOutcome {
    /// The run.
    pub run_id: String,
    /// Sync requests published (campaigns in their first hours).
    pub syncs_requested: usize,
    /// A scheduled run held the lease (it syncs these campaigns itself).
    pub busy: bool,
}

impl<S: WatermarkStore, P> Tick<'_, S, P> {
    /// The campaigns of `links` a scheduled run syncs, on CM's clock.
    pub(crate) async fn due_syncs(
        &self,
        settings: &Settings,
        links: &BTreeMap<String, String>,
    ) -> Result<DueSyncs, EngineError> {
        let schedule = self.engine.store.sync_schedule().await?;
        let cm_now = self.engine.cm.system_date().await?.to_utc(settings.zone());
        let mut due = Vec::new();
        let mut retired = Vec::new();
        for cm_id in links.keys() {
            match schedule.get(cm_id) {
                // A link no sync has scheduled yet is due.
                None => due.push(cm_id.clone()),
                Some(next) if next.is_due(cm_now) => due.push(cm_id.clone()),
                Some(NextSync::Retired) => retired.push(cm_id.clone()),
                Some(NextSync::At { .. }) => {}
            }
        }
        let active_again = self.check_retired(settings, &retired, cm_now).await?;
        let not_due = links.len() - due.len() - active_again.len();
        Ok(DueSyncs {
            due,
            active_again,
            not_due,
        })
    }

    /// Once a day (the first run at or past the day's end sync), each retired campaign's summary
    /// counts are compared with those its last sync saw: one CM call each, no SF call. Those
    /// with new activity are returned (their sync makes them hourly again until they are
    /// quiet). A check that failed for a transient reason is made again at the next run.
    async fn check_retired(
        &self,
        settings: &Settings,
        retired: &[String],
        cm_now: DateTime<Utc>,
    ) -> Result<Vec<String>, EngineError> {
        if retired.is_empty() {
            return Ok(Vec::new());
        }
        let day_end = mapping::cadence::last_day_end(cm_now, settings.zone());
        if self
            .engine
            .store
            .last_done(Clock::RetiredCheck)
            .await?
            .is_some_and(|at| at >= day_end)
        {
            return Ok(Vec::new());
        }
        let checks = futures::stream::iter(retired)
            .map(|cm_id| async move { (cm_id, self.has_new_activity(cm_id).await) })
            .buffer_unordered(RETIRED_CHECKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut active = Vec::new();
        let mut check_again = false;
        for (cm_id, checked) in checks {
            match checked {
                Ok(true) => active.push(cm_id.clone()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(campaign = %cm_id, error = %crate::core::redacted(&error), retryable = error.is_retryable(), "retired campaign not checked");
                    check_again |= error.is_retryable();
                }
            }
        }
        if !check_again {
            self.engine.store.mark_done(Clock::RetiredCheck, day_end).await?;
        }
        tracing::info!(
            retired = retired.len(),
            active_again = active.len(),
            "retired campaigns checked"
        );
        active.sort();
        Ok(active)
    }

    /// Whether CM holds activity of the campaign its syncs have not read: its summary's counts
    /// changed, or (those count recipients, so a repeat bounce or open changes none of them) a
    /// stream's newest record is dated at or after where the syncs read that stream to.
    async fn has_new_activity(&self, cm_id: &str) -> Result<bool, EngineError> {
        let summary = self.engine.cm.summary(cm_id).await?.to_stats();
        let progress = self.engine.store.campaign_progress(cm_id).await?;
        let watermarks = self.engine.store.watermarks(cm_id).await?;
        if !mapping::probe::nothing_new_since(
            progress.probe.as_ref(),
            &summary,
            mapping::probe::read_up_to(&watermarks),
        ) {
            return Ok(true);
        }
        for kind in ActivityKind::ALL.into_iter().filter(|k| k.is_interaction()) {
            let Some(newest) = self.engine.cm.newest_activity(cm_id, kind).await? else {
                continue;
            };
            if watermarks.get(kind.as_str()).is_none_or(|read_to| newest >= *read_to) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl<S: LeaseStore + LinkStore + WatermarkStore, P: EventSink> Tick<'_, S, P> {
    /// A run of the hot schedule: a sync requested for each linked campaign in its first
    /// `hot_hours` (the cadence's `hot_hours`) that is due. Nothing else: the scheduled run does
    /// discovery, links and lists, and syncs these campaigns as well.
    pub async fn run_hot(&self, settings: &Settings, run_id: &str) -> Result<HotRunOutcome, EngineError> {
        // One hot run at a time, under a lease of its own: the scheduled run never meets it
        // (a campaign both request is synced once: its own lease makes the second request wait).
        let requested = self
            .under_lease(Scope::HotSchedule, run_id, async || {
                self.request_hot_syncs(settings, run_id).await
            })
            .await?;
        Ok(HotRunOutcome {
            run_id: run_id.to_owned(),
            syncs_requested: requested.unwrap_or(0),
            busy: requested.is_none(),
        })
    }

    async fn request_hot_syncs(&self, settings: &Settings, run_id: &str) -> Result<usize, EngineError> {
        if settings.sync_cadence.hot_hours == 0 {
            return Ok(0);
        }
        let links = link_map(self.engine.store.as_ref()).await?;
        let schedule = self.engine.store.sync_schedule().await?;
        let cm_now = self.engine.cm.system_date().await?.to_utc(settings.zone());
        let events: Vec<Event> = links
            .keys()
            .filter(|cm_id| schedule.get(*cm_id).is_some_and(|next| next.is_due_hot(cm_now)))
            .map(|cm_id| Event::sync_requested(run_id, Some(cm_id), false, "hot schedule"))
            .collect();
        publish(&self.engine.publisher, &events).await?;
        tracing::info!(syncs = events.len(), "hot schedule run done");
        Ok(events.len())
    }
}
