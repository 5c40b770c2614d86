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
    /// Its error, next to it.
    pub error: Option<String>,
}

/// The form as shown: values and the errors next to their fields.
#[derive(Debug, Clone)]
pub struct SettingsForm {
    update_campaign_statistics: bool,
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
                    error: None,
                })
                .collect(),
            errors: BTreeMap::new(),
        }
    }

    /// The error of a field, if any (for the template).
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
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
}

/// `?saved=N` after a confirmed change.
#[derive(Debug, Deserialize)]
pub struct Saved {
    saved: Option<u64>,
}

/// The Campaign Settings page.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    axum::extract::Query(saved): axum::extract::Query<Saved>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    render(
        StatusCode::OK,
        &SettingsPage {
            chrome: Chrome::of(&current, "settings"),
            form: SettingsForm::of(&stored.settings),
            version: stored.version,
            saved: saved.saved,
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
    let mut shown = SettingsForm::of(&settings);
    if value("status_refresh").is_none() {
        shown.status_refresh = String::new();
    }
    shown.errors = errors;
    (settings, shown)
}

/// Field errors put next to their fields (`status_mapping[2].status` → that row).
fn place_errors(form: &mut SettingsForm, error: &mapping::SettingsError) {
    for field_error in error.field_errors() {
        let mut placed = false;
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
