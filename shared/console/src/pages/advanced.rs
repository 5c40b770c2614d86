//! Advanced: the whole settings document as JSON, for every setting of PRODUCT.md §2 that
//! Campaign Settings does not show. Validated as `cm-sf-admin settings apply` validates a file
//! (the same messages, naming the field), then the same preview and confirm.

use askama::Template;
use axum::extract::{Extension, Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use engine::admin::SettingsAdmin;
use mapping::Settings;
use serde::Deserialize;

use super::settings::{load, preview_page};
use super::{Chrome, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

#[derive(Template)]
#[template(path = "advanced.html")]
struct AdvancedPage {
    chrome: Chrome,
    document: String,
    version: u64,
    /// Each problem: the field it names and what is wrong.
    errors: Vec<(String, String)>,
}

/// The stored document, to edit.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    render(
        StatusCode::OK,
        &AdvancedPage {
            chrome: Chrome::of(&current, "advanced"),
            document: stored.settings.to_json(),
            version: stored.version,
            errors: Vec::new(),
        },
    )
}

/// The submitted document.
#[derive(Debug, Deserialize)]
pub struct Submitted {
    document: String,
}

/// Preview of the edited document: its changes field by field, nothing stored; a document
/// that does not validate comes back as typed, with every problem above it.
pub async fn preview<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(submitted): Form<Submitted>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let prepared = Settings::from_json(&submitted.document)
        .and_then(|proposed| SettingsAdmin::new(app.store.as_ref()).prepare(proposed, Some(&stored)));
    match prepared {
        Ok(change) => preview_page(&current, &change, stored.version),
        Err(error) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &AdvancedPage {
                chrome: Chrome::of(&current, "advanced"),
                document: submitted.document,
                version: stored.version,
                errors: error.field_errors().into_iter().map(|e| (e.field, e.problem)).collect(),
            },
        ),
    }
}
