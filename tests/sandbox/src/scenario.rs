//! The scenario file: everything the two stand-ins serve. Documented in `tests/sandbox/README.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::faults::Faults;

/// A whole scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The Campaign Monitor account.
    pub cm: CmAccount,
    /// The Salesforce org.
    pub sf: SfOrg,
    /// Faults and latency from the start (changeable at run time).
    #[serde(default)]
    pub faults: Faults,
}

/// A CM account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmAccount {
    /// The API key (HTTP Basic user name).
    pub api_key: String,
    /// OAuth application and its first token pair, if OAuth is used.
    #[serde(default)]
    pub oauth: Option<CmOAuth>,
    /// IANA zone of the account: every date is served in it, with no offset.
    pub timezone: String,
    /// "Now" for `systemdate.json`, in account-local time; defaults to the real clock.
    #[serde(default)]
    pub now: Option<String>,
    /// Clients.
    #[serde(default)]
    pub clients: Vec<CmClient>,
    /// Subscriber lists.
    #[serde(default)]
    pub lists: Vec<CmList>,
    /// Campaigns.
    #[serde(default)]
    pub campaigns: Vec<CmCampaign>,
}

impl Default for CmAccount {
    fn default() -> Self {
        CmAccount {
            api_key: "sandbox-api-key".into(),
            oauth: None,
            timezone: "UTC".into(),
            now: None,
            clients: Vec::new(),
            lists: Vec::new(),
            campaigns: Vec::new(),
        }
    }
}

/// CM OAuth application and initial tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmOAuth {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// An access token valid at start.
    pub access_token: String,
    /// Its refresh token.
    pub refresh_token: String,
    /// Lifetime of issued access tokens (CM: 1209600 = 14 days).
    #[serde(default = "default_cm_token_lifetime")]
    pub token_lifetime_secs: i64,
}

fn default_cm_token_lifetime() -> i64 {
    1_209_600
}

/// A CM client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmClient {
    /// ClientID.
    pub id: String,
    /// Name.
    pub name: String,
    /// CM display zone, e.g. "(GMT+10:00) Canberra, Melbourne, Sydney".
    #[serde(default)]
    pub timezone_display: Option<String>,
}

/// A CM list and its subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmList {
    /// ListID.
    pub id: String,
    /// The client it belongs to.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Subscribers.
    #[serde(default)]
    pub subscribers: Vec<CmSubscriber>,
}

/// A list subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmSubscriber {
    /// Address.
    pub email: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// `Active`, `Unconfirmed`, `Unsubscribed`, `Bounced`, `Deleted`.
    #[serde(default = "active")]
    pub state: String,
    /// Date of the last state change (local, `YYYY-MM-DD HH:MM:SS`).
    #[serde(default)]
    pub date: Option<String>,
}

fn active() -> String {
    "Active".into()
}

/// A CM campaign with its recipients and activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmCampaign {
    /// CampaignID.
    pub id: String,
    /// Client.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// `sent`, `scheduled` or `draft`.
    #[serde(default = "sent")]
    pub state: String,
    /// Sent date (sent campaigns), local.
    #[serde(default)]
    pub sent_date: Option<String>,
    /// Creation date (drafts and scheduled), local.
    #[serde(default)]
    pub date_created: Option<String>,
    /// Scheduled date (scheduled), local.
    #[serde(default)]
    pub date_scheduled: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lists sent to.
    #[serde(default)]
    pub list_ids: Vec<String>,
    /// Recipients.
    #[serde(default)]
    pub recipients: Vec<CmRecipient>,
    /// Activity.
    #[serde(default)]
    pub activity: Vec<CmActivity>,
    /// Forward-to-a-friend count.
    #[serde(default)]
    pub forwards: i64,
}

fn sent() -> String {
    "sent".into()
}

/// A recipient of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmRecipient {
    /// Address.
    pub email: String,
    /// List it was sent from.
    pub list_id: String,
}

