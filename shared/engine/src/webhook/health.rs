//! The daily webhook check of the scheduled run: a webhook CM deactivated (its URL kept
//! failing) posts nothing more, silently; the check reports it where admins look, with the fix.

use chrono::Utc;
use mapping::Settings;
use serde::Serialize;
use state::{Clock, ClockStore, RunFailure, RunStore, Scope};

use crate::core::{Engine, EngineError};
use crate::report::record_report;

/// How often the scheduled run checks the webhooks.
pub const HEALTH_CHECK_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// A webhook CM no longer posts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InactiveWebhook {
    /// The CM list.
    pub list_id: String,
    /// The WebhookID.
    pub webhook_id: String,
    /// CM's status for it.
    pub status: String,
}

/// The daily check of the webhooks CM posts to.
#[derive(Debug)]
pub struct WebhookHealth<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: ClockStore + RunStore, P> WebhookHealth<'e, S, P> {
    /// The check for `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        WebhookHealth { engine }
    }

    /// Once a day: every configured list's Deactivate webhooks, and those CM deactivated,
    /// recorded as a run of scope `webhooks` (one failure each, with the fix) and logged at
    /// ERROR. `None` when the day's check was made already.
    pub async fn check(&self, settings: &Settings) -> Result<Option<Vec<InactiveWebhook>>, EngineError> {
        let now = Utc::now();
        if let Some(last) = self.engine.store.last_done(Clock::WebhookHealth).await?
            && now - last < HEALTH_CHECK_EVERY
        {
            return Ok(None);
        }
        let mut inactive = Vec::new();
        for list_id in &settings.cm_lists {
            for hook in self.engine.cm.webhooks(list_id).await? {
                if hook.events.iter().any(|e| e == "Deactivate") && !hook.status.eq_ignore_ascii_case("Active") {
                    inactive.push(InactiveWebhook {
                        list_id: list_id.clone(),
                        webhook_id: hook.webhook_id,
                        status: hook.status,
                    });
                }
            }
        }
        if !inactive.is_empty() {
            tracing::error!(
                inactive = inactive.len(),
                "Campaign Monitor deactivated webhooks: unsubscribes and bounces arrive only through the list backstop until they are reactivated"
            );
            self.record_inactive(settings, &inactive).await?;
        }
        self.engine.store.mark_done(Clock::WebhookHealth, now).await?;
        Ok(Some(inactive))
    }

    async fn record_inactive(&self, settings: &Settings, inactive: &[InactiveWebhook]) -> Result<(), EngineError> {
        let counts = std::collections::BTreeMap::from([("inactive_webhooks".to_owned(), inactive.len() as u64)]);
        let failures: Vec<RunFailure> = inactive
            .iter()
            .map(|hook| {
                RunFailure::new(
                    &format!("list {} webhook {}", hook.list_id, hook.webhook_id),
                    &format!(
                        "deactivated by Campaign Monitor (status `{}`); fix the intake, then `cm-sf-admin webhooks register --url <WebhookUrl>` reactivates it",
                        hook.status
                    ),
                    Some("WEBHOOK_INACTIVE"),
                )
            })
            .collect();
        Ok(record_report(self.engine.store.as_ref(), settings, Scope::Webhooks, counts, &failures).await?)
    }
}
