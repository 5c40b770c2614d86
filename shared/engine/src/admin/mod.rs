//! What an administrator asks of the engine besides a sync (`cm-sf-admin`), one type per
//! topic: manual links and unlinks ([`LinkAdmin`]), the bounded backfill ([`Backfill`]),
//! another attempt for a run's failed people ([`Retry`]), settings changes with their
//! preview and optimistic lock ([`SettingsAdmin`]), webhook registration
//! ([`WebhookAdmin`]) and the configuration check ([`Doctor`]).

pub mod audit;
pub mod backfill;
pub mod doctor;
pub mod links;
pub mod person;
pub mod preview;
pub mod retry;
pub mod settings;
pub mod sync_request;
pub mod webhooks;

pub use audit::CLI_ACTOR;
pub use backfill::{Backfill, BackfillResult};
pub use doctor::{Doctor, Finding, Severity};
pub use links::LinkAdmin;
pub use retry::{Retry, RetryQueued};
pub use settings::{SettingsAdmin, SettingsChange};
pub use webhooks::{WEBHOOK_EVENTS, WebhookAdmin, WebhookChange, WebhookView, redact_webhook_url};
