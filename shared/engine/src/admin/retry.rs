//! Retrying a run's failed people (`cm-sf-admin retry`).

use std::collections::BTreeSet;

use events::Event;
use events::publisher::EventSink;
use serde::Serialize;
use serde_json::json;
use state::{AuditStore, FailedRecord, LinkStore, RetryQueue, RunStore, SettingsStore};

use super::audit;

use events::publisher::Publisher;

use crate::core::{EngineError, publish};
use crate::report::new_run_id;

/// What `retry` queued.
#[derive(Debug, Clone, Serialize)]
pub struct RetryQueued {
    /// The CM campaign the run synced.
    pub cm_campaign_id: String,
    /// People (emails) queued for another attempt.
    pub queued: usize,
    /// Failures that are not about a person (e.g. a statistics field): the next sync writes
    /// those again anyway.
    pub not_queued: usize,
    /// The sync run requested to retry them.
    pub run_id: String,
}

/// Another attempt for the people a run failed on. It needs only the state table and the
/// bus (not CM or SF), so the console offers it without the integration's credentials.
#[derive(Debug)]
pub struct Retry<'e, S, P> {
    store: &'e S,
    publisher: &'e Publisher<P>,
}

impl<'e, S: RunStore + LinkStore + RetryQueue + SettingsStore + AuditStore, P: EventSink> Retry<'e, S, P> {
    /// Retries recorded in `store`, their syncs requested through `publisher`.
    pub fn new(store: &'e S, publisher: &'e Publisher<P>) -> Self {
        Retry { store, publisher }
    }

    /// Queues the people a run failed on for one more attempt and requests a sync of the
    /// campaign now. That sync reads those people's whole activity again (CM cannot filter a
    /// campaign's activity by subscriber), applies it, and empties the queue.
    /// `actor` (a Salesforce user id, or [`audit::CLI_ACTOR`]) goes into the audit.
    pub async fn queue(&self, run_id: &str, actor: &str) -> Result<RetryQueued, EngineError> {
        let Some((run, failures)) = self.store.run(run_id).await? else {
            return Err(EngineError::Invalid(format!(
                "no run `{run_id}` (see `cm-sf-admin runs`)"
            )));
        };
        if self.store.link(&run.scope).await?.is_none() {
            return Err(EngineError::Invalid(format!(
                "run `{run_id}` is not a campaign sync (its scope `{}` is not a linked CM campaign)",
                run.scope
            )));
        }
        let people: BTreeSet<&str> = failures.iter().filter_map(|f| f.person.as_deref()).collect();
        let records: Vec<FailedRecord> = people
            .iter()
            .map(|person| {
                let failure = failures.iter().find(|f| f.person.as_deref() == Some(*person));
                FailedRecord {
                    scope: run.scope.clone(),
                    key: (*person).to_owned(),
                    payload: json!({"run_id": run_id, "code": failure.and_then(|f| f.code.clone())}),
                    reason: failure.map(|f| f.reason.clone()).unwrap_or_default(),
                    attempts: 1,
                    first_failed_at: run.started_at,
                }
            })
            .collect();
        self.store.enqueue_failed(&records).await?;
        let retry_run = new_run_id();
        publish(
            self.publisher,
            &[Event::sync_requested(
                &retry_run,
                Some(&run.scope),
                false,
                "admin-retry",
            )],
        )
        .await?;
        let settings = self.store.load_settings().await?;
        audit::record(
            self.store,
            settings.as_ref().map(|s| &s.settings),
            actor,
            format!(
                "retry of run {run_id}: {} people queued, sync {retry_run} of CM campaign {} requested",
                records.len(),
                run.scope
            ),
            None,
        )
        .await;
        Ok(RetryQueued {
            cm_campaign_id: run.scope,
            queued: records.len(),
            not_queued: failures.iter().filter(|f| f.person.is_none()).count(),
            run_id: retry_run,
        })
    }
}
