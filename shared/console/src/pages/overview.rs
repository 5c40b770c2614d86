//! The overview: the last scheduled run, and the runs of the last 24 hours that need a look.

use askama::Template;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use state::Scope;

use super::runs::{RunRow, has_trouble};
use super::{Chrome, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    last_scheduled: Option<RunRow>,
    troubled: Vec<RunRow>,
    settings_version: Option<u64>,
}

/// The overview page.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    let (runs, settings) = match tokio::join!(app.store.recent_runs(200), app.store.load_settings()) {
        (Ok(runs), Ok(settings)) => (runs, settings),
        (Err(error), _) | (_, Err(error)) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The state could not be read: {error}"),
            );
        }
    };
    let since = Utc::now() - Duration::hours(24);
    render(
        StatusCode::OK,
        &OverviewPage {
            chrome: Chrome::of(&current, "overview"),
            last_scheduled: runs
                .iter()
                .find(|r| r.scope == Scope::ScheduledRun.key())
                .map(RunRow::of),
            troubled: runs
                .iter()
                .filter(|r| r.started_at >= since && has_trouble(r))
                .map(RunRow::of)
                .collect(),
            settings_version: settings.map(|s| s.version),
        },
    )
}
