//! Backfill from the console: a range of days → the CM campaigns it would link (from the
//! catalog, by the same rule as `cm-sf-admin backfill`) → confirm. The confirmed backfill runs
//! in the sync function, which reads CM again (the catalog may be a day old) and creates the
//! SF Campaigns, refusing the whole window past the limit.

use askama::Template;
use axum::extract::{Extension, Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use engine::admin::backfill::DEFAULT_BACKFILL_MAX;
use events::Event;
use mapping::autocreate::{Eligibility, backfill_eligibility, backfill_window};
use serde::Deserialize;

use super::catalog::{self, state_words, still_refreshing, when};
use super::link_new::CmChoice;
use super::{Chrome, refusal, render, still_permitted};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// The range asked (dates only).
#[derive(Debug, Default, Deserialize)]
pub struct Range {
    from: Option<String>,
    to: Option<String>,
    since: Option<i64>,
}

/// The range read, or each field's problem.
struct Checked {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    from_error: Option<String>,
    to_error: Option<String>,
}

fn check(range: &Range) -> Checked {
    let day = |field: &str, value: Option<&String>| -> (Option<NaiveDate>, Option<String>) {
        match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => (None, None),
            Some(text) => match text.parse::<NaiveDate>() {
                Ok(day) => (Some(day), None),
                Err(_) => (None, Some(format!("{field}: `{text}` is not a date (YYYY-MM-DD)"))),
            },
        }
    };
    let (from, from_error) = day("from", range.from.as_ref());
    let (to, mut to_error) = day("to", range.to.as_ref());
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        to_error = Some(format!("to: {to} is before from ({from})"));
    }
    Checked {
        from,
        to,
        from_error,
        to_error,
    }
}

#[derive(Template)]
#[template(path = "backfill.html")]
struct BackfillPage {
    chrome: Chrome,
    from: String,
    to: String,
    from_error: Option<String>,
    to_error: Option<String>,
    zone: String,
    catalog_at: Option<String>,
    refreshing: bool,
    /// The range is valid and the candidates were looked for.
    previewed: bool,
    candidates: Vec<CmChoice>,
    max: usize,
    back: String,
}

/// The form, and with a valid range the campaigns it would link.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Query(range): Query<Range>,
) -> Response {
    let settings = match super::settings::load(&app).await {
        Ok(stored) => stored.settings,
        Err(page) => return page,
    };
    let catalog = match catalog::read(&app).await {
        Ok(catalog) => catalog,
        Err(page) => return page,
    };
    let checked = check(&range);
    let mut candidates = Vec::new();
    let mut previewed = false;
    if let (Some(from), Some(to), None, None) = (checked.from, checked.to, &checked.from_error, &checked.to_error)
        && let Ok((start, end)) = backfill_window(from, to, settings.zone())
    {
        let links = match catalog::linked(&app).await {
            Ok(links) => links,
            Err(page) => return page,
        };
        let mut found: Vec<_> = catalog
            .iter()
            .flat_map(|c| c.campaigns.iter())
            .filter(|c| {
                backfill_eligibility(c, start, end, links.get(&c.cm_campaign_id).map(String::as_str))
                    == Eligibility::Eligible
            })
            .collect();
        found.sort_by(|a, b| (a.created_or_sent(), &a.cm_campaign_id).cmp(&(b.created_or_sent(), &b.cm_campaign_id)));
        candidates = found
            .into_iter()
            .map(|c| CmChoice {
                id: c.cm_campaign_id.clone(),
                name: c.name.clone(),
                state: state_words(c),
            })
            .collect();
        previewed = catalog.is_some();
    }
    let from = range.from.clone().unwrap_or_default();
    let to = range.to.clone().unwrap_or_default();
    let back = format!(
        "/links/backfill?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &from)
            .append_pair("to", &to)
            .finish()
    );
    render(
        StatusCode::OK,
        &BackfillPage {
            chrome: Chrome::of(&current, "links"),
            from,
            to,
            from_error: checked.from_error,
            to_error: checked.to_error,
            zone: settings.zone().to_string(),
            catalog_at: catalog.as_ref().map(|c| when(c.refreshed_at)),
            refreshing: still_refreshing(catalog.as_ref(), range.since),
            previewed,
            candidates,
            max: DEFAULT_BACKFILL_MAX,
            back,
        },
    )
}

/// The confirmed range.
#[derive(Debug, Deserialize)]
pub struct Confirmed {
    from: String,
    to: String,
}

/// Confirmed: the permission checked again, the backfill asked of the sync function.
pub async fn confirm<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(confirmed): Form<Confirmed>,
) -> Response {
    let checked = check(&Range {
        from: Some(confirmed.from),
        to: Some(confirmed.to),
        since: None,
    });
    let (Some(from), Some(to), None, None) = (checked.from, checked.to, &checked.from_error, &checked.to_error) else {
        let problem = [checked.from_error, checked.to_error]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let problem = if problem.is_empty() {
            "from and to are both needed".to_owned()
        } else {
            problem
        };
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Nothing was backfilled: {problem}."),
        );
    };
    if let Err(refused) = still_permitted(&app, &current).await {
        return refused;
    }
    let event = Event::backfill_requested(&engine::new_run_id(), from, to, DEFAULT_BACKFILL_MAX, &current.user_id);
    if let Err(error) = app.publisher.publish(&[event]).await {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The backfill could not be asked for: {error}. Nothing was created; try again."),
        );
    }
    tracing::info!(user = %current.user_id, %from, %to, "backfill requested from the console");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("backfill", &format!("{from} to {to}"))
        .finish();
    Redirect::to(&format!("/links?{query}")).into_response()
}
