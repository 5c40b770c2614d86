//! `sync [--campaign ID] [--dry-run]`: request a sync through the schedule's own event, or print
//! the plan of one without writing anything.

use engine::Deadline;
use engine::campaign::{CampaignOutcome, Mode};
use lambda_support::Invocation;
use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, campaign: Option<String>, dry_run: bool) -> Result<Report, Failure> {
    let Invocation { engine, settings } = context.invocation().await?;
    if !dry_run {
        let run_id = engine::admin::sync_request::request_sync(
            engine.store.as_ref(),
            &engine.publisher,
            campaign.as_deref(),
            "admin",
        )
        .await?;
        return Ok(Report::new(
            format!("sync requested (run {run_id}); `cm-sf-admin runs` shows it when done"),
            json!({"run_id": run_id, "campaign": campaign}),
        ));
    }
    let run_id = engine::new_run_id();
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
