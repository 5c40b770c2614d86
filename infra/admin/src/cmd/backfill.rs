//! `backfill --from --to [--dry-run] [--max]`: create and link SF Campaigns for CM campaigns of a
//! window of whole days in the CM time zone (the retrospective creation auto-create never does).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use engine::admin::BackfillResult;
use engine::autocreate::AutoCreateOutcome;
use lambda_support::Invocation;
use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(
    context: &Context,
    from: NaiveDate,
    to: NaiveDate,
    dry_run: bool,
    max: usize,
) -> Result<Report, Failure> {
    let Invocation { engine, settings } = context.invocation().await?;
    let zone = settings.zone();
    let (start, end) = window(from, to, zone)?;
    context.progress(&format!(
        "looking for unlinked CM campaigns from {from} to {to} ({zone})..."
    ));
    let candidates = engine.backfill_candidates(start, end).await?;
    if candidates.len() > max {
        return Err(Failure(format!(
            "{} campaigns are in the window, more than --max {max}: narrow the window or raise --max; nothing was created",
            candidates.len()
        )));
    }
    let mut results = Vec::new();
    for (i, campaign) in candidates.iter().enumerate() {
        let outcome = if dry_run {
            None
        } else {
            let outcome = engine.backfill_one(&settings, campaign).await?;
            context.progress(&format!(
                "[{}/{}] {} ({}): {}",
                i + 1,
                candidates.len(),
                campaign.name,
                campaign.cm_campaign_id,
                describe(&outcome)
            ));
            Some(outcome)
        };
        results.push(BackfillResult {
            campaign: campaign.clone(),
            outcome,
        });
    }
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

/// `[from 00:00, to 24:00)` in the CM time zone, in UTC.
fn window(from: NaiveDate, to: NaiveDate, zone: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>), Failure> {
    if from > to {
        return Err(Failure(format!("--from {from} is after --to {to}")));
    }
    let start = |day: NaiveDate| {
        zone.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Failure(format!("{day} has no midnight in {zone}")))
    };
    let end = to
        .succ_opt()
        .ok_or_else(|| Failure(format!("--to {to} is out of range")))?;
    Ok((start(from)?, start(end)? - chrono::Duration::milliseconds(1)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_backfill_window_covers_whole_days_in_the_cm_time_zone() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let (from, to) = window(day("2026-01-01"), day("2026-01-31"), chrono_tz::Australia::Sydney).unwrap();
        assert_eq!(from.to_rfc3339(), "2025-12-31T13:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-01-31T12:59:59.999+00:00");
        assert!(window(day("2026-02-01"), day("2026-01-01"), chrono_tz::UTC).is_err());
    }
}
