//! `forget ADDRESS`: erase one person from the state table (a data-subject request): every item
//! holding their address, their person key or one of their webhook events' dedupe keys is
//! removed or rewritten. Salesforce and Campaign Monitor keep their own records.

use serde_json::json;
use state::dynamo::PersonNeedles;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, address: &str) -> Result<Report, Failure> {
    // The store first: it installs the deployment's peppers the person's keys are made with.
    let store = context.store().await?;
    let Some(needles) = PersonNeedles::of(address) else {
        return Err(Failure(format!(
            "`{}` is not an email address; nothing was changed",
            mapping::email::redact_email(address)
        )));
    };
    context.progress("scanning the state table (twice: the person's webhook events first)…");
    let erasure = store.forget(&needles).await?;
    Ok(Report::new(
        format!(
            "{}: {} items removed, {} rewritten ({} scanned). Salesforce and Campaign Monitor keep their own records.",
            mapping::email::redact_email(&needles.address),
            erasure.removed,
            erasure.rewritten,
            erasure.scanned
        ),
        json!({"removed": erasure.removed, "rewritten": erasure.rewritten, "scanned": erasure.scanned}),
    ))
}
