//! Campaign Settings (the seed's page) with the status mapping: edit → preview (a field-by-field
//! diff, nothing stored) → confirm (stored with the version the preview was made from: a change
//! made meanwhile, from here or by `cm-sf-admin settings apply`, is a conflict and overwrites
//! nothing). The same operation as `cm-sf-admin settings diff` and `settings apply`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Extension, Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::admin::{SettingsAdmin, SettingsChange};
use mapping::settings::document::describe;
use mapping::{ActivityKind, Settings, StatusRefresh};
use serde::Deserialize;
use state::{StoreError, VersionedSettings};

use super::{Chrome, refusal, render, still_permitted};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// One row of the status mapping as the form shows it.
#[derive(Debug, Clone)]
pub struct MappingRow {
    /// The CM activity (`opened`, ...), the form field's suffix.
    pub activity: String,
    /// As a person reads it.
    pub label: String,
    /// The Salesforce status label.
    pub status: String,
    /// Counts as responded.
    pub responded: bool,
    /// Its place in `status_rank` (1: lowest), which Forward only moves up.
    pub rank: String,
    /// Its error, next to it.
    pub error: Option<String>,
    /// Its rank's error, next to the rank.
    pub rank_error: Option<String>,
}

/// One statistic's target field as the form shows it.
#[derive(Debug, Clone)]
pub struct StatisticRow {
    /// CM's name for it (`UniqueOpened`), the form field's suffix.
    pub stat: String,
    /// The Salesforce Campaign field's API name; empty: not written.
    pub field: String,
    /// Its error, next to it.
    pub error: Option<String>,
}

/// The form as shown: values and the errors next to their fields.
#[derive(Debug, Clone)]
pub struct SettingsForm {
    update_campaign_statistics: bool,
    statistics: Vec<StatisticRow>,
    auto_create_campaigns: bool,
    auto_create_since: Option<String>,
    status_refresh: String,
    auto_create_missing_statuses: bool,
    mapping: Vec<MappingRow>,
    errors: BTreeMap<String, String>,
}

impl SettingsForm {
    fn of(settings: &Settings) -> SettingsForm {
        SettingsForm {
            update_campaign_statistics: settings.update_campaign_statistics,
            statistics: settings
                .statistics_fields
                .iter()
                .map(|(stat, field)| StatisticRow {
                    stat: stat.as_str().to_owned(),
                    field: field.clone().unwrap_or_default(),
                    error: None,
                })
                .collect(),
            auto_create_campaigns: settings.auto_create_campaigns,
            auto_create_since: settings
                .auto_create_enabled_at
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
            status_refresh: refresh_name(settings.status_refresh).to_owned(),
            auto_create_missing_statuses: settings.auto_create_missing_statuses,
            mapping: settings
                .status_mapping
                .iter()
                .map(|entry| MappingRow {
                    activity: entry.activity.as_str().to_owned(),
                    label: activity_words(entry.activity).to_owned(),
                    status: entry.status.clone(),
                    responded: entry.responded,
                    rank: settings
                        .status_rank
                        .iter()
                        .position(|kind| *kind == entry.activity)
                        .map(|i| (i + 1).to_string())
                        .unwrap_or_default(),
                    error: None,
                    rank_error: None,
                })
                .collect(),
            errors: BTreeMap::new(),
        }
    }

    /// The error of a field, if any (for the template).
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// The CM activities mapped to a Salesforce status label (for the template), as words.
    pub fn mapped_from(&self, label: &str) -> String {
        self.mapping
            .iter()
            .filter(|row| row.status.eq_ignore_ascii_case(label))
            .map(|row| row.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether a radio option is the chosen one (for the template).
    pub fn refresh_is(&self, value: &str) -> bool {
        self.status_refresh == value
    }
}

fn refresh_name(refresh: StatusRefresh) -> &'static str {
    match refresh {
        StatusRefresh::Never => "never",
        StatusRefresh::Always => "always",
        StatusRefresh::OnceOnly => "once_only",
        StatusRefresh::ForwardOnly => "forward_only",
    }
}

fn activity_words(kind: ActivityKind) -> &'static str {
    match kind {
        ActivityKind::Sent => "Sent",
        ActivityKind::Opened => "Opened",
        ActivityKind::Clicked => "Clicked",
        ActivityKind::Bounced => "Bounced",
        ActivityKind::Unsubscribed => "Unsubscribed",
        ActivityKind::MarkedAsSpam => "Marked as spam",
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    form: SettingsForm,
    version: u64,
    saved: Option<u64>,
    statuses: CampaignStatuses,
}

/// What the page is asked: `saved=N` after a confirmed change, `campaign=701...` to show that
/// linked campaign's member statuses beside the mapping.
#[derive(Debug, Deserialize)]
pub struct Shown {
    saved: Option<u64>,
    campaign: Option<String>,
}

/// A member status as Salesforce has it on one campaign.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Its label.
    pub label: String,
    /// New members get it.
    pub default: bool,
    /// Counts as responded.
    pub responded: bool,
}

