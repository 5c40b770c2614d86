//! `retry ID`: queue the people a run failed on for one more attempt, and sync their campaign.

use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, run_id: &str) -> Result<Report, Failure> {
    let queued = context
        .engine()
        .await?
        .retry_run(run_id, engine::admin::CLI_ACTOR)
        .await?;
    let others = if queued.not_queued > 0 {
        format!(
            "; {} other failures (fields, statistics) are written again by every sync",
            queued.not_queued
        )
    } else {
        String::new()
    };
    Ok(Report::new(
        format!(
            "queued {} people of run {run_id} for another attempt; sync of CM campaign {} requested (run {}){others}",
            queued.queued, queued.cm_campaign_id, queued.run_id,
        ),
        json!(queued),
    ))
}
