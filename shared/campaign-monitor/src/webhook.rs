//! The payload CM posts to a list webhook: one list, a batch of `Subscribe`, `Update` and
//! `Deactivate` events. Unsigned: whoever receives it must authenticate the URL itself.

use serde::{Deserialize, Serialize};

use crate::types::CustomField;

/// A webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookBatch {
    /// The list.
    #[serde(rename = "ListID")]
    pub list_id: String,
    /// The events, one or more.
    pub events: Vec<WebhookEvent>,
}

/// The three event types CM sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookEventType {
    /// Subscribed (or reactivated).
    Subscribe,
    /// Details changed (maybe the address).
    Update,
    /// Left the list: unsubscribed, bounced or deleted.
    Deactivate,
}

impl WebhookEventType {
    /// CM's name for it (the `Type` of an event). Stable: stored keys are built from it.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::Subscribe => "Subscribe",
            WebhookEventType::Update => "Update",
            WebhookEventType::Deactivate => "Deactivate",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEvent {
    /// Type.
    #[serde(rename = "Type")]
    pub event_type: WebhookEventType,
    /// CM local `YYYY-MM-DD HH:MM:SS`.
    pub date: String,
    /// The address (for `Update`, the new one).
    pub email_address: String,
    /// Name; may be empty.
    #[serde(default)]
    pub name: String,
    /// Custom fields; keys are plain names.
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
    /// `Subscribe` only; not always an IP (`"TypeManual"` for hand-added subscribers).
    #[serde(default, rename = "SignupIPAddress", skip_serializing_if = "Option::is_none")]
    pub signup_ip_address: Option<String>,
    /// `Update` only: the address before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_email_address: Option<String>,
    /// `Update`/`Deactivate`: the state after (`Active`, `Unsubscribed`, `Bounced`, `Deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