/// The linked campaigns to choose from and the chosen one's statuses, read from Salesforce
/// as the signed-in admin.
#[derive(Debug, Clone, Default)]
pub struct CampaignStatuses {
    /// (SF Campaign id, name) of the most recently linked campaigns.
    pub campaigns: Vec<(String, String)>,
    /// The chosen campaign.
    pub chosen: Option<String>,
    /// Its statuses, in Salesforce's order.
    pub statuses: Vec<MemberStatus>,
    /// Why Salesforce could not be read, if it could not.
    pub problem: Option<String>,
}

/// Linked campaigns offered in the picker: the most recently linked.
const CAMPAIGNS_OFFERED: usize = 50;

impl CampaignStatuses {
    /// Reads the picker's campaigns and, if one is chosen (and linked), its statuses.
    async fn read<S: ConsoleStore>(store: &S, session: &Session, chosen: Option<&str>) -> CampaignStatuses {
        let mut links = match store.links().await {
            Ok(links) => links,
            Err(error) => {
                return CampaignStatuses {
                    problem: Some(format!("The links could not be read: {error}")),
                    ..CampaignStatuses::default()
                };
            }
        };
        if links.is_empty() {
            return CampaignStatuses::default();
        }
        links.sort_by_key(|link| std::cmp::Reverse(link.linked_at));
        links.truncate(CAMPAIGNS_OFFERED);
        let ids: Vec<String> = links.iter().map(|l| l.sf_campaign_id.clone()).collect();
        let chosen = chosen
            .filter(|id| ids.iter().any(|linked| linked == id))
            .map(str::to_owned);
        let mut shown = CampaignStatuses {
            campaigns: ids.iter().map(|id| (id.clone(), id.clone())).collect(),
            chosen: chosen.clone(),
            ..CampaignStatuses::default()
        };
        let read = async {
            let sf = crate::salesforce::as_user(session)?;
            let names = sf
                .query_in("SELECT Id, Name FROM Campaign WHERE Id IN ", &ids, "")
                .await?;
            let statuses = match &chosen {
                // A linked id, checked above: safe in the query.
                Some(id) => {
                    sf.query_all(&format!(
                        "SELECT Label, IsDefault, HasResponded, SortOrder FROM CampaignMemberStatus WHERE CampaignId = '{id}' ORDER BY SortOrder"
                    ))
                    .await?
                }
                None => Vec::new(),
            };
            Ok::<_, salesforce::SfError>((names, statuses))
        };
        match read.await {
            Ok((names, statuses)) => {
                for (id, name) in &mut shown.campaigns {
                    // The 15-character id is the 18-character one's start.
                    let same = |found: &str| found.get(..15) == id.get(..15);
                    if let Some(row) = names.iter().find(|r| r["Id"].as_str().is_some_and(same)) {
                        *name = row["Name"].as_str().unwrap_or(id).to_owned();
                    }
                }
                shown.statuses = statuses
                    .iter()
                    .map(|row| MemberStatus {
                        label: row["Label"].as_str().unwrap_or_default().to_owned(),
                        default: row["IsDefault"].as_bool().unwrap_or(false),
                        responded: row["HasResponded"].as_bool().unwrap_or(false),
                    })
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, user = %session.user_id, "the console could not read Salesforce as the admin");
                shown.problem = Some(format!("Salesforce could not be read as you: {error}"));
            }
        }
        shown
    }
}

