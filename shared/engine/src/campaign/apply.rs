//! Stage `apply`: one part's plan written to Salesforce and its per-record failures recorded
//! (`write_part`, while the next part is planned), then taken into the run (`take_written`).

use events::publisher::EventSink;
use mapping::Settings;
use mapping::plan::CampaignPlan;
use state::RunFailure;

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::EngineError;
use crate::salesforce_io::writes::{self, Applied, StatusesWritten};

/// The code a run record gives a choice among several people with one email (not a failure:
/// a duplicate to merge).
pub const MATCH_CHOICE: &str = "MATCH_CHOICE";

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Writes the statuses a part's plan creates or corrects, ahead of the rest of the part
    /// (see [`Self::write_part`]): the next part's plan must see them.
    pub(super) async fn write_statuses(&self, plan: &CampaignPlan) -> Result<StatusesWritten, EngineError> {
        Ok(writes::write_statuses(&self.engine.sf, plan).await?)
    }

    /// Writes one part's plan to Salesforce (its statuses unless written ahead) and its
    /// failures (and the plan's skips and choices) to the run record. It takes nothing of the
    /// run but its settings and record id: the next part is planned meanwhile.
    pub(super) async fn write_part(
        &self,
        settings: &Settings,
        record_id: &str,
        plan: &CampaignPlan,
        statuses_written: Option<StatusesWritten>,
    ) -> Result<Applied, EngineError> {
        let sf = &self.engine.sf;
        let mut applied = match statuses_written {
            Some(statuses) => writes::apply_after_statuses(sf, settings, plan, statuses).await?,
            None => writes::apply(sf, settings, plan).await?,
        };
        let mut failures = std::mem::take(&mut applied.failures);
        failures.extend(
            plan.skips
                .iter()
                .map(|skip| RunFailure::new(&skip.subject, skip.reason.label(), None)),
        );
        failures.extend(plan.choices.iter().map(|choice| {
            RunFailure::new(
                &choice.email,
                &choice.describe(settings.match_preference),
                Some(MATCH_CHOICE),
            )
        }));
        self.engine.store.add_run_failures(record_id, &failures).await?;
        Ok(applied)
    }

    /// Takes a written part into the run: the writer's counts, what failed transiently, the
    /// statistics Salesforce now holds, and the plan into the total.
    pub(super) fn take_written(&self, run: &mut CampaignRun<'_>, plan: CampaignPlan, applied: Applied) {
        run.counts.add_written(&applied.counts);
        run.transient_failures |= applied.transient_failures;
        if !applied.statistics_failed && plan.statistics.missing_fields.is_empty() {
            // Salesforce holds every mapped value now: the next sync compares with these.
            if let Some(written) = run.statistics_target.take() {
                run.next_progress.statistics = Some(written);
            }
        }
        run.transient_people.extend(applied.transient_people);
        // A campaign in one part returns its whole plan; a larger one keeps what an admin
        // reads (statuses, statistics, skips), not a million member rows.
        run.total.absorb(plan, run.first_part);
        if run.part_count > 1 {
            run.total.members_to_add.clear();
            run.total.member_updates.clear();
            run.total.person_updates.clear();
        }
        run.first_part = false;
    }
}
