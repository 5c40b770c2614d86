//! `runs`, `run`: recent sync runs, and one run with its failed and skipped records.

use serde_json::json;
use state::RunStore;

use crate::context::{Context, Failure, Report};

/// `runs --last N`: newest first, with their non-zero counts.
pub async fn recent(context: &Context, last: usize) -> Result<Report, Failure> {
    let runs = context.store().await?.recent_runs(last).await?;
    let mut text = String::new();
    if runs.is_empty() {
        text += "no runs yet";
    }
    for run in &runs {
        let counts: Vec<String> = run
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        // A campaign sync's id names its campaign; other runs (a webhook delivery) name their scope.
        let scope = if run.run_id.ends_with(&run.scope) {
            String::new()
        } else {
            format!("  {}", run.scope)
        };
        text += &format!(
            "{}  {}  {:?}  failures={}  {}{scope}\n",
            run.run_id,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            run.status,
            run.failure_count,
            counts.join(" ")
        );
    }
    Ok(Report::new(text, json!(runs)))
}

/// `runs --last N --email ADDR`: the failures of one person in the newest N runs, found by the
/// key of the address (what run records keep instead of it).
pub async fn of_person(context: &Context, last: usize, email: &str) -> Result<Report, Failure> {
    let store = context.store().await?;
    let found = engine::admin::person::failures_of(&store, email, last).await?;
    let mut text = String::new();
    for (run, failures) in &found {
        for failure in failures {
            text += &format!(
                "{}  {}  {}\n",
                run.run_id,
                run.started_at.format("%Y-%m-%d %H:%M:%S"),
                failure_line(failure)
            );
        }
    }
    if found.is_empty() {
        text = format!(
            "no failures of {} in the last {last} runs",
            mapping::email::redact_email(email)
        );
    }
    let found: Vec<_> = found
        .iter()
        .map(|(run, failures)| json!({"run": run, "failures": failures}))
        .collect();
    Ok(Report::new(text, json!(found)))
}

/// `run ID`: counts, and every failed or skipped record with its reason.
pub async fn one(context: &Context, run_id: &str) -> Result<Report, Failure> {
    let Some((run, failures)) = context.store().await?.run(run_id).await? else {
        return Err(Failure(format!("no run `{run_id}` (see `cm-sf-admin runs`)")));
    };
    let mut text = format!(
        "run {}\nscope    {}\nstarted  {}\nended    {}\nstatus   {:?}\n",
        run.run_id,
        run.scope,
        run.started_at,
        run.ended_at.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        run.status
    );
    for (key, n) in &run.counts {
        text += &format!("  {key}: {n}\n");
    }
    let (choices, failures): (Vec<_>, Vec<_>) = failures
        .into_iter()
        .partition(|f| f.code.as_deref() == Some(engine::campaign::MATCH_CHOICE));
    if !choices.is_empty() {
        text += &format!(
            "{} emails shared by several people (match_preference chose one):\n",
            choices.len()
        );
    }
    for choice in &choices {
        text += &format!("  {}  {}\n", choice.record, choice.reason);
    }
    if failures.is_empty() {
        text += "no failed or skipped records\n";
    } else {
        text += &format!("{} failed or skipped records:\n", failures.len());
    }
    for failure in &failures {
        text += &format!("  {}\n", failure_line(failure));
    }
    Ok(Report::new(
        text,
        json!({"run": run, "failures": failures, "choices": choices}),
    ))
}

/// `record  reason [CODE]`.
fn failure_line(failure: &state::RunFailure) -> String {
    format!(
        "{}  {}{}",
        failure.record,
        failure.reason,
        failure.code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default()
    )
}
