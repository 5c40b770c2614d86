//! Reports kept as run records: something found outside a campaign sync (events refused at the
//! intake, a list's refused writes, deactivated webhooks) is kept as a finished run of its
//! scope with its failures, so `cm-sf-admin runs` / `run` show it where admins look.

use std::collections::BTreeMap;

use state::{RunFailure, RunRecord, RunStart, RunStatus, RunStore, Scope, StoreError};

/// Keeps a report as a finished run of `scope`.
pub(crate) async fn record_report<S: RunStore>(
    store: &S,
    settings: &mapping::Settings,
    scope: Scope<'_>,
    counts: BTreeMap<String, u64>,
    failures: &[RunFailure],
) -> Result<(), StoreError> {
    record_report_once(store, settings, &new_run_id(), scope, counts, failures).await
}

/// [`record_report`] under a given run id: a second call with the same id (a retried
/// invocation) adds nothing.
pub(crate) async fn record_report_once<S: RunStore>(
    store: &S,
    settings: &mapping::Settings,
    run_id: &str,
    scope: Scope<'_>,
    counts: BTreeMap<String, u64>,
    failures: &[RunFailure],
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let started = store
        .start_run(&RunRecord {
            run_id: run_id.to_owned(),
            scope: scope.key(),
            started_at: now,
            ended_at: None,
            status: RunStatus::Running,
            counts: counts.clone(),
            failure_count: 0,
            resumed_at: None,
            expires_at: Some(settings.run_expires_at(now)),
        })
        .await?;
    if started == RunStart::Continued {
        return Ok(());
    }
    store.add_run_failures(run_id, failures).await?;
    store
        .finish_run(run_id, now, RunStatus::CompletedWithFailures, &counts)
        .await
}

/// A scheduled run's own record, so the console's Overview and `cm-sf-admin runs` show when
/// the schedule last ran, what it found and requested, and whether it failed (`failure`).
/// A retried invocation (same id) records its own ending over the first one's.
pub(crate) async fn record_scheduled_run<S: RunStore>(
    store: &S,
    settings: &mapping::Settings,
    run_id: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    counts: BTreeMap<String, u64>,
    failure: Option<RunFailure>,
) -> Result<(), StoreError> {
    store
        .start_run(&RunRecord {
            run_id: run_id.to_owned(),
            scope: Scope::ScheduledRun.key(),
            started_at,
            ended_at: None,
            status: RunStatus::Running,
            counts: counts.clone(),
            failure_count: 0,
            resumed_at: None,
            expires_at: Some(settings.run_expires_at(started_at)),
        })
        .await?;
    let status = match failure {
        Some(failure) => {
            store.add_run_failures(run_id, &[failure]).await?;
            RunStatus::Failed
        }
        None => RunStatus::Succeeded,
    };
    store.finish_run(run_id, chrono::Utc::now(), status, &counts).await
}

/// A time-ordered run id.
pub fn new_run_id() -> String {
    state::new_run_id(chrono::Utc::now(), uuid::Uuid::new_v4().as_u128() as u32)
}

/// The run id of a report about `what`, dated `at`: the same for the same report however often
/// it is recorded (a retried invocation), so [`record_report_once`] keeps it once.
pub(crate) fn report_run_id(at: chrono::DateTime<chrono::Utc>, what: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(what.as_bytes());
    state::new_run_id(at, u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
}
