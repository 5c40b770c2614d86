//! `webhooks register|list|remove`: this deployment's webhook on the configured CM lists;
//! `webhooks events`: what the intake recorded and is not applied yet.

use engine::admin::WebhookChange;
use mapping::email::redact_email;
use serde_json::json;
use state::{EventState, WebhookEventStore as _};

use crate::cli::WebhooksCommand;
use crate::context::{Context, Failure, Report};

pub async fn run(command: WebhooksCommand, context: &Context) -> Result<Report, Failure> {
    match command {
        WebhooksCommand::Events { failed } => events(context, failed).await,
        WebhooksCommand::Register { url } => {
            let full = context.intake_url(&url).await?;
            let changes = context.engine().await?.register_webhooks(&full).await?;
            Ok(Report::new(lines(&changes), json!(changes)))
        }
        WebhooksCommand::Remove { url } => {
            let full = context.intake_url(&url).await?;
            let changes = context.engine().await?.remove_webhooks(&full).await?;
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
            let hooks = context.engine().await?.webhooks(full.as_deref()).await?;
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

/// Pending batches' events not applied, oldest first.
async fn events(context: &Context, failed_only: bool) -> Result<Report, Failure> {
    let batches = context.store().await?.pending_webhook_batches(None, 10_000).await?;
    let mut text = String::new();
    let mut listed = Vec::new();
    for batch in &batches {
        for event in &batch.events {
            let (state, reason) = match &event.state {
                EventState::Applied { .. } => continue,
                EventState::Received => ("received", ""),
                EventState::Failed { reason } => ("failed", reason.as_str()),
            };
            if failed_only && state != "failed" {
                continue;
            }
            let email = redact_email(event.payload["EmailAddress"].as_str().unwrap_or_default());
            let kind = event.payload["State"]
                .as_str()
                .or(event.payload["Type"].as_str())
                .unwrap_or_default();
            text += &format!(
                "{}  {}  {kind:<12}  {email:<24}  {state}  {reason}\n",
                event.received_at.format("%Y-%m-%d %H:%M:%S"),
                event.list_id
            );
            listed.push(json!({"received_at": event.received_at, "list_id": event.list_id, "kind": kind, "email": email, "state": state, "reason": reason, "batch": batch.batch}));
        }
    }
    if listed.is_empty() {
        text += if failed_only {
            "no failed webhook events"
        } else {
            "every recorded webhook event is applied"
        };
    }
    Ok(Report::new(text, json!(listed)))
}

fn lines(changes: &[WebhookChange]) -> String {
    let mut text = String::new();
    for change in changes {
        text += &match change {
            WebhookChange::Created { list_id, webhook_id } => {
                format!("list {list_id}: registered (webhook {webhook_id})\n")
            }
            WebhookChange::Reactivated { list_id, webhook_id } => {
                format!("list {list_id}: reactivated (webhook {webhook_id} had been deactivated by Campaign Monitor)\n")
            }
            WebhookChange::AlreadyRegistered { list_id, webhook_id } => {
                format!("list {list_id}: already registered (webhook {webhook_id})\n")
            }
            WebhookChange::Removed { list_id, webhook_id } => format!("list {list_id}: removed webhook {webhook_id}\n"),
        };
    }
    text
}
