//! The audit of administrators' changes (the console's Audit page, `cm-sf-admin audit`): who
//! changed what and when, kept `run_retention_days` like runs. Every admin operation that
//! changes the deployment records itself here, from the console or the CLI alike.

use chrono::Utc;
use mapping::Settings;
use state::{AuditEntry, AuditStore};

/// The actor of a change made with `cm-sf-admin`.
pub const CLI_ACTOR: &str = "cli";

/// Keeps one change. A change already made is not undone when its record cannot be written:
/// the failure is logged at ERROR (the audit has a gap; the change itself stands).
pub(crate) async fn record<S: AuditStore>(
    store: &S,
    settings: Option<&Settings>,
    actor: &str,
    action: String,
    versions: Option<(Option<u64>, u64)>,
) {
    let at = Utc::now();
    let entry = AuditEntry {
        at,
        actor: actor.to_owned(),
        action,
        version_before: versions.and_then(|v| v.0),
        version_after: versions.map(|v| v.1),
        expires_at: settings.map(|s| s.run_expires_at(at)),
    };
    if let Err(error) = store.record_change(&entry).await {
        tracing::error!(%error, actor, action = %entry.action, "a change was made but its audit entry could not be written");
    }
}

/// A settings change in words: the paths that changed (the first ten).
pub(crate) fn settings_action(paths: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut text = format!(
        "settings changed: {}",
        paths.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ")
    );
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    text
}
