//! Link a campaign by name: pick the CM campaign from the catalog (unlinked ones, filtered by
//! name), then search Salesforce Campaigns by name as the signed-in admin, then link (the same
//! operation as `cm-sf-admin link`: the link field written with the admin's own token).

use askama::Template;
use axum::extract::{Extension, Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::EngineError;
use engine::admin::LinkAdmin;
use serde::Deserialize;
use state::LinkOutcome;

use super::catalog::{self, state_words, still_refreshing, when};
use super::{Chrome, as_permitted_admin, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// CM campaigns listed at most.
const CM_SHOWN: usize = 50;
/// SF Campaigns a search shows at most.
const SF_SHOWN: usize = 25;

/// What the page is asked (names only: no personal data in the URL).
#[derive(Debug, Default, Deserialize)]
pub struct Ask {
    /// A part of the CM campaign's name.
    q: Option<String>,
    /// The CM campaign chosen.
    cm: Option<String>,
    /// A part of the SF Campaign's name.
    sf_q: Option<String>,
    /// Waiting for a catalog refresh asked at this time (seconds).
    since: Option<i64>,
}

/// A CM campaign to pick.
#[derive(Debug, Clone)]
pub struct CmChoice {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Sent when, or its state.
    pub state: String,
}

/// An SF Campaign found.
#[derive(Debug, Clone)]
pub struct SfChoice {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its start date, if set.
    pub start: String,
    /// Active or not.
    pub active: bool,
    /// The CM campaign it is linked to already, if any.
    pub linked_to: Option<String>,
}

#[derive(Template)]
#[template(path = "link_new.html")]
struct LinkNewPage {
    chrome: Chrome,
    q: String,
    catalog_at: Option<String>,
    refreshing: bool,
    cm_choices: Vec<CmChoice>,
    cm_more: usize,
    chosen: Option<CmChoice>,
    cm_error: Option<String>,
    sf_q: String,
    sf_choices: Vec<SfChoice>,
    sf_error: Option<String>,
    searched: bool,
}

/// The picker: CM campaign first, then the SF Campaign.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Query(ask): Query<Ask>,
) -> Response {
    let catalog = match catalog::read(&app).await {
        Ok(catalog) => catalog,
        Err(page) => return page,
    };
    let links = match catalog::linked(&app).await {
        Ok(links) => links,
        Err(page) => return page,
    };
    let q = ask.q.unwrap_or_default().trim().to_owned();
    let needle = q.to_lowercase();
    let mut unlinked: Vec<_> = catalog
        .iter()
        .flat_map(|c| c.campaigns.iter())
        .filter(|c| !links.contains_key(&c.cm_campaign_id))
        .filter(|c| needle.is_empty() || c.name.to_lowercase().contains(&needle))
        .collect();
    // Newest first (sent, else created); drafts without a date last.
    unlinked.sort_by(|a, b| b.created_or_sent().cmp(&a.created_or_sent()).then(a.name.cmp(&b.name)));
    let choice = |c: &mapping::autocreate::DiscoveredCampaign| CmChoice {
        id: c.cm_campaign_id.clone(),
        name: c.name.clone(),
        state: state_words(c),
    };
    let mut cm_error = None;
    let chosen = match ask.cm.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(id) => match catalog.as_ref().and_then(|c| c.campaign(id)) {
            _ if links.contains_key(id) => {
                cm_error = Some(format!(
                    "CM campaign {id} is already linked (to SF Campaign {}); unlink it first",
                    links[id]
                ));
                None
            }
            Some(found) => Some(choice(found)),
            // Not in the catalog (too new, or another client): accepted by id as the CLI does.
            None if mapping::settings::is_cm_id(id) => Some(CmChoice {
                id: id.to_owned(),
                name: "(not in the campaign list yet)".to_owned(),
                state: String::new(),
            }),
            None => {
                cm_error = Some(format!("`{id}` is not a CM CampaignID (32 hex characters)"));
                None
            }
        },
    };
    let sf_q = ask
        .sf_q
        .clone()
        .or_else(|| chosen.as_ref().filter(|c| !c.state.is_empty()).map(|c| c.name.clone()))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut sf_choices = Vec::new();
    let mut sf_error = None;
    let searched = chosen.is_some() && !sf_q.is_empty();
    if searched {
        match search_sf(&app, &current, &sf_q).await {
            Ok(found) => sf_choices = found,
            Err(error) => sf_error = Some(error),
        }
    }
    let cm_more = unlinked.len().saturating_sub(CM_SHOWN);
    render(
        StatusCode::OK,
        &LinkNewPage {
            chrome: Chrome::of(&current, "links"),
            q,
            catalog_at: catalog.as_ref().map(|c| when(c.refreshed_at)),
            refreshing: still_refreshing(catalog.as_ref(), ask.since),
            cm_choices: unlinked.into_iter().take(CM_SHOWN).map(choice).collect(),
            cm_more,
            chosen,
            cm_error,
            sf_q,
            sf_choices,
            sf_error,
            searched,
        },
    )
}

/// SF Campaigns whose name contains `term`, read as the admin (their sharing applies).
async fn search_sf<S: ConsoleStore, P: ConsoleSink>(
    app: &App<S, P>,
    current: &Session,
    term: &str,
) -> Result<Vec<SfChoice>, String> {
    let settings = super::settings::load(app)
        .await
        .map_err(|_| "The settings could not be read.".to_owned())?;
    let field = &settings.settings.campaign_link_field;
    let sf = crate::salesforce::as_user(current).map_err(|e| e.to_string())?;
    let soql = format!(
        "SELECT Id, Name, StartDate, IsActive, {field} FROM Campaign WHERE Name LIKE {} ORDER BY Name LIMIT {SF_SHOWN}",
        salesforce::soql::like_containing(term)
    );
    let rows = sf
        .query_all(&soql)
        .await
        .map_err(|e| format!("Salesforce could not be searched as you: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let text = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
            SfChoice {
                id: text("Id"),
                name: text("Name"),
                start: text("StartDate"),
                active: row["IsActive"].as_bool().unwrap_or(false),
                linked_to: row[field.as_str()]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
            }
        })
        .collect())
}

/// The link asked for.
#[derive(Debug, Deserialize)]
pub struct LinkForm {
    cm: String,
    sf: String,
}

/// Links them: the permission checked again, the link field written as the admin.
pub async fn link<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(form): Form<LinkForm>,
) -> Response {
    let sf = match as_permitted_admin(&app, &current).await {
        Ok(sf) => sf,
        Err(refused) => return refused,
    };
    let admin = LinkAdmin::new(app.store.as_ref(), &sf, app.publisher.as_ref());
    match admin.link(form.cm.trim(), form.sf.trim(), &current.user_id).await {
        Ok(LinkOutcome::Created | LinkOutcome::AlreadyLinked) => {
            tracing::info!(user = %current.user_id, campaign = %form.cm, "campaign linked from the console");
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("linked", form.cm.trim())
                .finish();
            Redirect::to(&format!("/links?{query}")).into_response()
        }
        Err(EngineError::Invalid(reason)) => refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Nothing was linked: {reason}."),
        ),
        Err(error) => refusal(StatusCode::BAD_GATEWAY, &format!("Nothing was linked: {error}")),
    }
}