/// The Campaign Settings page.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    axum::extract::Query(shown): axum::extract::Query<Shown>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let statuses = CampaignStatuses::read(app.store.as_ref(), &current, shown.campaign.as_deref()).await;
    render(
        StatusCode::OK,
        &SettingsPage {
            chrome: Chrome::of(&current, "settings"),
            form: SettingsForm::of(&stored.settings),
            version: stored.version,
            saved: shown.saved,
            statuses,
        },
    )
}

pub(super) async fn load<S: ConsoleStore, P: ConsoleSink>(app: &App<S, P>) -> Result<VersionedSettings, Response> {
    match SettingsAdmin::new(app.store.as_ref()).current().await {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => Err(refusal(
            StatusCode::CONFLICT,
            "No settings are stored yet: an operator applies the first document (cm-sf-admin settings apply FILE).",
        )),
        Err(error) => Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The settings could not be read: {error}"),
        )),
    }
}

/// The submitted form (checkboxes are absent when unticked).
fn submitted(base: &Settings, form: &[(String, String)]) -> (Settings, SettingsForm) {
    let value = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let ticked = |name: &str| value(name).is_some();
    let mut settings = base.clone();
    settings.update_campaign_statistics = ticked("update_campaign_statistics");
    for (stat, field) in &mut settings.statistics_fields {
        if let Some(typed) = value(&format!("stat_{}", stat.as_str())) {
            let typed = typed.trim();
            *field = (!typed.is_empty()).then(|| typed.to_owned());
        }
    }
    settings.auto_create_campaigns = ticked("auto_create_campaigns");
    settings.auto_create_missing_statuses = ticked("auto_create_missing_statuses");
    let mut errors = BTreeMap::new();
    settings.status_refresh = match value("status_refresh") {
        Some("never") => StatusRefresh::Never,
        Some("always") => StatusRefresh::Always,
        Some("once_only") => StatusRefresh::OnceOnly,
        Some("forward_only") => StatusRefresh::ForwardOnly,
        _ => {
            errors.insert(
                "status_refresh".to_owned(),
                "choose one of the four behaviours".to_owned(),
            );
            base.status_refresh
        }
    };
    for entry in &mut settings.status_mapping {
        let kind = entry.activity.as_str();
        if let Some(status) = value(&format!("status_{kind}")) {
            entry.status = status.trim().to_owned();
        }
        entry.responded = ticked(&format!("responded_{kind}"));
    }
    // The ranks typed: each a place from 1 to 6, each place once.
    let kinds: Vec<ActivityKind> = settings.status_mapping.iter().map(|e| e.activity).collect();
    let typed: Vec<(ActivityKind, String)> = kinds
        .iter()
        .map(|kind| {
            // A form without the field keeps the stored rank.
            let stored = settings
                .status_rank
                .iter()
                .position(|k| k == kind)
                .map(|i| (i + 1).to_string());
            let text = value(&format!("rank_{}", kind.as_str()))
                .map(|t| t.trim().to_owned())
                .or(stored)
                .unwrap_or_default();
            (*kind, text)
        })
        .collect();
    let places = ActivityKind::ALL.len();
    let mut rank_errors: BTreeMap<ActivityKind, String> = BTreeMap::new();
    let mut ranked: Vec<(usize, ActivityKind)> = Vec::new();
    for (kind, text) in &typed {
        match text.parse::<usize>() {
            Ok(place) if (1..=places).contains(&place) => ranked.push((place, *kind)),
            _ => {
                rank_errors.insert(
                    *kind,
                    format!(
                        "status_rank: the rank of {} must be a number from 1 to {places}",
                        kind.as_str()
                    ),
                );
            }
        }
    }
    for (place, kind) in &ranked {
        if ranked.iter().filter(|(other, _)| other == place).count() > 1 {
            rank_errors.insert(
                *kind,
                format!("status_rank: rank {place} is given to more than one activity"),
            );
        }
    }
    if rank_errors.is_empty() && ranked.len() == places {
        ranked.sort();
        settings.status_rank = ranked.into_iter().map(|(_, kind)| kind).collect();
    }
    let mut shown = SettingsForm::of(&settings);
    for row in &mut shown.mapping {
        if let Some((kind, text)) = typed.iter().find(|(kind, _)| kind.as_str() == row.activity) {
            row.rank.clone_from(text);
            row.rank_error = rank_errors.get(kind).cloned();
        }
    }
    if value("status_refresh").is_none() {
        shown.status_refresh = String::new();
    }
    if !rank_errors.is_empty() {
        errors.insert("status_rank".to_owned(), "each activity needs its own rank".to_owned());
    }
    shown.errors = errors;
    (settings, shown)
}

