//! "Sync now" (`cm-sf-admin sync [--campaign ID]`, the console's Links page): a sync asked
//! through the schedule's own event, so the sync function runs it with its own credentials.

use events::Event;
use events::publisher::{EventSink, Publisher};
use state::LinkStore;

use crate::core::{EngineError, publish};
use crate::report::new_run_id;

/// Requests a sync of one linked CM campaign (or, with `None`, a scheduled run) and returns
/// the run id it will have. A campaign that is not linked is refused, changing nothing.
pub async fn request_sync<S: LinkStore, P: EventSink>(
    store: &S,
    publisher: &Publisher<P>,
    cm_campaign_id: Option<&str>,
    requested_by: &str,
) -> Result<String, EngineError> {
    if let Some(cm) = cm_campaign_id
        && store.link(cm).await?.is_none()
    {
        return Err(EngineError::Invalid(format!(
            "CM campaign {cm} is not linked (see `cm-sf-admin links`)"
        )));
    }
    let run_id = new_run_id();
    publish(
        publisher,
        &[Event::sync_requested(&run_id, cm_campaign_id, false, requested_by)],
    )
    .await?;
    Ok(run_id)
}
