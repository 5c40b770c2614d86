//! `webhooks register|list|remove`: this deployment's webhook on the configured CM lists.

use engine::admin::WebhookChange;
use serde_json::json;

use crate::cli::WebhooksCommand;
use crate::context::{Context, Failure, Report};

pub async fn run(command: WebhooksCommand, context: &Context) -> Result<Report, Failure> {
    let engine = context.engine().await?;
    match command {
        WebhooksCommand::Register { url } => {
            let full = context.intake_url(&url).await?;
            let changes = engine.register_webhooks(&full).await?;
            Ok(Report::new(lines(&changes), json!(changes)))
        }
        WebhooksCommand::Remove { url } => {
            let full = context.intake_url(&url).await?;
            let changes = engine.remove_webhooks(&full).await?;
            let text = if changes.is_empty() {
                "no webhook of this deployment on the configured lists".to_owned()
            } else {
                lines(&changes)
            };
            Ok(Report::new(text, json!(changes)))
        }
        WebhooksCommand::List { url } => {
            let full = match url.as_deref() {
                Some(base) => Some(context.intake_url(base).await?),
                None => None,
            };
            let hooks = engine.webhooks(full.as_deref()).await?;
            let mut text = String::new();
            if hooks.is_empty() {
                text += "no webhooks on the configured lists";
            }
            for hook in &hooks {
                text += &format!(
                    "{}  {}  {}  [{}]  {}{}\n",
                    hook.list_id,
                    hook.webhook_id,
                    hook.url,
                    hook.events.join(","),
                    hook.status,
                    if hook.ours { "  (this deployment)" } else { "" }
                );
            }
            Ok(Report::new(text, json!(hooks)))
        }
    }
}

fn lines(changes: &[WebhookChange]) -> String {
    let mut text = String::new();
    for change in changes {
        text += &match change {
            WebhookChange::Created { list_id, webhook_id } => {
                format!("list {list_id}: registered (webhook {webhook_id})\n")
            }
            WebhookChange::AlreadyRegistered { list_id, webhook_id } => {
                format!("list {list_id}: already registered (webhook {webhook_id})\n")
            }
            WebhookChange::Removed { list_id, webhook_id } => format!("list {list_id}: removed webhook {webhook_id}\n"),
        };
    }
    text
}
