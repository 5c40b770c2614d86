//! Response and request shapes of the CM API, as documented, lenient where CM is loose
//! (counts sometimes arrive as strings; optional fields go missing).

use serde::{Deserialize, Deserializer, Serialize};

/// Reads an integer sent as a number or as a numeric string (CM does both).
pub fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(i64),
        Float(f64),
        Text(String),
    }
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Float(f) if f.fract() == 0.0 => Ok(f as i64),
        NumberOrText::Float(f) => Err(serde::de::Error::custom(format!("expected a whole number, got {f}"))),
        NumberOrText::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a number, got \"{t}\""))),
    }
}

/// A client of the account (`GET /clients.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientSummary {
    /// ClientID.
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// Name.
    pub name: String,
}

/// A client's details (`GET /clients/{id}.json`): only what the product reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientDetails {
    /// BasicDetails.
    pub basic_details: ClientBasicDetails,
}

/// `BasicDetails` of a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientBasicDetails {
    /// ClientID.
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// The client's time zone, a display string: `(GMT+10:00) Canberra, Melbourne, Sydney`.
    #[serde(default)]
    pub time_zone: String,
}

/// A list of a client (`GET /clients/{id}/lists.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSummary {
    /// ListID.
    #[serde(rename = "ListID")]
    pub list_id: String,
    /// Name.
    pub name: String,
}

/// A list an address belongs to (`listsforemail.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListMembership {
    /// ListID.
    #[serde(rename = "ListID")]
    pub list_id: String,
    /// List name.
    #[serde(default)]
    pub list_name: String,
    /// `Active`, `Unsubscribed`, `Bounced`, `Deleted`, `Unconfirmed`.
    pub subscriber_state: String,
    /// When the address was added (CM local time).
    #[serde(default)]
    pub date_subscriber_added: String,
}

impl ListMembership {
    /// The subscriber's state on the list, typed. A state CM may add later reads as
    /// unsubscribed: it is not one in which the address still receives email.
    pub fn state(&self) -> mapping::people::SubscriberState {
        use mapping::people::SubscriberState;
        match self.subscriber_state.as_str() {
            "Active" => SubscriberState::Active,
            "Unconfirmed" => SubscriberState::Unconfirmed,
            "Bounced" => SubscriberState::Bounced,
            "Deleted" => SubscriberState::Deleted,
            _ => SubscriberState::Unsubscribed,
        }
    }
}

/// A sent campaign (`campaigns.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SentCampaign {
    /// CampaignID.
    #[serde(rename = "CampaignID")]
    pub campaign_id: String,
    /// Name.
    pub name: String,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// CM local `YYYY-MM-DD HH:MM:SS`.
    pub sent_date: String,
    /// Recipients.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub total_recipients: i64,
    /// Tags (may be empty or missing).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A scheduled or draft campaign.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnsentCampaign {
    /// CampaignID.
    #[serde(rename = "CampaignID")]
    pub campaign_id: String,
    /// Name.
    pub name: String,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// CM local creation date.
    #[serde(default)]
    pub date_created: String,
    /// CM local scheduled date (scheduled campaigns).
    #[serde(default)]
    pub date_scheduled: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The paged envelope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Page<T> {
    /// Records.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    /// 1-based.
    #[serde(deserialize_with = "lenient_i64")]
    pub page_number: i64,
    /// Page size.
    #[serde(deserialize_with = "lenient_i64")]
    pub page_size: i64,
    /// Pages in all.
    #[serde(deserialize_with = "lenient_i64")]
    pub number_of_pages: i64,
    /// Records in all.
    #[serde(deserialize_with = "lenient_i64")]
    pub total_number_of_records: i64,
}

