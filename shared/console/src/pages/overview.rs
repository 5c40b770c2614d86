//! The overview: the last scheduled run, and the runs of the last 24 hours that need a look.

use askama::Template;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use mapping::cadence::NextSync;
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
    /// Webhook deliveries not fully applied yet: (list, received, events, waits for an admin).
    webhooks_waiting: Vec<(String, String, usize, bool)>,
    /// Campaigns Salesforce refused to create: (CM campaign, reason).
    refused_creations: Vec<(String, String)>,
    /// The next scheduled syncs: (CM campaign, when).
    next_syncs: Vec<(String, String)>,
}

/// Rows shown in each of the overview's lists at most.
const SHOWN: usize = 10;

/// The overview page.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    let store = app.store.as_ref();
    let refused_scope = Scope::AutocreateRefused.key();
    let (runs, settings, waiting, refused, schedule) = tokio::join!(
        store.recent_runs(200),
        store.load_settings(),
        store.webhook_backlog(SHOWN),
        store.failed_records(&refused_scope, SHOWN),
        store.sync_schedule(),
    );
    let read = (|| Ok::<_, state::StoreError>((runs?, settings?, waiting?, refused?, schedule?)))();
    let (runs, settings, waiting, refused, schedule) = match read {
        Ok(read) => read,
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The state could not be read: {error}"),
            );
        }
    };
    let since = Utc::now() - Duration::hours(24);
    let mut next: Vec<(chrono::DateTime<Utc>, String)> = schedule
        .into_iter()
        .filter_map(|(cm, next)| match next {
            NextSync::At { at, .. } => Some((at, cm)),
            NextSync::Retired => None,
        })
        .collect();
    next.sort();
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
            webhooks_waiting: waiting
                .iter()
                .map(|batch| {
                    (
                        batch.list_id.clone(),
                        batch.received_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        batch.events,
                        batch.parked,
                    )
                })
                .collect(),
            refused_creations: refused
                .into_iter()
                .map(|r| (r.key, mapping::email::redact_emails_in(&r.reason)))
                .collect(),
            next_syncs: next
                .into_iter()
                .take(SHOWN)
                .map(|(at, cm)| (cm, at.format("%Y-%m-%d %H:%M UTC").to_string()))
                .collect(),
        },
    )
}
