//! Advanced: every setting of PRODUCT.md §2 that Campaign Settings does not show, as fields
//! ([`FIELDS`], one row per setting, read from and written into the settings document by its
//! path), and the whole document as JSON for those who prefer it. Both are validated as
//! `cm-sf-admin settings apply` validates a file (the same messages, naming the field, shown
//! next to it), then the same preview and confirm.

use askama::Template;
use axum::extract::{Extension, Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use engine::admin::SettingsAdmin;
use mapping::Settings;
use serde_json::Value;

use super::settings::{load, preview_page};
use super::{Chrome, render};
use crate::session::Session;
use crate::{App, ConsoleSink, ConsoleStore};

/// How a setting is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text box.
    Text,
    /// A text box; empty means "none".
    OptionalText,
    /// A checkbox.
    Bool,
    /// A whole number.
    Number,
    /// One value per line.
    List,
    /// One of these (the document's value, and its words).
    Choice(&'static [(&'static str, &'static str)]),
}

/// One setting as a field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its group on the page.
    pub group: &'static str,
    /// Its path in the settings document (dots between levels).
    pub path: &'static str,
    /// Its label.
    pub label: &'static str,
    /// What it does.
    pub help: &'static str,
    /// How it is edited.
    pub kind: Kind,
}

const fn field(group: &'static str, path: &'static str, label: &'static str, help: &'static str, kind: Kind) -> Field {
    Field {
        group,
        path,
        label,
        help,
        kind,
    }
}

const CM: &str = "Campaign Monitor";
const TEMPLATE: &str = "New Salesforce Campaigns (auto-create and backfill)";
const MEMBERS: &str = "Campaign members and people";
const CADENCE: &str = "When campaigns are synced";
const FIELD_NAMES: &str = "Salesforce field names";