/// Field errors put next to their fields (`status_mapping[2].status` → that row).
fn place_errors(form: &mut SettingsForm, error: &mapping::SettingsError) {
    for field_error in error.field_errors() {
        let mut placed = false;
        for row in &mut form.statistics {
            if field_error.field == format!("statistics_fields.{}", row.stat) {
                row.error = Some(format!("{}: {}", field_error.field, field_error.problem));
                placed = true;
            }
        }
        for (index, row) in form.mapping.iter_mut().enumerate() {
            if field_error.field.starts_with(&format!("status_mapping[{index}]")) {
                row.error = Some(format!("{}: {}", field_error.field, field_error.problem));
                placed = true;
            }
        }
        if !placed {
            let key = field_error
                .field
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_owned();
            form.errors
                .insert(key, format!("{}: {}", field_error.field, field_error.problem));
        }
    }
}

#[derive(Template)]
#[template(path = "settings_preview.html")]
struct PreviewPage {
    chrome: Chrome,
    changes: Vec<String>,
    proposed: String,
    base_version: u64,
}

/// The preview of a prepared change, whichever page it came from.
pub(super) fn preview_page(current: &Session, change: &SettingsChange, base_version: u64) -> Response {
    render(
        StatusCode::OK,
        &PreviewPage {
            chrome: Chrome::of(current, "settings"),
            changes: change.changes.iter().map(describe).collect(),
            proposed: change.prepared.to_json(),
            base_version,
        },
    )
}

/// Save → preview: the changes field by field, nothing stored. Invalid input shows the form
/// again with each error next to its field.
pub async fn preview<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let (proposed, mut shown) = submitted(&stored.settings, &form);
    let prepared = if shown.errors.is_empty() {
        SettingsAdmin::new(app.store.as_ref()).prepare(proposed, Some(&stored))
    } else {
        Err(mapping::SettingsError::Invalid(Vec::new()))
    };
    let change: SettingsChange = match prepared {
        Ok(change) => change,
        Err(error) => {
            place_errors(&mut shown, &error);
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &SettingsPage {
                    chrome: Chrome::of(&current, "settings"),
                    form: shown,
                    version: stored.version,
                    saved: None,
                    statuses: CampaignStatuses::default(),
                },
            );
        }
    };
    preview_page(&current, &change, stored.version)
}

/// The confirm form.
#[derive(Debug, Deserialize)]
pub struct Confirm {
    proposed: String,
    base_version: u64,
}

#[derive(Template)]
#[template(path = "settings_conflict.html")]
struct ConflictPage {
    chrome: Chrome,
    base_version: u64,
    found: Option<u64>,
}

/// Confirm: the permission is checked again in Salesforce, then the previewed document is
/// stored if the settings are still at the version previewed (else the conflict page).
pub async fn confirm<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(confirm): Form<Confirm>,
) -> Response {
    if let Err(refused) = still_permitted(&app, &current).await {
        return refused;
    }
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let conflict = |found: Option<u64>| {
        render(
            StatusCode::CONFLICT,
            &ConflictPage {
                chrome: Chrome::of(&current, "settings"),
                base_version: confirm.base_version,
                found,
            },
        )
    };
    if stored.version != confirm.base_version {
        return conflict(Some(stored.version));
    }
    let proposed = match Settings::from_json(&confirm.proposed) {
        Ok(proposed) => proposed,
        Err(error) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string()),
    };
    let admin = SettingsAdmin::new(app.store.as_ref());
    let change = match admin.prepare(proposed, Some(&stored)) {
        Ok(change) => change,
        Err(error) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string()),
    };
    match admin.store(&change, &current.user_id).await {
        Ok(version) => {
            tracing::info!(user = %current.user_id, version, changes = change.changes.len(), "settings changed from the console");
            let mut response = Redirect::to(&format!("/settings?saved={version}")).into_response();
            *response.status_mut() = StatusCode::SEE_OTHER;
            response
        }
        Err(engine::EngineError::Store(StoreError::VersionConflict { found, .. })) => conflict(found),
        Err(error) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The settings could not be stored: {error}"),
        ),
    }
}