/// One activity record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmActivity {
    /// `open`, `click`, `bounce`, `unsubscribe` or `spam`.
    pub kind: String,
    /// Address.
    pub email: String,
    /// List.
    pub list_id: String,
    /// Local date `YYYY-MM-DD HH:MM:SS`.
    pub date: String,
    /// Clicked URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `Soft` or `Hard`.
    #[serde(default)]
    pub bounce_type: Option<String>,
    /// Bounce reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The `Date` text served instead of `date` (which still orders the row): a malformed row,
    /// for tests of how the sync survives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_date: Option<String>,
}

/// The Salesforce org.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SfOrg {
    /// The connected app's consumer key (`client_id`, JWT `iss`).
    pub client_id: String,
    /// Its secret (client credentials flow).
    pub client_secret: String,
    /// PEM certificate (or public key) whose private key signs JWT assertions.
    #[serde(default)]
    pub jwt_certificate_pem: Option<String>,
    /// The integration user's username (JWT `sub`).
    pub username: String,
    /// A refresh token that is valid (refresh-token flow).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Language of the stock member status labels: `en`, `ja`, `fr`, `de`, `es`.
    #[serde(default = "english")]
    pub language: String,
    /// Daily API request allocation (`Sforce-Limit-Info`).
    #[serde(default = "default_allocation")]
    pub api_allocation: u64,
    /// API usage already spent at start.
    #[serde(default)]
    pub api_used: u64,
    /// Custom fields per object (`Campaign`, `CampaignMember`, `Lead`, `Contact`).
    #[serde(default)]
    pub custom_fields: BTreeMap<String, Vec<CustomField>>,
    /// Records per object; each a JSON object of field → value, with `Id`.
    #[serde(default)]
    pub records: BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>,
    /// The admin console's connected app (OAuth web server flow).
    #[serde(default)]
    pub console_app: ConsoleApp,
}

/// The admin console's connected app and the people who can sign in to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleApp {
    /// Its consumer key.
    pub client_id: String,
    /// Its registered callback URLs (a `redirect_uri` must be one of them, exactly).
    pub callback_urls: Vec<String>,
    /// Users who may approve a sign-in, with the custom permissions each holds.
    pub users: Vec<ConsoleUser>,
    /// Custom permissions the connected app is given (Setup → Connected App → Custom
    /// Permissions): the identity URL reports these, each with the user's value.
    pub custom_permissions: Vec<String>,
}

/// A user of the org, as the console's sign-in sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// User Id (`005...`).
    pub id: String,
    /// Username.
    pub username: String,
    /// Display name.
    pub name: String,
    /// Custom permissions (API names) granted through their permission sets.
    #[serde(default)]
    pub permissions: Vec<String>,
}

impl Default for ConsoleApp {
    fn default() -> Self {
        ConsoleApp {
            client_id: "sandbox-console-app".into(),
            callback_urls: vec!["http://127.0.0.1:8080/auth/callback".into()],
            users: vec![
                ConsoleUser {
                    id: "005SB00000000A1AAA".into(),
                    username: "ada.admin@sandbox.example".into(),
                    name: "Ada Admin".into(),
                    permissions: vec!["CM_Sync_Console".into()],
                },
                ConsoleUser {
                    id: "005SB00000000V1AAA".into(),
                    username: "victor.viewer@sandbox.example".into(),
                    name: "Victor Viewer".into(),
                    permissions: Vec::new(),
                },
            ],
            custom_permissions: vec!["CM_Sync_Console".into()],
        }
    }
}

impl Default for SfOrg {
    fn default() -> Self {
        SfOrg {
            client_id: "sandbox-consumer-key".into(),
            client_secret: "sandbox-consumer-secret".into(),
            jwt_certificate_pem: None,
            username: "integration@example.com".into(),
            refresh_token: None,
            language: english(),
            api_allocation: default_allocation(),
            api_used: 0,
            custom_fields: BTreeMap::new(),
            records: BTreeMap::new(),
            console_app: ConsoleApp::default(),
        }
    }
}

fn english() -> String {
    "en".into()
}

fn default_allocation() -> u64 {
    100_000
}

/// A custom field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    /// API name, ending in `__c`.
    pub name: String,
    /// `string`, `double`, `datetime`, `date`, `boolean`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// Unique external id (upsert key).
    #[serde(default)]
    pub external_id: bool,
}
