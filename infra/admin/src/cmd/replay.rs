//! `replay [--dry-run]`: every invocation record in the failed-invocations queue (Lambda's
//! on-failure destination, after its retries) goes back on the bus as the event it was, and so
//! does every recorded webhook event not applied yet (failed, never handed on, or parked after
//! every attempt: its count starts again).

use std::collections::BTreeSet;

use events::{Event, EventBridgeEvent, Trigger};
use serde_json::{Value, json};
use state::WebhookEventStore as _;

use crate::context::{Context, Failure, Report};

/// Receives at most this many records a call (SQS's maximum).
const BATCH: i32 = 10;

/// Pending webhook batches re-driven by one replay at most.
const MAX_BATCHES: usize = 10_000;

/// One record of the queue, read.
struct Record {
    receipt: String,
    event: Event,
    error: String,
}

pub async fn run(context: &Context, dry_run: bool) -> Result<Report, Failure> {
    let queue = context.config().failed_invocations_queue_url()?.to_owned();
    let sqs = aws_sdk_sqs::Client::new(&lambda_support::aws().await);
    let engine = if dry_run { None } else { Some(context.engine().await?) };
    let (mut replayed, mut unreadable) = (Vec::new(), 0usize);
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(BATCH)
            // Long enough to publish the batch; a record not removed comes back for the next run.
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| sqs_failure(&format!("reading {queue}"), e))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let Some(record) = read_record(&message) else {
                unreadable += 1;
                continue;
            };
            context.progress(&format!("{}: {}", record.event.idempotency_key(), record.error));
            if let Some(engine) = &engine {
                engine.publish(std::slice::from_ref(&record.event)).await?;
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(&record.receipt)
                    .send()
                    .await
                    .map_err(|e| sqs_failure("removing a replayed record", e))?;
            } else {
                // A dry run looks at one batch and hands it back at once.
                sqs.change_message_visibility()
                    .queue_url(&queue)
                    .receipt_handle(&record.receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(|e| sqs_failure("returning a record", e))?;
            }
            replayed.push(json!({"detail_type": record.event.detail_type(), "key": record.event.idempotency_key(), "error": record.error}));
        }
        if dry_run {
            break;
        }
    }
    let already: BTreeSet<String> = replayed
        .iter()
        .filter_map(|r| r["key"].as_str().map(str::to_owned))
        .collect();
    let webhook_events = replay_unapplied_events(context, engine.as_deref(), &already).await?;
    let verb = if dry_run { "would be replayed" } else { "replayed" };
    let mut text = format!(
        "{} failed invocation(s) and {} recorded webhook event(s) not applied {verb}",
        replayed.len(),
        webhook_events.len()
    );
    if unreadable > 0 {
        text += &format!("; {unreadable} record(s) not readable as one of our events were left in the queue");
    }
    Ok(Report::new(
        text,
        json!({"dry_run": dry_run, "replayed": replayed, "unreadable": unreadable, "webhook_events": webhook_events}),
    ))
}

/// Webhook batches with events recorded but not applied (a failure an admin has fixed since, or
/// a hand-off that never happened): handed to the consumer again, which applies each event once.
async fn replay_unapplied_events(
    context: &Context,
    engine: Option<&crate::context::AdminEngine>,
    already: &BTreeSet<String>,
) -> Result<Vec<Value>, Failure> {
    let store = context.store().await?;
    let mut pending = store.pending_webhook_batches(None, MAX_BATCHES).await?;
    // Deliveries parked after every attempt: an admin asking again is a fresh start.
    pending.extend(engine::admin::webhooks::restart_parked(&store, MAX_BATCHES, engine.is_none()).await?);
    let mut events = Vec::new();
    let mut replayed = Vec::new();
    for batch in pending {
        let unapplied: Vec<_> = batch
            .events
            .iter()
            .filter(|e| !matches!(e.state, state::EventState::Applied { .. }))
            .collect();
        let event = Event::webhook_batch_received(&batch.batch, &batch.list_id, unapplied.len(), batch.received_at);
        if unapplied.is_empty() || already.contains(event.idempotency_key()) {
            continue;
        }
        replayed.extend(unapplied.iter().map(|e| {
            json!({"key": e.dedupe_key, "batch": batch.batch, "list_id": e.list_id, "received_at": e.received_at, "state": e.state})
        }));
        events.push(event);
    }
    if let Some(engine) = engine {
        engine.publish(&events).await?;
    }
    Ok(replayed)
}

fn sqs_failure<E: std::error::Error>(what: &str, error: E) -> Failure {
    Failure(format!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(&error)))
}

/// An invocation record (`requestPayload` is the EventBridge event the function got): the event
/// to publish again. The schedule's trigger becomes a sync request of every linked campaign.
fn read_record(message: &aws_sdk_sqs::types::Message) -> Option<Record> {
    let record: Value = serde_json::from_str(message.body()?).ok()?;
    let envelope: EventBridgeEvent = serde_json::from_value(record["requestPayload"].clone()).ok()?;
    let event = match Trigger::try_from(envelope).ok()? {
        Trigger::Event(event) => event,
        Trigger::Schedule | Trigger::HotSchedule => Event::sync_requested(&engine::new_run_id(), None, false, "replay"),
    };
    let error = record["responsePayload"]["errorMessage"]
        .as_str()
        .unwrap_or("no error message")
        .to_owned();
    Some(Record {
        receipt: message.receipt_handle()?.to_owned(),
        event,
        error,
    })
}
