//! Audit: every change made to the deployment, from the console or the CLI, newest first (the
//! same records as `cm-sf-admin audit`), kept run_retention_days.

use askama::Template;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, refusal, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// Changes listed at most.
const CHANGES_SHOWN: usize = 200;

/// One change as a row.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    /// When, UTC.
    pub at: String,
    /// Who: a Salesforce user id (marked when it is the signed-in user) or `cli`.
    pub actor: String,
    /// What.
    pub action: String,
    /// `v1 → v2`, where settings changed.
    pub versions: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    changes: Vec<ChangeRow>,
}

/// The newest changes.
pub async fn list<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    let entries = match app.store.recent_changes(CHANGES_SHOWN).await {
        Ok(entries) => entries,
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The audit could not be read: {error}"),
            );
        }
    };
    let changes = entries
        .into_iter()
        .map(|entry| ChangeRow {
            at: entry.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: match entry.actor.as_str() {
                "cli" => "cm-sf-admin (CLI)".to_owned(),
                id if id == current.user_id => format!("{id} (you)"),
                id => id.to_owned(),
            },
            action: entry.action,
            versions: match (entry.version_before, entry.version_after) {
                (before, Some(after)) => format!(
                    "v{} → v{after}",
                    before.map_or_else(|| "-".to_owned(), |v| v.to_string())
                ),
                _ => String::new(),
            },
        })
        .collect();
    render(
        StatusCode::OK,
        &AuditPage {
            chrome: Chrome::of(&current, "audit"),
            changes,
        },
    )
}
