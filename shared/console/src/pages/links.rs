//! Links: each CM campaign (its name and send date from the catalog) ↔ SF Campaign (its name
//! read as the admin), with its last sync, its cadence band and when it syncs next; Sync now
//! (the same request as `cm-sf-admin sync --campaign`), Dry run (`sync --dry-run`, planned by
//! the sync function) and Unlink after a confirmation (the same operation as
//! `cm-sf-admin unlink`, the link field cleared with the admin's own token).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use engine::EngineError;
use engine::admin::LinkAdmin;
use engine::admin::sync_request::request_sync;
use mapping::cadence::{NextSync, cadence_band};
use serde::Deserialize;
use state::LinkRecord;

use super::catalog::{state_words, when};
use super::{Chrome, as_permitted_admin, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// Links listed at most (the most recently linked).
const LINKS_SHOWN: usize = 500;
/// Recent runs read for the links' last syncs.
const RUNS_READ: usize = 1_000;

/// One link as a row.
#[derive(Debug, Clone)]
pub struct LinkRow {
    /// The CM campaign id.
    pub cm: String,
    /// The CM campaign's name, from the catalog (empty when the catalog lacks it).
    pub cm_name: String,
    /// Its send date or state, from the catalog.
    pub cm_state: String,
    /// Its last sync (run start and status), among the recent runs.
    pub last: String,
    /// Its cadence band, in words.
    pub band: String,
    /// The SF Campaign id.
    pub sf: String,
    /// The SF Campaign's name (read as the admin), or its id.
    pub name: String,
    /// How it was made.
    pub origin: String,
    /// When, UTC.
    pub linked_at: String,
    /// When the schedule syncs it next, in words.
    pub next: String,
}

#[derive(Template)]
#[template(path = "links.html")]
struct LinksPage {
    chrome: Chrome,
    links: Vec<LinkRow>,
    total: usize,
    notice: Option<String>,
    problem: Option<String>,
    catalog_at: Option<String>,
}

/// What the list is told after an action.
#[derive(Debug, Deserialize)]
pub struct Done {
    requested: Option<String>,
    unlinked: Option<String>,
    linked: Option<String>,
    backfill: Option<String>,
}

fn next_words(next: Option<&NextSync>) -> String {
    match next {
        None => "at the next scheduled run".to_owned(),
        Some(NextSync::At { at, hot }) => format!(
            "{}{}",
            at.format("%Y-%m-%d %H:%M UTC"),
            if *hot { " (hot: every 5 minutes)" } else { "" }
        ),
        Some(NextSync::Retired) => "retired: checked daily, synced on demand".to_owned(),
    }
}

fn origin_words(link: &LinkRecord) -> String {
    serde_json::to_value(link.origin)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

/// The links, newest first, with their SF names and next syncs.
pub async fn list<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Query(done): Query<Done>,
) -> Response {
    let (links, schedule) = match (app.store.links().await, app.store.sync_schedule().await) {
        (Ok(links), Ok(schedule)) => (links, schedule),
        (Err(error), _) | (_, Err(error)) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The links could not be read: {error}"),
            );
        }
    };
    let (catalog, runs, settings) = match (
        super::catalog::read(&app).await,
        app.store.recent_runs(RUNS_READ).await,
        super::settings::load(&app).await,
    ) {
        (Ok(catalog), Ok(runs), Ok(stored)) => (catalog, runs, stored.settings),
        (Err(page), _, _) | (_, _, Err(page)) => return page,
        (_, Err(error), _) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The runs could not be read: {error}"),
            );
        }
    };
    // Newest first: the first run seen of a campaign is its last sync.
    let mut last_runs: BTreeMap<&str, &state::RunRecord> = BTreeMap::new();
    for run in &runs {
        last_runs.entry(run.scope.as_str()).or_insert(run);
    }
    let now = Utc::now();
    let total = links.len();
    let mut links = links;
    links.sort_by_key(|link| std::cmp::Reverse(link.linked_at));
    links.truncate(LINKS_SHOWN);
    let mut rows: Vec<LinkRow> = links
        .iter()
        .map(|link| {
            let cm = catalog.as_ref().and_then(|c| c.campaign(&link.cm_campaign_id));
            LinkRow {
                cm: link.cm_campaign_id.clone(),
                cm_name: cm.map(|c| c.name.clone()).unwrap_or_default(),
                cm_state: cm.map(state_words).unwrap_or_default(),
                last: last_runs.get(link.cm_campaign_id.as_str()).map_or_else(
                    || "not among the recent runs".to_owned(),
                    |run| format!("{} ({})", when(run.started_at), run_status_words(run)),
                ),
                band: cm.map_or_else(String::new, |c| {
                    cadence_band(&settings.sync_cadence, c.sent_at, now).words().to_owned()
                }),
                sf: link.sf_campaign_id.clone(),
                name: link.sf_campaign_id.clone(),
                origin: origin_words(link),
                linked_at: when(link.linked_at),
                next: next_words(schedule.get(&link.cm_campaign_id)),
            }
        })
        .collect();
    let mut problem = None;
    if !rows.is_empty() {
        let ids: Vec<String> = rows.iter().map(|r| r.sf.clone()).collect();
        let names = match crate::salesforce::as_user(&current) {
            Ok(sf) => {
                sf.query_in("SELECT Id, Name FROM Campaign WHERE Id IN ", &ids, "")
                    .await
            }
            Err(error) => Err(error),
        };
        match names {
            Ok(names) => {
                for row in &mut rows {
                    // The 15-character id is the 18-character one's start.
                    let same = |found: &str| found.get(..15) == row.sf.get(..15);
                    if let Some(found) = names.iter().find(|r| r["Id"].as_str().is_some_and(same)) {
                        row.name = found["Name"].as_str().unwrap_or(&row.sf).to_owned();
                    }
                }
            }
            Err(error) => problem = Some(format!("Salesforce could not be read as you: {error}")),
        }
    }
    let notice = if let Some(run) = done.requested {
        Some(format!(
            "Sync requested (run {run}); it appears on Runs when it starts."
        ))
    } else if let Some(cm) = done.unlinked {
        Some(format!(
            "CM campaign {cm} unlinked: its link field is cleared and its progress forgotten."
        ))
    } else if let Some(cm) = done.linked {
        Some(format!(
            "CM campaign {cm} linked: its Salesforce Campaign's link field is set in your name, and it is synced now."
        ))
    } else {
        done.backfill.map(|range| format!(
            "Backfill of {range} requested: the sync function reads Campaign Monitor again and creates the Salesforce Campaigns; each appears here as it is linked, and the Audit records the backfill."
        ))
    };
    render(
        StatusCode::OK,
        &LinksPage {
            chrome: Chrome::of(&current, "links"),
            links: rows,
            total,
            notice,
            problem,
            catalog_at: catalog.as_ref().map(|c| when(c.refreshed_at)),
        },
    )
}