/// Every setting Advanced shows as a field.
pub const FIELDS: &[Field] = &[
    field(
        CM,
        "cm_clients",
        "CM client ids",
        "One ClientID per line: whose campaigns are synced.",
        Kind::List,
    ),
    field(
        CM,
        "cm_lists",
        "CM list ids",
        "One ListID per line: whose unsubscribes and bounces reach Leads and Contacts (empty: none).",
        Kind::List,
    ),
    field(
        CM,
        "cm_timezone",
        "CM account time zone",
        "An IANA name such as Australia/Sydney: CM reports times in the account's zone.",
        Kind::Text,
    ),
    field(
        TEMPLATE,
        "campaign_template.name_pattern",
        "Name pattern",
        "{name}, {subject}, {sent_date} are replaced; at most 80 characters once filled.",
        Kind::Text,
    ),
    field(
        TEMPLATE,
        "campaign_template.type",
        "Type",
        "The Campaign's Type picklist value (empty: none).",
        Kind::OptionalText,
    ),
    field(
        TEMPLATE,
        "campaign_template.status",
        "Status",
        "The Campaign's Status picklist value (empty: none).",
        Kind::OptionalText,
    ),
    field(
        TEMPLATE,
        "campaign_template.is_active",
        "Active",
        "Whether new Campaigns are active.",
        Kind::Bool,
    ),
    field(
        TEMPLATE,
        "campaign_template.parent_id",
        "Parent Campaign Id",
        "New Campaigns go under this Campaign (empty: none).",
        Kind::OptionalText,
    ),
    field(
        MEMBERS,
        "add_missing_members",
        "Add recipients who are not members",
        "Who of the recipients becomes a campaign member.",
        Kind::Choice(&[
            ("all_recipients", "Every matched recipient"),
            (
                "engaged",
                "Only those who opened, clicked, bounced, unsubscribed or complained",
            ),
            ("never", "None: only existing members are updated"),
        ]),
    ),
    field(
        MEMBERS,
        "match_preference",
        "When an address matches both a Lead and a Contact",
        "Which record becomes the member.",
        Kind::Choice(&[
            ("most_recently_modified", "The one modified most recently"),
            ("contact_first", "The Contact"),
            ("lead_first", "The Lead"),
        ]),
    ),
    field(
        MEMBERS,
        "opt_out_policy",
        "Unsubscribes opt people out of email",
        "When an unsubscribe sets Email Opt Out on the Lead or Contact.",
        Kind::Choice(&[
            ("never", "Never"),
            ("any_list", "An unsubscribe from any configured list"),
            ("all_lists", "Once subscribed to none of the configured lists"),
        ]),
    ),
    field(
        MEMBERS,
        "record_bounces",
        "Record bounces on Leads and Contacts",
        "Hard bounces mark the address as bounced.",
        Kind::Bool,
    ),
    field(
        CADENCE,
        "sync_cadence.enabled",
        "Sync young campaigns more often than old ones",
        "Off: every linked campaign is synced at every scheduled run, forever.",
        Kind::Bool,
    ),
    field(
        CADENCE,
        "sync_cadence.hot_hours",
        "Every 5 minutes for (hours)",
        "Campaigns younger than this are also synced by the hot schedule; 0: none.",
        Kind::Number,
    ),
    field(
        CADENCE,
        "sync_cadence.every_run_days",
        "Every run until (days)",
        "Days since the send.",
        Kind::Number,
    ),
    field(
        CADENCE,
        "sync_cadence.hourly_until_days",
        "Hourly until (days)",
        "Then hourly.",
        Kind::Number,
    ),
    field(
        CADENCE,
        "sync_cadence.daily_until_days",
        "Daily until (days)",
        "Then daily; older campaigns are retired (checked daily, synced on demand).",
        Kind::Number,
    ),
    field(
        CADENCE,
        "activity_overlap_minutes",
        "Re-read overlap (minutes)",
        "Each sync reads this much of the last one's activity again, for records CM adds late.",
        Kind::Number,
    ),
    field(
        CADENCE,
        "run_retention_days",
        "Keep runs and the audit for (days)",
        "Runs, their failures and the audit are dropped after this.",
        Kind::Number,
    ),
    field(
        FIELD_NAMES,
        "campaign_link_field",
        "Campaign link field",
        "The Campaign field holding the CM CampaignID.",
        Kind::Text,
    ),
    field(
        FIELD_NAMES,
        "member_fields.activity_date",
        "Member activity date field",
        "Date/Time of the latest activity applied (the Activity Date guard).",
        Kind::Text,
    ),
    field(
        FIELD_NAMES,
        "member_fields.activity_kind",
        "Member activity kind field",
        "The kind of that activity.",
        Kind::Text,
    ),
    field(
        FIELD_NAMES,
        "member_fields.once_only_marker",
        "Member once-only marker field",
        "When the single Once Only update was used.",
        Kind::Text,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.first_opened",
        "First opened field",
        "Date/Time (empty: not kept).",
        Kind::OptionalText,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.last_opened",
        "Last opened field",
        "Date/Time (empty: not kept).",
        Kind::OptionalText,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.first_clicked",
        "First clicked field",
        "Date/Time (empty: not kept).",
        Kind::OptionalText,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.last_clicked",
        "Last clicked field",
        "Date/Time (empty: not kept).",
        Kind::OptionalText,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.last_clicked_url",
        "Last clicked URL field",
        "Text; needs the last clicked field (empty: not kept).",
        Kind::OptionalText,
    ),
    field(
        FIELD_NAMES,
        "member_detail_fields.bounce_type",
        "Bounce type field",
        "Text: Hard, else Soft (empty: not kept).",
        Kind::OptionalText,
    ),
];

/// A field as the page shows it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its setting.
    pub field: Field,
    /// The form control's id (the path with dots as underscores).
    pub id: String,
    /// Its value as text.
    pub value: String,
    /// Checked, for a checkbox.
    pub checked: bool,
    /// Its problem.
    pub error: Option<String>,
}

impl Row {
    /// Whether `value` is the chosen one, for a choice.
    pub fn chose(&self, value: &&str) -> bool {
        self.value == *value
    }

    fn is(&self, kind: Kind) -> bool {
        self.field.kind == kind
    }

