//! `backfill --from --to [--dry-run] [--max]`: create and link SF Campaigns for CM campaigns of a
//! window of whole days in the CM time zone (the retrospective creation auto-create never does).

use chrono::NaiveDate;
use chrono_tz::Tz;
use engine::admin::backfill::BackfillRequest;
use engine::admin::{BackfillResult, CLI_ACTOR};
use engine::autocreate::AutoCreateOutcome;
use lambda_support::Invocation;
use mapping::autocreate::backfill_window;
use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(
    context: &Context,
    from: NaiveDate,
    to: NaiveDate,
    dry_run: bool,
    max: usize,
) -> Result<Report, Failure> {
    if from > to {
        return Err(Failure(format!("--from {from} is after --to {to}")));
    }
    let Invocation { engine, settings } = context.invocation().await?;
    let zone = settings.zone();
    context.progress(&format!(
        "looking for unlinked CM campaigns from {from} to {to} ({zone})..."
    ));
    let request = BackfillRequest {
        from,
        to,
        max,
        dry_run,
        max_named: "--max",
    };
    let results = engine
        .backfill(&settings, request, CLI_ACTOR, |i, n, result| {
            if let Some(outcome) = &result.outcome {
                context.progress(&format!(
                    "[{i}/{n}] {} ({}): {}",
                    result.campaign.name,
                    result.campaign.cm_campaign_id,
                    describe(outcome)
                ));
            }
        })
        .await?;
    let (start, end) = backfill_window(from, to, zone).map_err(Failure)?;
    Ok(Report::new(
        text(&results, zone, dry_run),
        json!({"dry_run": dry_run, "from": start, "to": end, "campaigns": results}),
    ))
}

fn describe(outcome: &AutoCreateOutcome) -> String {
    match outcome {
        AutoCreateOutcome::Linked {
            sf_campaign_id,
            created,
        } => format!(
            "{} SF Campaign {sf_campaign_id}",
            if *created { "created" } else { "linked existing" }
        ),
        AutoCreateOutcome::Skipped { reason } => format!("skipped: {reason}"),
        AutoCreateOutcome::Refused { reason } => format!("Salesforce refused it: {reason}"),
    }
}

fn text(results: &[BackfillResult], zone: Tz, dry_run: bool) -> String {
    let mut text = String::new();
    for result in results {
        let when = result
            .campaign
            .created_or_sent()
            .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        text += &format!(
            "{}  {}  {:?}  {}\n",
            result.campaign.cm_campaign_id, when, result.campaign.state, result.campaign.name
        );
    }
    text += &if dry_run {
        format!(
            "{} campaign(s) would get an SF Campaign (dry run: nothing created)\n",
            results.len()
        )
    } else {
        format!("{} campaign(s) backfilled; each is synced now\n", results.len())
    };
    text
}
