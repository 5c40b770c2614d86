//! What a previewed settings change would do on recent campaigns: the console stores the
//! proposal and asks the sync function (an event on the bus); the function plans each campaign
//! under the stored and the proposed settings as a dry run and stores the comparison; this page
//! shows it when ready (it reloads itself without JavaScript until then) with the confirm form.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::{Extension, Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use engine::admin::preview::{CampaignImpact, PREVIEW_CAMPAIGNS};
use events::Event;
use serde::Deserialize;
use state::PreviewRecord;

use super::{Chrome, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// How long a preview is kept.
const KEPT_FOR: Duration = Duration::hours(1);

/// The preview page's form: the proposal it showed.
#[derive(Debug, Deserialize)]
pub struct Proposal {
    proposed: String,
    base_version: u64,
}

/// The campaigns to plan: those synced most recently, else the newest links.
async fn recent_campaigns<S: ConsoleStore>(store: &S) -> Result<Vec<String>, state::StoreError> {
    let linked: BTreeSet<String> = store.links().await?.into_iter().map(|l| l.cm_campaign_id).collect();
    let mut chosen: Vec<String> = Vec::new();
    for run in store.recent_runs(200).await? {
        if linked.contains(&run.scope) && !chosen.contains(&run.scope) {
            chosen.push(run.scope);
        }
        if chosen.len() == PREVIEW_CAMPAIGNS {
            return Ok(chosen);
        }
    }
    for cm in linked {
        if chosen.len() == PREVIEW_CAMPAIGNS {
            break;
        }
        if !chosen.contains(&cm) {
            chosen.push(cm);
        }
    }
    Ok(chosen)
}

/// Asks the sync function for the comparison and shows where it will appear.
pub async fn request<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(proposal): Form<Proposal>,
) -> Response {
    if let Err(error) = mapping::Settings::from_json(&proposal.proposed) {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string());
    }
    let campaigns = match recent_campaigns(app.store.as_ref()).await {
        Ok(campaigns) if !campaigns.is_empty() => campaigns,
        Ok(_) => {
            return refusal(
                StatusCode::CONFLICT,
                "No campaign is linked yet: there is nothing to preview on.",
            );
        }
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The state could not be read: {error}"),
            );
        }
    };
    ask_and_show(
        &app,
        &current,
        proposal.base_version,
        Some(proposal.proposed),
        campaigns,
    )
    .await
}

/// Keeps a preview (a settings change's, or with no proposal a dry run), asks the sync
/// function for it and sends the browser to the page that shows it when ready.
pub(super) async fn ask_and_show<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
    base_version: u64,
    proposed: Option<String>,
    campaigns: Vec<String>,
) -> Response {
    let now = Utc::now();
    let page = if proposed.is_some() {
        "/settings/impact"
    } else {
        "/links/dry-run"
    };
    let preview = PreviewRecord {
        preview_id: engine::new_run_id(),
        requested_by: current.user_id.clone(),
        requested_at: now,
        base_version,
        proposed,
        campaigns,
        result: None,
        expires_at: now + KEPT_FOR,
    };
    let asked = async {
        app.store.save_preview(&preview).await?;
        app.publisher
            .publish(&[Event::settings_preview_requested(&preview.preview_id)])
            .await?;
        Ok::<_, engine::EngineError>(())
    };
    if let Err(error) = asked.await {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Nothing could be asked of the sync function: {error}. Try again."),
        );
    }
    Redirect::to(&format!("{page}/{}", preview.preview_id)).into_response()
}

#[derive(Template)]
#[template(path = "settings_impact.html")]
struct ImpactPage {
    chrome: Chrome,
    preview_id: String,
    ready: bool,
    impacts: Vec<CampaignImpact>,
    proposed: String,
    base_version: u64,
}

/// The preview `preview_id` if it is the signed-in admin's own and not expired, else the page
/// to show instead.
pub(super) async fn own_preview<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
    preview_id: &str,
) -> Result<PreviewRecord, Response> {
    match app.store.preview(preview_id).await {
        // Only its requester sees it.
        Ok(Some(preview)) if preview.requested_by == current.user_id && preview.expires_at > Utc::now() => Ok(preview),
        Ok(_) => Err(refusal(
            StatusCode::NOT_FOUND,
            "This preview has expired (previews are kept an hour).",
        )),
        Err(error) => Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The preview could not be read: {error}"),
        )),
    }
}

/// What the sync function found, once it has answered.
pub(super) fn impacts_of(preview: &PreviewRecord) -> Vec<CampaignImpact> {
    preview
        .result
        .as_ref()
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

/// The comparison when ready; until then a page that reloads itself every few seconds.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Path(preview_id): Path<String>,
) -> Response {
    let preview = match own_preview(&app, &current, &preview_id).await {
        Ok(preview) => preview,
        Err(page) => return page,
    };
    let Some(proposed) = preview.proposed.clone() else {
        return Redirect::to(&format!("/links/dry-run/{preview_id}")).into_response();
    };
    render(
        StatusCode::OK,
        &ImpactPage {
            chrome: Chrome::of(&current, "settings"),
            preview_id,
            ready: preview.result.is_some(),
            impacts: impacts_of(&preview),
            proposed,
            base_version: preview.base_version,
        },
    )
}