fn run_status_words(run: &state::RunRecord) -> String {
    let status = serde_json::to_value(run.status)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    if run.failure_count > 0 {
        format!("{status}, {} failed", run.failure_count)
    } else {
        status
    }
}

/// Sync now: the campaign's sync requested on the bus; the sync function runs it.
pub async fn sync_now<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(cm): Path<String>,
) -> Response {
    match request_sync(app.store.as_ref(), app.publisher.as_ref(), Some(&cm), "console").await {
        Ok(run_id) => {
            tracing::info!(user = %current.user_id, campaign = %cm, run = %run_id, "sync requested from the console");
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("requested", &run_id)
                .finish();
            Redirect::to(&format!("/links?{query}")).into_response()
        }
        Err(EngineError::Invalid(reason)) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &reason),
        Err(error) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The sync could not be requested: {error}. Try again."),
        ),
    }
}

#[derive(Template)]
#[template(path = "unlink.html")]
struct UnlinkPage {
    chrome: Chrome,
    link: LinkRow,
}

/// The confirmation before an unlink.
pub async fn confirm_unlink<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(cm): Path<String>,
) -> Response {
    match app.store.link(&cm).await {
        Ok(Some(link)) => render(
            StatusCode::OK,
            &UnlinkPage {
                chrome: Chrome::of(&current, "links"),
                link: LinkRow {
                    cm: link.cm_campaign_id.clone(),
                    cm_name: String::new(),
                    cm_state: String::new(),
                    last: String::new(),
                    band: String::new(),
                    sf: link.sf_campaign_id.clone(),
                    name: link.sf_campaign_id.clone(),
                    origin: origin_words(&link),
                    linked_at: when(link.linked_at),
                    next: String::new(),
                },
            },
        ),
        Ok(None) => refusal(StatusCode::NOT_FOUND, &format!("CM campaign {cm} is not linked.")),
        Err(error) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The link could not be read: {error}"),
        ),
    }
}

/// Unlink, confirmed: the permission checked again, the SF Campaign's link field cleared as
/// the admin, the link and the campaign's progress forgotten.
pub async fn unlink<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(cm): Path<String>,
) -> Response {
    let sf = match as_permitted_admin(&app, &current).await {
        Ok(sf) => sf,
        Err(refused) => return refused,
    };
    let admin = LinkAdmin::new(app.store.as_ref(), &sf, app.publisher.as_ref());
    match admin.unlink(&cm, &current.user_id).await {
        Ok(None) => refusal(StatusCode::NOT_FOUND, &format!("CM campaign {cm} is not linked.")),
        Ok(Some(_)) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("unlinked", &cm)
                .finish();
            Redirect::to(&format!("/links?{query}")).into_response()
        }
        Err(EngineError::Invalid(reason)) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &reason),
        Err(error) => refusal(StatusCode::BAD_GATEWAY, &format!("Nothing was unlinked: {error}")),
    }
}
