//! `sync [--campaign ID] [--dry-run]`: request a sync through the schedule's own event, or print
//! the plan of one without writing anything.

use engine::Deadline;
use engine::campaign::{CampaignOutcome, Mode};
use lambda_support::Invocation;
use serde_json::json;
use state::LinkStore;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, campaign: Option<String>, dry_run: bool) -> Result<Report, Failure> {
    let Invocation { engine, settings } = context.invocation().await?;
    let run_id = engine::new_run_id();
    if !dry_run {
        if let Some(cm) = &campaign
            && engine.store.link(cm).await?.is_none()
        {
            return Err(Failure(format!(
                "CM campaign {cm} is not linked (see `cm-sf-admin links`)"
            )));
        }
        engine
            .publish(&[events::Event::sync_requested(
                &run_id,
                campaign.as_deref(),
                false,
                "admin",
            )])
            .await?;
        return Ok(Report::new(
            format!("sync requested (run {run_id}); `cm-sf-admin runs` shows it when done"),
            json!({"run_id": run_id, "campaign": campaign}),
        ));
    }
    context.progress("planning (nothing is written)...");
    let plan = match &campaign {
        Some(cm) => match engine
            .sync_campaign(&settings, cm, &run_id, Mode::DryRun, Deadline::none())
            .await?
        {
            CampaignOutcome::Done { plan, .. } => mapping::SyncPlan {
                campaigns: vec![*plan],
                ..Default::default()
            },
            other => return Err(Failure(format!("no plan: {other:?}"))),
        },
        None => engine
            .plan_scheduled(&settings, &run_id)
            .await?
            .plan
            .unwrap_or_default(),
    };
    Ok(Report::new(plan.report(mapping::plan::EmailDisplay::Full), json!(plan)))
}
