//! `settings show|apply|set|diff`: the settings document, validated before it is stored.

use std::path::Path;

use engine::admin::SettingsAdmin;
use mapping::Settings;
use serde_json::json;
use state::SettingsStore;
use state::dynamo::DynamoStore;

use crate::cli::SettingsCommand;
use crate::context::{Context, Failure, Report};
use mapping::settings::document as settings_doc;

pub async fn run(command: SettingsCommand, context: &Context) -> Result<Report, Failure> {
    match command {
        // Reads only the file: no AWS access needed.
        SettingsCommand::Fields { file } => fields(&file),
        SettingsCommand::Show => show(&context.store().await?).await,
        SettingsCommand::Apply { file } => {
            let store = context.store().await?;
            let submitted = read_settings_file(&file)?;
            let stored = store.load_settings().await?;
            let version = save(&store, submitted, stored).await?;
            Ok(Report::new(
                format!("settings stored (version {version})"),
                json!({"version": version}),
            ))
        }
        SettingsCommand::Set { key, value } => set(&context.store().await?, &key, &value).await,
        SettingsCommand::Diff { file } => diff(&context.store().await?, &file).await,
    }
}

/// `settings fields FILE`: every Salesforce field the file names, with its type.
fn fields(file: &Path) -> Result<Report, Failure> {
    let fields = read_settings_file(file)?.required_fields();
    let text = fields
        .iter()
        .map(|f| {
            format!(
                "{}.{}  {:?}{}",
                f.object,
                f.field,
                f.kind,
                if f.unique_external_id {
                    "  unique external id"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Report::new(text, json!(fields)))
}

async fn show(store: &DynamoStore) -> Result<Report, Failure> {
    let Some(stored) = store.load_settings().await? else {
        return Err(Failure(
            "no settings stored yet: `cm-sf-admin settings apply settings.json`".into(),
        ));
    };
    Ok(Report::new(
        format!(
            "# version {}, saved {}\n{}",
            stored.version,
            stored.updated_at,
            stored.settings.to_json()
        ),
        json!({"version": stored.version, "updated_at": stored.updated_at, "settings": stored.settings}),
    ))
}

async fn set(store: &DynamoStore, key: &str, value: &str) -> Result<Report, Failure> {
    let Some(stored) = store.load_settings().await? else {
        return Err(Failure(
            "no settings stored yet: apply a whole document first (`cm-sf-admin settings apply FILE`)".into(),
        ));
    };
    let mut document = serde_json::to_value(&stored.settings)?;
    let before = document.clone();
    settings_doc::set_path(&mut document, key, settings_doc::parse_value(value))?;
    let submitted = Settings::from_json(&document.to_string())?;
    let changes = settings_doc::diff(&before, &serde_json::to_value(&submitted)?);
    if changes.is_empty() {
        return Ok(Report::new(
            format!("{key} already has that value; nothing stored"),
            json!({"version": stored.version, "changes": []}),
        ));
    }
    let version = save(store, submitted, Some(stored)).await?;
    let lines: Vec<String> = changes.iter().map(settings_doc::describe).collect();
    Ok(Report::new(
        format!("{}\nsettings stored (version {version})", lines.join("\n")),
        json!({"version": version, "changes": changes}),
    ))
}

async fn diff(store: &DynamoStore, file: &Path) -> Result<Report, Failure> {
    let submitted = read_settings_file(file)?;
    let stored = store.load_settings().await?;
    let changes = SettingsAdmin::new(store).prepare(submitted, stored.as_ref())?.changes;
    let text = if changes.is_empty() {
        "no changes".to_owned()
    } else {
        let lines: Vec<String> = changes.iter().map(settings_doc::describe).collect();
        format!(
            "{}\n{} change(s); `settings apply` stores them",
            lines.join("\n"),
            changes.len()
        )
    };
    Ok(Report::new(
        text,
        json!({"changes": changes, "stored_version": stored.map(|s| s.version)}),
    ))
}

fn read_settings_file(file: &Path) -> Result<Settings, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    Ok(Settings::from_json(&text)?)
}

/// Validates and stores, expecting the version that was read (optimistic locking): the same
/// operation as the console's Save → Confirm.
async fn save(
    store: &DynamoStore,
    submitted: Settings,
    stored: Option<state::VersionedSettings>,
) -> Result<u64, Failure> {
    let admin = SettingsAdmin::new(store);
    let change = admin.prepare(submitted, stored.as_ref())?;
    Ok(admin.store(&change, engine::admin::CLI_ACTOR).await?)
}
