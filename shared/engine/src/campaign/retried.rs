//! Stages `retried` and `split`: the whole activity of the people an admin queued for another
//! attempt, then everything read cut into parts (a continuation cuts the same parts and skips
//! those done).

use std::collections::BTreeSet;

use events::publisher::EventSink;
use mapping::ActivityKind;
use state::Scope;

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::{Deadline, EngineError};
use crate::spool::{Parts, Spool};

/// At most this many queued people are retried per sync; the rest wait for the next one.
const RETRY_BATCH: usize = 5_000;

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
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
            .engine
            .store
            .failed_records(&Scope::Campaign(run.cm_id()).key(), RETRY_BATCH)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect();
        if run.retried.is_empty() {
            return Ok(true);
        }
        let wanted: BTreeSet<String> = run.retried.iter().cloned().collect();
        for kind in ActivityKind::ALL {
            let mut stream = if kind.is_interaction() {
                self.engine.cm.activity(run.cm_id(), kind, None)
            } else {
                let Some(at) = self.sent_at_once(run).await? else {
                    continue;
                };
                self.engine.cm.recipients(run.cm_id(), at)
            };
            while let Some(page) = stream.next_page().await? {
                if deadline.passed() {
                    return Ok(false);
                }
                for record in page.iter().filter(|r| {
                    mapping::email::person_keys(&r.email)
                        .iter()
                        .any(|key| wanted.contains(key))
                }) {
                    spool.push(record.to_activity())?;
                }
            }
            let _ = stream.take_unreadable(); // reported by the run that first met them
        }
        Ok(true)
    }

    /// The activity split into parts.
    pub(super) fn split_parts(&self, run: &mut CampaignRun<'_>, spool: Spool) -> Result<Parts, EngineError> {
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
}
