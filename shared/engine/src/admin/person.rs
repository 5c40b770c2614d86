//! A person's failures across recent runs (`cm-sf-admin runs --email`, the console's search on
//! Runs), found by the key of their address: run records keep no whole address.

use state::{RunFailure, RunRecord, RunStore};

use crate::core::EngineError;

/// The runs among the newest `last` in which the person with `email` failed, each with only
/// their failures, newest first. An address that is not one is refused, naming it redacted.
pub async fn failures_of<S: RunStore>(
    store: &S,
    email: &str,
    last: usize,
) -> Result<Vec<(RunRecord, Vec<RunFailure>)>, EngineError> {
    if !mapping::email::is_plausible_email(&mapping::email::normalize_email(email)) {
        return Err(EngineError::Invalid(format!(
            "`{}` is not an email address",
            mapping::email::redact_email(email)
        )));
    }
    // Under the current pepper and, during a key change, the previous one.
    let keys = mapping::email::person_keys(email);
    let mut found = Vec::new();
    for run in store.recent_runs(last).await? {
        if run.failure_count == 0 {
            continue;
        }
        let Some((run, failures)) = store.run(&run.run_id).await? else {
            continue; // expired since it was listed
        };
        let theirs: Vec<RunFailure> = failures
            .into_iter()
            .filter(|f| f.person.as_ref().is_some_and(|p| keys.contains(p)))
            .collect();
        if !theirs.is_empty() {
            found.push((run, theirs));
        }
    }
    Ok(found)
}
