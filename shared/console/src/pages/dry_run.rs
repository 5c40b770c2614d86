//! Dry run of a linked campaign: what its next sync would change under the stored settings,
//! planned by the sync function (the console holds no CM or SF credentials of the
//! integration) and shown when ready: the same plan as `cm-sf-admin sync --campaign ID
//! --dry-run`. Nothing is written to Salesforce.

use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::admin::preview::CampaignImpact;

use super::impact::{ask_and_show, impacts_of, own_preview};
use super::{Chrome, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// Asks the sync function for the dry run of one linked campaign.
pub async fn request<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(cm): Path<String>,
) -> Response {
    match app.store.link(&cm).await {
        Ok(Some(_)) => {}
        Ok(None) => return refusal(StatusCode::NOT_FOUND, &format!("CM campaign {cm} is not linked.")),
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The link could not be read: {error}"),
            );
        }
    }
    let version = match app.store.load_settings().await {
        Ok(Some(stored)) => stored.version,
        Ok(None) => 0,
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The settings could not be read: {error}"),
            );
        }
    };
    ask_and_show(&app, &current, version, None, vec![cm]).await
}

#[derive(Template)]
#[template(path = "dry_run.html")]
struct DryRunPage {
    chrome: Chrome,
    preview_id: String,
    ready: bool,
    impacts: Vec<CampaignImpact>,
}

/// The plan when ready; until then a page that reloads itself.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(preview_id): Path<String>,
) -> Response {
    let preview = match own_preview(&app, &current, &preview_id).await {
        Ok(preview) => preview,
        Err(page) => return page,
    };
    if preview.proposed.is_some() {
        return Redirect::to(&format!("/settings/impact/{preview_id}")).into_response();
    }
    render(
        StatusCode::OK,
        &DryRunPage {
            chrome: Chrome::of(&current, "links"),
            preview_id,
            ready: preview.result.is_some(),
            impacts: impacts_of(&preview),
        },
    )
}