    /// A text box.
    pub fn is_text(&self) -> bool {
        self.is(Kind::Text) || self.is(Kind::OptionalText)
    }

    /// A checkbox.
    pub fn is_bool(&self) -> bool {
        self.is(Kind::Bool)
    }

    /// A number box.
    pub fn is_number(&self) -> bool {
        self.is(Kind::Number)
    }

    /// A list box.
    pub fn is_list(&self) -> bool {
        self.is(Kind::List)
    }

    /// The choices, for a choice.
    pub fn choices(&self) -> &'static [(&'static str, &'static str)] {
        match self.field.kind {
            Kind::Choice(choices) => choices,
            _ => &[],
        }
    }
}

fn pointer(path: &str) -> String {
    format!("/{}", path.replace('.', "/"))
}

/// The rows of `document` (a settings document as JSON).
fn rows_of(document: &Value) -> Vec<Row> {
    FIELDS
        .iter()
        .map(|field| {
            let value = document.pointer(&pointer(field.path)).unwrap_or(&Value::Null);
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
                _ => String::new(),
            };
            Row {
                field: *field,
                id: field.path.replace('.', "_"),
                value: text,
                checked: value.as_bool().unwrap_or(false),
                error: None,
            }
        })
        .collect()
}

/// Writes the submitted fields into `document`; a value that is not even of its kind is the
/// row's error.
fn apply(document: &mut Value, submitted: &[(String, String)]) -> Vec<Row> {
    let given = |path: &str| submitted.iter().find(|(k, _)| k == path).map(|(_, v)| v.as_str());
    let mut rows = rows_of(document);
    for row in &mut rows {
        let text = given(row.field.path).unwrap_or_default().trim().to_owned();
        let value = match row.field.kind {
            Kind::Text => Value::String(text.clone()),
            Kind::OptionalText if text.is_empty() => Value::Null,
            Kind::OptionalText => Value::String(text.clone()),
            Kind::Bool => Value::Bool(given(row.field.path).is_some()),
            Kind::Number => match text.parse::<u32>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    row.error = Some(format!("{}: `{text}` is not a whole number", row.field.path));
                    Value::String(text.clone())
                }
            },
            Kind::List => Value::Array(
                text.split(['\n', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            Kind::Choice(choices) if choices.iter().any(|(v, _)| *v == text) => Value::String(text.clone()),
            Kind::Choice(_) => {
                row.error = Some(format!("{}: choose one of the options", row.field.path));
                Value::String(text.clone())
            }
        };
        row.checked = value.as_bool().unwrap_or(false);
        row.value = text;
        if let Some(slot) = document.pointer_mut(&pointer(row.field.path)) {
            *slot = value;
        } else if let Some((parent, key)) = row.field.path.rsplit_once('.')
            && let Some(Value::Object(map)) = document.pointer_mut(&pointer(parent))
        {
            // An optional field the document leaves out.
            map.insert(key.to_owned(), value);
        }
    }
    rows
}

/// The rows of one group, in the order of [`FIELDS`].
#[derive(Debug, Clone)]
pub struct Group {
    /// Its legend.
    pub name: &'static str,
    /// Its rows.
    pub rows: Vec<Row>,
}

fn grouped(rows: Vec<Row>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some(group) if group.name == row.field.group => group.rows.push(row),
            _ => groups.push(Group {
                name: row.field.group,
                rows: vec![row],
            }),
        }
    }
    groups
}

#[derive(Template)]
#[template(path = "advanced.html")]
struct AdvancedPage {
    chrome: Chrome,
    groups: Vec<Group>,
    /// Problems no field shows.
    other_errors: Vec<(String, String)>,
    document: String,
    version: u64,
    /// Each problem of the JSON document: the field it names and what is wrong.
    errors: Vec<(String, String)>,
}

