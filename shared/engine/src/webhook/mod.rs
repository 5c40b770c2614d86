//! CM list webhooks (PRODUCT.md §3.7): the intake records each delivery as one batch (only what
//! the rules need of each event; an event wrong on its own is refused alone) and hands the batch
//! on through EventBridge; the consumer applies a batch at a time through the sync's own rules
//! and writer.
//!
//! CM's payloads are unsigned: the URL's secret token is the only authenticator, compared in
//! constant time before anything else is done.

mod consumer;
mod health;
mod intake;

pub use consumer::{BatchOutcome, EventOutcome, WebhookConsumer, planned_change};
pub use health::{HEALTH_CHECK_EVERY, InactiveWebhook, WebhookHealth};
pub use intake::{
    Delivery, EVENTS_PER_BATCH, IntakeEngine, MAX_BODY_BYTES, MAX_REASON_CHARS, MAX_REFUSED_KEPT, MAX_STATE_CHARS,
    Refused, RefusedEvent, ValidEvent, WebhookTokens, check_token, read_delivery,
};

/// How long recorded events are kept.
pub const EVENT_TTL_DAYS: i64 = 30;