impl<T> Page<T> {
    /// Whether this is the page asked for in a listing to trust: a repeated or skipped page,
    /// or an absurd count of pages, stops the walk with an error rather than looping for ever
    /// or losing rows. An empty listing may answer with no pages at all.
    pub(crate) fn check(&self, endpoint: &str, asked: i64) -> Result<(), crate::CmError> {
        let wrong_page = self.number_of_pages > 0 && self.page_number != asked;
        if wrong_page || self.number_of_pages > crate::MAX_PAGES {
            return Err(crate::CmError::Decode {
                endpoint: endpoint.to_owned(),
                detail: format!(
                    "asked for page {asked}, got page {} of {}",
                    self.page_number, self.number_of_pages
                ),
            });
        }
        Ok(())
    }
}

/// A campaign summary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Name (v3.3).
    #[serde(default)]
    pub name: String,
    /// Recipients.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub recipients: i64,
    /// All opens.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub total_opened: i64,
    /// Unique opens.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub unique_opened: i64,
    /// Clicks.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub clicks: i64,
    /// Unsubscribes.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub unsubscribed: i64,
    /// Bounces.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub bounced: i64,
    /// Spam complaints.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub spam_complaints: i64,
    /// Forwards.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub forwards: i64,
    /// Likes.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub likes: i64,
    /// Mentions.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub mentions: i64,
}

impl Summary {
    /// The summary as the mapping crate's stat map.
    pub fn to_stats(&self) -> mapping::statistics::CampaignSummary {
        use mapping::statistics::CampaignStat::*;
        [
            (Recipients, self.recipients),
            (TotalOpened, self.total_opened),
            (UniqueOpened, self.unique_opened),
            (Clicks, self.clicks),
            (Unsubscribed, self.unsubscribed),
            (Bounced, self.bounced),
            (SpamComplaints, self.spam_complaints),
            (Forwards, self.forwards),
            (Likes, self.likes),
            (Mentions, self.mentions),
        ]
        .into_iter()
        .collect()
    }
}

/// A campaign tag (`tags.json`); the count arrives as a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Name.
    pub name: String,
    /// Campaigns with the tag.
    #[serde(deserialize_with = "lenient_i64", default)]
    pub number_of_campaigns: i64,
}

/// A custom field value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomField {
    /// Plain field name.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// One subscriber (`GET /subscribers/{listid}.json?email=`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subscriber {
    /// Address.
    pub email_address: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Last state change (CM local).
    #[serde(default)]
    pub date: String,
    /// `Active`, `Unsubscribed`, ...
    pub state: String,
    /// Custom fields.
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
}

/// The states a list's subscribers are listed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListState {
    /// `active.json`.
    Active,
    /// `unsubscribed.json`.
    Unsubscribed,
    /// `bounced.json`.
    Bounced,
    /// `deleted.json`.
    Deleted,
}

impl ListState {
    /// The resource name.
    pub fn resource(self) -> &'static str {
        match self {
            ListState::Active => "active",
            ListState::Unsubscribed => "unsubscribed",
            ListState::Bounced => "bounced",
            ListState::Deleted => "deleted",
        }
    }
}

/// A subscriber as a list-by-state listing gives it, with only what the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSubscriber {
    /// The address, normalised.
    pub email: String,
    /// When the state changed (CM local `YYYY-MM-DD HH:MM:SS`).
    pub date: String,
    /// The state.
    pub state: String,
}

/// A list webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Webhook {
    /// WebhookID.
    #[serde(rename = "WebhookID")]
    pub webhook_id: String,
    /// Subscribed events.
    #[serde(default)]
    pub events: Vec<String>,
    /// Target URL (holds our secret token: never log it).
    pub url: String,
    /// `Active` or a failure state.
    #[serde(default)]
    pub status: String,
    /// `Json` or `Xml`.
    #[serde(default)]
    pub payload_format: String,
}

/// CM's error body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorBody {
    #[serde(deserialize_with = "lenient_i64", default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// OAuth tokens as CM issues them; persist `refresh_token` after every refresh.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthTokens {
    /// Bearer token.
    pub access_token: String,
    /// Refresh token (CM issues a new one with each refresh).
    pub refresh_token: String,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: i64,
}

impl std::fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}