/// The stored settings, to edit.
pub async fn show<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let document = stored.settings.to_json();
    render(
        StatusCode::OK,
        &AdvancedPage {
            chrome: Chrome::of(&current, "advanced"),
            groups: grouped(serde_json::from_str(&document).map(|d| rows_of(&d)).unwrap_or_default()),
            other_errors: Vec::new(),
            document,
            version: stored.version,
            errors: Vec::new(),
        },
    )
}

/// Preview of the edited fields or document: its changes field by field, nothing stored; what
/// does not validate comes back as typed, each problem next to its field.
pub async fn preview<S: ConsoleStore, P: ConsoleSink>(
    State(app): State<App<S, P>>,
    Extension(current): Extension<Session>,
    Form(submitted): Form<Vec<(String, String)>>,
) -> Response {
    let stored = match load(&app).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let stored_document = stored.settings.to_json();
    let admin = SettingsAdmin::new(app.store.as_ref());
    if let Some((_, document)) = submitted.iter().find(|(k, _)| k == "document") {
        return match Settings::from_json(document).and_then(|proposed| admin.prepare(proposed, Some(&stored))) {
            Ok(change) => preview_page(&current, &change, stored.version),
            Err(error) => render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &AdvancedPage {
                    chrome: Chrome::of(&current, "advanced"),
                    groups: grouped(
                        serde_json::from_str(&stored_document)
                            .map(|d| rows_of(&d))
                            .unwrap_or_default(),
                    ),
                    other_errors: Vec::new(),
                    document: document.clone(),
                    version: stored.version,
                    errors: error.field_errors().into_iter().map(|e| (e.field, e.problem)).collect(),
                },
            ),
        };
    }
    let mut document: Value = serde_json::from_str(&stored_document).unwrap_or(Value::Null);
    let mut rows = apply(&mut document, &submitted);
    let mut other_errors = Vec::new();
    if rows.iter().all(|r| r.error.is_none()) {
        let prepared = Settings::from_json(&document.to_string()).and_then(|p| admin.prepare(p, Some(&stored)));
        match prepared {
            Ok(change) => return preview_page(&current, &change, stored.version),
            Err(error) => {
                for problem in error.field_errors() {
                    // The row the problem names (a problem of `sync_cadence` goes to its first row).
                    let named = rows.iter_mut().find(|r| {
                        r.field.path == problem.field
                            || r.field.path.starts_with(&format!("{}.", problem.field))
                            || problem.field.starts_with(&format!("{}.", r.field.path))
                            || problem.field.starts_with(&format!("{}[", r.field.path))
                    });
                    match named {
                        Some(row) if row.error.is_none() => {
                            row.error = Some(format!("{}: {}", problem.field, problem.problem));
                        }
                        _ => other_errors.push((problem.field, problem.problem)),
                    }
                }
            }
        }
    }
    render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &AdvancedPage {
            chrome: Chrome::of(&current, "advanced"),
            groups: grouped(rows),
            other_errors,
            document: stored_document,
            version: stored.version,
            errors: Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_field_reads_back_what_it_shows_and_names_a_setting_of_the_document() {
        let mut settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], mapping::Tz::UTC);
        settings.member_detail_fields.last_opened = Some("CM_Last_Opened__c".into());
        settings.cm_lists = vec!["a".repeat(32), "b".repeat(32)];
        let document: Value = serde_json::from_str(&settings.to_json()).unwrap();
        let rows = rows_of(&document);
        // The form as a browser posts it: text as shown, checkboxes only when ticked.
        let submitted: Vec<(String, String)> = rows
            .iter()
            .filter(|r| !r.is_bool() || r.checked)
            .map(|r| {
                (
                    r.field.path.to_owned(),
                    if r.is_bool() { "on".into() } else { r.value.clone() },
                )
            })
            .collect();
        let mut edited = document.clone();
        let rows = apply(&mut edited, &submitted);
        assert!(rows.iter().all(|r| r.error.is_none()));
        assert_eq!(Settings::from_json(&edited.to_string()).unwrap(), settings, "unchanged");
        for field in FIELDS {
            let top = field.path.split('.').next().unwrap();
            assert!(document.get(top).is_some(), "{} is not a setting", field.path);
        }
    }
}
