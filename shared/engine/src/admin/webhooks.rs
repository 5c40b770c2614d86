//! This deployment's webhooks on the configured CM lists (`cm-sf-admin webhooks`).

use serde::Serialize;
use state::SettingsStore;

use crate::core::{Engine, EngineError, load_settings};

/// The CM webhook events the product consumes: `Deactivate` carries unsubscribes and bounces.
pub const WEBHOOK_EVENTS: [campaign_monitor::webhook::WebhookEventType; 1] =
    [campaign_monitor::webhook::WebhookEventType::Deactivate];

/// A webhook of ours on a list, the URL's secret part hidden.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    /// The CM list.
    pub list_id: String,
    /// WebhookID.
    pub webhook_id: String,
    /// URL with the token replaced by `****`.
    pub url: String,
    /// Events.
    pub events: Vec<String>,
    /// CM's status of it.
    pub status: String,
    /// Whether the URL is this deployment's intake URL.
    pub ours: bool,
}

/// What registering did on one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum WebhookChange {
    /// Registered now.
    Created {
        /// The CM list.
        list_id: String,
        /// The new WebhookID.
        webhook_id: String,
    },
    /// There, but deactivated by CM (its URL kept failing): activated again.
    Reactivated {
        /// The CM list.
        list_id: String,
        /// The WebhookID.
        webhook_id: String,
    },
    /// Already there: nothing done.
    AlreadyRegistered {
        /// The CM list.
        list_id: String,
        /// The existing WebhookID.
        webhook_id: String,
    },
    /// Removed.
    Removed {
        /// The CM list.
        list_id: String,
        /// The removed WebhookID.
        webhook_id: String,
    },
}

/// Hides the secret path segment of an intake URL (`…/hooks/<token>` → `…/hooks/****`).
/// Everything after `/hooks/` is hidden, a trailing `/` or a query included; a URL of another
/// shape loses its last path segment.
pub fn redact_webhook_url(url: &str) -> String {
    if let Some((base, _)) = url.split_once("/hooks/") {
        return format!("{base}/hooks/****");
    }
    match url.trim_end_matches('/').rsplit_once('/') {
        Some((base, token)) if !token.is_empty() && !base.ends_with('/') => format!("{base}/****"),
        _ => url.to_owned(),
    }
}

/// The webhooks of the configured lists.
#[derive(Debug)]
pub struct WebhookAdmin<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: SettingsStore, P> WebhookAdmin<'e, S, P> {
    /// The webhooks of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        WebhookAdmin { engine }
    }

    /// Every webhook on the configured lists; `intake_url` (with its token) marks ours.
    pub async fn list(&self, intake_url: Option<&str>) -> Result<Vec<WebhookView>, EngineError> {
        let settings = load_settings(self.engine.store.as_ref()).await?;
        let mut views = Vec::new();
        for list_id in &settings.cm_lists {
            for hook in self.engine.cm.webhooks(list_id).await? {
                views.push(WebhookView {
                    list_id: list_id.clone(),
                    ours: intake_url.is_some_and(|url| same_url(&hook.url, url)),
                    url: redact_webhook_url(&hook.url),
                    webhook_id: hook.webhook_id,
                    events: hook.events,
                    status: hook.status,
                });
            }
        }
        Ok(views)
    }

    /// Registers `intake_url` for [`WEBHOOK_EVENTS`] on every configured list that does not
    /// have it yet.
    pub async fn register(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        let settings = load_settings(self.engine.store.as_ref()).await?;
        if settings.cm_lists.is_empty() {
            return Err(EngineError::Invalid(
                "no lists configured: add their ids to `cm_lists` in the settings first".into(),
            ));
        }
        let mut changes = Vec::new();
        for list_id in &settings.cm_lists {
            let existing = self.engine.cm.webhooks(list_id).await?;
            if let Some(hook) = existing.iter().find(|h| same_url(&h.url, intake_url)) {
                if hook.status.eq_ignore_ascii_case("Active") {
                    changes.push(WebhookChange::AlreadyRegistered {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id.clone(),
                    });
                } else {
                    self.engine.cm.activate_webhook(list_id, &hook.webhook_id).await?;
                    changes.push(WebhookChange::Reactivated {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id.clone(),
                    });
                }
                continue;
            }
            let webhook_id = self
                .engine
                .cm
                .create_webhook(list_id, intake_url, &WEBHOOK_EVENTS)
                .await?;
            changes.push(WebhookChange::Created {
                list_id: list_id.clone(),
                webhook_id,
            });
        }
        Ok(changes)
    }

    /// Removes this deployment's webhooks (those posting to `intake_url`) from the configured
    /// lists; other webhooks are left alone.
    pub async fn remove(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        let settings = load_settings(self.engine.store.as_ref()).await?;
        let mut changes = Vec::new();
        for list_id in &settings.cm_lists {
            for hook in self.engine.cm.webhooks(list_id).await? {
                if same_url(&hook.url, intake_url) {
                    self.engine.cm.delete_webhook(list_id, &hook.webhook_id).await?;
                    changes.push(WebhookChange::Removed {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id,
                    });
                }
            }
        }
        Ok(changes)
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Webhook deliveries parked after every attempt, started again by an admin (`cm-sf-admin
/// replay`): each not-applied event's count back to zero, the batch back on the pending list.
/// Returns the batches (to be handed on with the other pending ones). With `dry_run`, only
/// lists them.
pub async fn restart_parked<S: state::WebhookEventStore>(
    store: &S,
    limit: usize,
    dry_run: bool,
) -> Result<Vec<state::PendingBatch>, state::StoreError> {
    let parked = store.parked_webhook_batches(limit).await?;
    if dry_run {
        return Ok(parked);
    }
    for batch in &parked {
        let fresh: Vec<state::WebhookEventRecord> = batch
            .events
            .iter()
            .filter(|e| !matches!(e.state, state::EventState::Applied { .. }))
            .map(|e| state::WebhookEventRecord {
                attempts: 0,
                ..e.clone()
            })
            .collect();
        store.save_webhook_events(&fresh).await?;
        store.unpark_webhook_batch(&batch.batch).await?;
    }
    Ok(parked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_in_an_intake_url_is_hidden() {
        assert_eq!(
            redact_webhook_url("https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken"),
            "https://x.lambda-url.eu-west-1.on.aws/hooks/****"
        );
        for leaky in [
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken/",
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken?x=1",
            "https://x.lambda-url.eu-west-1.on.aws/hooks/s3cr3t-t0ken//",
        ] {
            assert_eq!(
                redact_webhook_url(leaky),
                "https://x.lambda-url.eu-west-1.on.aws/hooks/****",
                "{leaky}"
            );
        }
        assert_eq!(
            redact_webhook_url("https://proxy.example/in/s3cr3t/"),
            "https://proxy.example/in/****"
        );
        assert_eq!(redact_webhook_url("https://proxy.example"), "https://proxy.example");
        assert!(same_url("https://a/hooks/T/", "https://a/hooks/T"));
        assert!(!same_url("https://a/hooks/T", "https://a/hooks/U"));
    }
}
