//! `audit`: the changes made to this deployment, newest first.

use serde_json::json;
use state::AuditStore;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, last: usize) -> Result<Report, Failure> {
    let entries = context.store().await?.recent_changes(last).await?;
    let mut text = String::new();
    if entries.is_empty() {
        text += "no changes recorded";
    }
    for entry in &entries {
        let versions = match (entry.version_before, entry.version_after) {
            (before, Some(after)) => format!(
                "  settings v{} -> v{after}",
                before.map_or_else(|| "-".to_owned(), |v| v.to_string())
            ),
            _ => String::new(),
        };
        text += &format!(
            "{}  {}  {}{versions}\n",
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            entry.action
        );
    }
    Ok(Report::new(text, json!(entries)))
}
