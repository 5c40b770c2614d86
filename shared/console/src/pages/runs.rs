//! Runs: the newest first (optionally only those with failures), and one run with its failures
//! grouped by code: the same records `cm-sf-admin runs` and `cm-sf-admin run ID` show.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::EngineError;
use engine::admin::Retry;
use serde::Deserialize;
use state::{RunRecord, RunStatus};

use super::{Chrome, refusal, render, still_permitted};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// Runs listed at most.
const RUNS_SHOWN: usize = 100;

/// A run as a row.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Its id.
    pub id: String,
    /// What it covered.
    pub scope: String,
    /// Start, UTC.
    pub started: String,
    /// Status, as words.
    pub status: String,
    /// Whether it failed or has failures.
    pub bad: bool,
    /// Failures stored.
    pub failures: u64,
    /// Its counts, `name n` each.
    pub counts: String,
}

impl RunRow {
    /// The row of `run`.
    pub fn of(run: &RunRecord) -> RunRow {
        RunRow {
            id: run.run_id.clone(),
            scope: run.scope.clone(),
            started: run.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            status: status_words(run.status).to_owned(),
            bad: has_trouble(run),
            failures: run.failure_count,
            counts: run
                .counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{} {n}", k.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Whether a run needs an admin's look.
pub fn has_trouble(run: &RunRecord) -> bool {
    run.failure_count > 0 || matches!(run.status, RunStatus::Failed | RunStatus::Abandoned)
}

fn status_words(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::CompletedWithFailures => "completed with failures",
        RunStatus::Failed => "failed",
        RunStatus::Continued => "continuing",
        RunStatus::Abandoned => "abandoned",
    }
}

/// The list's filter.
#[derive(Debug, Deserialize)]
pub struct Filter {
    #[serde(default)]
    failed: Option<String>,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    chrome: Chrome,
    runs: Vec<RunRow>,
    failed_only: bool,
    /// The person search's error, next to its field.
    search_error: Option<String>,
}

/// Runs searched for a person's failures.
const RUNS_SEARCHED: usize = 200;

/// The newest runs (`?failed=1`: only those with failures or that failed).
pub async fn list<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Response {
    let failed_only = filter.failed.is_some_and(|f| f == "1");
    let runs = match app.store.recent_runs(RUNS_SHOWN).await {
        Ok(runs) => runs,
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Runs could not be read: {error}"),
            );
        }
    };
    let runs = runs
        .iter()
        .filter(|r| !failed_only || has_trouble(r))
        .map(RunRow::of)
        .collect();
    render(
        StatusCode::OK,
        &RunsPage {
            chrome: Chrome::of(&current, "runs"),
            runs,
            failed_only,
            search_error: None,
        },
    )
}

/// Failures of one code.
#[derive(Debug, Clone)]
pub struct FailureGroup {
    /// The code (`UNABLE_TO_LOCK_ROW`, `ABANDONED`, ...).
    pub code: String,
    /// Record (redacted) and reason, each.
    pub failures: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    run: RunRow,
    groups: Vec<FailureGroup>,
    /// People among the failures: what Retry would queue.
    people: usize,
    /// People just queued by Retry (after its redirect).
    queued: Option<usize>,
}

/// What a run's page is asked after a retry.
#[derive(Debug, Deserialize)]
pub struct Shown {
    #[serde(default)]
    queued: Option<usize>,
}

/// One run and its failures, grouped by code.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(run_id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    let (run, failures) = match app.store.run(&run_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return refusal(
                StatusCode::NOT_FOUND,
                "There is no run with this id (runs are kept run_retention_days).",
            );
        }
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The run could not be read: {error}"),
            );
        }
    };
    let people = failures
        .iter()
        .filter_map(|f| f.person.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut by_code: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for failure in failures {
        by_code
            .entry(failure.code.unwrap_or_else(|| "(no code)".into()))
            .or_default()
            .push((failure.record, mapping::email::redact_emails_in(&failure.reason)));
    }
    render(
        StatusCode::OK,
        &RunPage {
            chrome: Chrome::of(&current, "runs"),
            run: RunRow::of(&run),
            groups: by_code
                .into_iter()
                .map(|(code, failures)| FailureGroup { code, failures })
                .collect(),
            people,
            queued: shown.queued,
        },
    )
}

/// Retry failed people: queues the people a run failed on and requests a sync of its campaign
/// (the same operation as `cm-sf-admin retry`), then shows the run again with what was queued.
pub async fn retry<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(run_id): Path<String>,
) -> Response {
    if let Err(refused) = still_permitted(&app, &current).await {
        return refused;
    }
    match Retry::new(app.store.as_ref(), app.publisher.as_ref())
        .queue(&run_id, &current.user_id)
        .await
    {
        Ok(queued) => {
            tracing::info!(user = %current.user_id, run = %run_id, queued = queued.queued, retry_run = %queued.run_id, "retry queued from the console");
            let path = format!(
                "/runs/{}?queued={}",
                form_urlencoded::byte_serialize(run_id.as_bytes()).collect::<String>(),
                queued.queued
            );
            Redirect::to(&path).into_response()
        }
        Err(EngineError::Invalid(reason)) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &reason),
        Err(error) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Nothing was queued: {error}. Try again."),
        ),
    }
}

/// The person search (a POST, so no address is in a URL or an access log).
#[derive(Debug, Deserialize)]
pub struct Search {
    email: String,
}

/// A person's failures, one group per run.
#[derive(Debug, Clone)]
pub struct PersonRun {
    /// The run.
    pub run: RunRow,
    /// Code and reason of each of their failures in it.
    pub failures: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    chrome: Chrome,
    /// The address, redacted.
    person: String,
    runs: Vec<PersonRun>,
    searched: usize,
}

/// Find a person's failures by address (the same search as `cm-sf-admin runs --email`).
pub async fn search<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(search): Form<Search>,
) -> Response {
    let email = search.email.trim();
    match engine::admin::person::failures_of(app.store.as_ref(), email, RUNS_SEARCHED).await {
        Ok(found) => render(
            StatusCode::OK,
            &PersonPage {
                chrome: Chrome::of(&current, "runs"),
                person: mapping::email::redact_email(&mapping::email::normalize_email(email)),
                runs: found
                    .iter()
                    .map(|(run, failures)| PersonRun {
                        run: RunRow::of(run),
                        failures: failures
                            .iter()
                            .map(|f| {
                                (
                                    f.code.clone().unwrap_or_else(|| "(no code)".into()),
                                    mapping::email::redact_emails_in(&f.reason),
                                )
                            })
                            .collect(),
                    })
                    .collect(),
                searched: RUNS_SEARCHED,
            },
        ),
        Err(EngineError::Invalid(reason)) => {
            let runs = app.store.recent_runs(RUNS_SHOWN).await.unwrap_or_default();
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RunsPage {
                    chrome: Chrome::of(&current, "runs"),
                    runs: runs.iter().map(RunRow::of).collect(),
                    failed_only: false,
                    search_error: Some(reason),
                },
            )
        }
        Err(error) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The runs could not be searched: {error}"),
        ),
    }
}
