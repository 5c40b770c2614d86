//! The catalog of CM campaigns as the console sees it: the console holds no CM credentials, so
//! names, send dates and the campaign picker come from what discovery last kept (refreshed by
//! the scheduled run daily, and by the sync function when an admin asks: the same operation as
//! `cm-sf-admin campaigns`).

use axum::extract::{Extension, Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use events::Event;
use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};
use serde::Deserialize;
use state::CatalogRecord;

use super::refusal;
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// A time as the console shows it.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// How a campaign of the catalog is shown: its state and its send (or creation) date.
pub fn state_words(campaign: &DiscoveredCampaign) -> String {
    match campaign.state {
        CmCampaignState::Sent => campaign
            .sent_at
            .map_or_else(|| "sent".to_owned(), |at| format!("sent {}", when(at))),
        CmCampaignState::Scheduled => "scheduled".to_owned(),
        CmCampaignState::Draft => campaign
            .created_at
            .map_or_else(|| "draft".to_owned(), |at| format!("draft, created {}", when(at))),
    }
}

/// The catalog, or `None` (never read yet, or expired); an error is a page.
pub async fn read<S: ConsoleStore, P: ConsoleSink>(app: &App<S, P>) -> Result<Option<CatalogRecord>, Response> {
    app.store.catalog().await.map_err(|error| {
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The list of CM campaigns could not be read: {error}"),
        )
    })
}

/// CM campaign id → SF Campaign id of every link; an error is a page.
pub async fn linked<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
) -> Result<std::collections::BTreeMap<String, String>, Response> {
    match app.store.links().await {
        Ok(links) => Ok(links
            .into_iter()
            .map(|l| (l.cm_campaign_id, l.sf_campaign_id))
            .collect()),
        Err(error) => Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The links could not be read: {error}"),
        )),
    }
}

/// Where to go back to once asked.
#[derive(Debug, Deserialize)]
pub struct Back {
    /// A console path (`/links/new`, `/links/backfill?...`); anything else goes to Links.
    back: Option<String>,
}

/// Asks the sync function to read the CM campaigns again; the page it came from reloads itself
/// until the catalog is newer than the request.
pub async fn refresh<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(back): Form<Back>,
) -> Response {
    let asked_at = Utc::now();
    let request_id = engine::new_run_id();
    if let Err(error) = app
        .publisher
        .publish(&[Event::catalog_refresh_requested(&request_id, &current.user_id)])
        .await
    {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The campaigns could not be asked for: {error}. Try again."),
        );
    }
    // Only a path of this console: never an open redirect.
    let back = back
        .back
        .filter(|b| b.starts_with("/links/") && !b.starts_with("//") && !b.contains(['\\', '\r', '\n']))
        .unwrap_or_else(|| "/links/new".to_owned());
    let joiner = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{joiner}since={}", asked_at.timestamp())).into_response()
}

/// Whether a page asked to wait for a refresh asked at `since` (seconds) should keep
/// reloading: the catalog is older than the request, and the request is under two minutes old.
pub fn still_refreshing(catalog: Option<&CatalogRecord>, since: Option<i64>) -> bool {
    let Some(since) = since.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)) else {
        return false;
    };
    let fresh = catalog.is_some_and(|c| c.refreshed_at >= since);
    !fresh && Utc::now() - since < chrono::Duration::minutes(2)
}
