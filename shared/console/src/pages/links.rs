//! Links: each CM campaign ↔ SF Campaign with when it syncs next; Sync now (the same request as
//! `cm-sf-admin sync --campaign`) and Unlink after a confirmation (the same operation as
//! `cm-sf-admin unlink`, the link field cleared with the admin's own token).

use askama::Template;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::EngineError;
use engine::admin::LinkAdmin;
use engine::admin::sync_request::request_sync;
use mapping::cadence::NextSync;
use serde::Deserialize;
use state::LinkRecord;

use super::{Chrome, refusal, render, still_permitted};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// Links listed at most (the most recently linked).
const LINKS_SHOWN: usize = 500;

/// One link as a row.
#[derive(Debug, Clone)]
pub struct LinkRow {
    /// The CM campaign id.
    pub cm: String,
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
}

/// What the list is told after an action.
#[derive(Debug, Deserialize)]
pub struct Done {
    requested: Option<String>,
    unlinked: Option<String>,
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
    let total = links.len();
    let mut links = links;
    links.sort_by_key(|link| std::cmp::Reverse(link.linked_at));
    links.truncate(LINKS_SHOWN);
    let mut rows: Vec<LinkRow> = links
        .iter()
        .map(|link| LinkRow {
            cm: link.cm_campaign_id.clone(),
            sf: link.sf_campaign_id.clone(),
            name: link.sf_campaign_id.clone(),
            origin: origin_words(link),
            linked_at: link.linked_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            next: next_words(schedule.get(&link.cm_campaign_id)),
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
    let notice = match (done.requested, done.unlinked) {
        (Some(run), _) => Some(format!(
            "Sync requested (run {run}); it appears on Runs when it starts."
        )),
        (None, Some(cm)) => Some(format!(
            "CM campaign {cm} unlinked: its link field is cleared and its progress forgotten."
        )),
        (None, None) => None,
    };
    render(
        StatusCode::OK,
        &LinksPage {
            chrome: Chrome::of(&current, "links"),
            links: rows,
            total,
            notice,
            problem,
        },
    )
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
                    sf: link.sf_campaign_id.clone(),
                    name: link.sf_campaign_id.clone(),
                    origin: origin_words(&link),
                    linked_at: link.linked_at.format("%Y-%m-%d %H:%M UTC").to_string(),
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
    if let Err(refused) = still_permitted(&app, &current).await {
        return refused;
    }
    let sf = match crate::salesforce::as_user(&current) {
        Ok(sf) => sf,
        Err(error) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
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
