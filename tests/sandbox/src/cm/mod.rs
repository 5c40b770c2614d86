//! The Campaign Monitor API v3.3 surface: auth (API key, OAuth with expiry and refresh),
//! discovery, campaign summaries, paged activity with the `date` filter, subscribers, webhooks.
//! Every date is account-local time with no offset, as CM sends it.

mod http;
mod resources;

pub use http::dispatch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::response::IntoResponse;
use chrono::{NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::scenario::{CmAccount, CmActivity, CmCampaign, CmList};

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One activity row, parsed and held compactly (a million-recipient send has millions): the
/// address once, the list shared by every row of it, the rare details boxed.
#[derive(Debug, Clone)]
pub struct Row {
    /// Local date.
    pub date: NaiveDateTime,
    email: Box<str>,
    list_id: Arc<str>,
    details: Option<Box<RowDetails>>,
}

/// What only some rows have: a click's URL, a bounce's type and reason, a served date.
#[derive(Debug, Clone, Default)]
struct RowDetails {
    url: Option<Box<str>>,
    bounce_type: Option<Box<str>>,
    reason: Option<Box<str>>,
    served_date: Option<Box<str>>,
}

impl Row {
    /// Email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// List.
    pub fn list_id(&self) -> &str {
        &self.list_id
    }

    /// A click's URL.
    pub fn url(&self) -> Option<&str> {
        self.details.as_ref()?.url.as_deref()
    }

    /// A bounce's type (`Soft`, `Hard`).
    pub fn bounce_type(&self) -> Option<&str> {
        self.details.as_ref()?.bounce_type.as_deref()
    }

    /// A bounce's reason.
    pub fn reason(&self) -> Option<&str> {
        self.details.as_ref()?.reason.as_deref()
    }

    /// The `Date` text served instead of `date` (a malformed row, for tests).
    pub fn served_date(&self) -> Option<&str> {
        self.details.as_ref()?.served_date.as_deref()
    }
}

/// A recipient of a campaign, held compactly (a million-recipient send has a million).
#[derive(Debug, Clone)]
pub struct Recipient {
    email: Box<str>,
    list_id: Arc<str>,
}

impl Recipient {
    /// Address.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The list it was sent from.
    pub fn list_id(&self) -> &str {
        &self.list_id
    }
}

/// A campaign with its activity indexed by resource, sorted by date, and its recipients sorted
/// by address (a page of them is a slice, not a sort of the whole send).
#[derive(Debug, Clone)]
pub struct CampaignState {
    /// Scenario data (its activity and recipients live below, once).
    pub meta: CmCampaign,
    /// `opens`, `clicks`, `bounces`, `unsubscribes`, `spam` → rows by date.
    pub activity: HashMap<&'static str, Vec<Row>>,
    /// Recipients by address.
    pub recipients: Vec<Recipient>,
}

impl CampaignState {
    /// A scenario's campaign, its activity and recipients moved into the state.
    pub fn new(campaign: CmCampaign) -> Result<CampaignState, String> {
        CampaignState::build(campaign, &mut ListIds::default())
    }

    fn build(mut campaign: CmCampaign, list_ids: &mut ListIds) -> Result<CampaignState, String> {
        let activity = std::mem::take(&mut campaign.activity);
        let recipients = std::mem::take(&mut campaign.recipients);
        let mut state = CampaignState {
            meta: campaign,
            activity: HashMap::new(),
            recipients: recipients
                .into_iter()
                .map(|r| Recipient {
                    email: r.email.into_boxed_str(),
                    list_id: list_ids.of(r.list_id),
                })
                .collect(),
        };
        // Stable: equal addresses keep the scenario's order.
        state.recipients.sort_by(|a, b| a.email.cmp(&b.email));
        // Appended, then sorted once (stable: equal dates keep the scenario's order, as
        // `add_activity` keeps them); one sorted insert each would be quadratic.
        for activity in activity {
            let (resource, row) = activity_row(activity, list_ids)?;
            state.activity.entry(resource).or_default().push(row);
        }
        for rows in state.activity.values_mut() {
            rows.sort_by_key(|r| r.date);
        }
        Ok(state)
    }
}

/// A webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// WebhookID.
    pub id: String,
    /// Events.
    pub events: Vec<String>,
    /// Url.
    pub url: String,
    /// Active / Unable to deliver.
    pub active: bool,
    /// Json / Xml.
    pub format: String,
}

/// The CM account's state.
#[derive(Debug)]
pub struct CmWorld {
    /// Scenario account.
    pub account: CmAccount,
    /// Zone.
    pub zone: Tz,
    /// Campaigns by id.
    pub campaigns: BTreeMap<String, CampaignState>,
    /// Lists by id.
    pub lists: BTreeMap<String, CmList>,
    /// Webhooks by list.
    pub webhooks: BTreeMap<String, Vec<Webhook>>,
    /// OAuth access tokens → (expires, calls, revoked).
    pub tokens: HashMap<String, (chrono::DateTime<Utc>, u64)>,
    /// Valid refresh tokens.
    pub refresh_tokens: Vec<String>,
}

fn resource_of(kind: &str) -> Option<&'static str> {
    match kind {
        "open" | "opens" => Some("opens"),
        "click" | "clicks" => Some("clicks"),
        "bounce" | "bounces" => Some("bounces"),
        "unsubscribe" | "unsubscribes" => Some("unsubscribes"),
        "spam" => Some("spam"),
        _ => None,
    }
}

/// Parses a CM local date.
pub fn parse_local(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, DATE_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .ok()
}

impl CmWorld {
    /// Loads the account.
    pub fn new(account: &CmAccount) -> Result<CmWorld, String> {
        CmWorld::from_account(account.clone())
    }

    /// [`CmWorld::new`], taking the account: its campaigns, activity and lists move into the
    /// world rather than being copied (a million-recipient account is held once).
    pub fn from_account(mut account: CmAccount) -> Result<CmWorld, String> {
        let zone: Tz = account
            .timezone
            .parse()
            .map_err(|_| format!("cm.timezone `{}` is not an IANA zone", account.timezone))?;
        let mut campaigns = BTreeMap::new();
        let mut list_ids = ListIds::default();
        for campaign in std::mem::take(&mut account.campaigns) {
            let state = CampaignState::build(campaign, &mut list_ids)?;
            campaigns.insert(state.meta.id.clone(), state);
        }
        let mut tokens = HashMap::new();
        let mut refresh_tokens = Vec::new();
        if let Some(oauth) = &account.oauth {
            tokens.insert(
                oauth.access_token.clone(),
                (Utc::now() + chrono::Duration::seconds(oauth.token_lifetime_secs), 0),
            );
            refresh_tokens.push(oauth.refresh_token.clone());
        }
        let lists = std::mem::take(&mut account.lists)
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect();
        Ok(CmWorld {
            // What the handlers read of the account; its campaigns and lists live above, once.
            account,
            zone,
            campaigns,
            lists,
            webhooks: BTreeMap::new(),
            tokens,
            refresh_tokens,
        })
    }

    /// The account's zone as CM displays a client's `TimeZone`: its standard offset, then a
    /// name (`(GMT+10:00) Australia/Sydney`; CM writes place names, as in its API docs'
    /// `(GMT+10:00) Canberra, Melbourne, Sydney`).
    pub fn zone_display(&self) -> String {
        use chrono::{Datelike, Offset, TimeZone};
        let year = self.now_local().year();
        let seconds = [1, 7]
            .into_iter()
            .filter_map(|month| chrono::NaiveDate::from_ymd_opt(year, month, 1))
            .map(|date| self.zone.offset_from_utc_date(&date).fix().local_minus_utc())
            .min()
            .unwrap_or(0);
        let gmt = if seconds == 0 {
            "GMT".to_owned()
        } else {
            let sign = if seconds < 0 { '-' } else { '+' };
            format!("GMT{sign}{:02}:{:02}", seconds.abs() / 3600, seconds.abs() % 3600 / 60)
        };
        format!("({gmt}) {}", self.zone.name())
    }

    /// "Now" in account-local time.
    pub fn now_local(&self) -> NaiveDateTime {
        self.account
            .now
            .as_deref()
            .and_then(parse_local)
            .unwrap_or_else(|| Utc::now().with_timezone(&self.zone).naive_local())
    }
}

/// List ids shared by the rows that name them.
#[derive(Debug, Default)]
struct ListIds(HashMap<String, Arc<str>>);

impl ListIds {
    fn of(&mut self, list_id: String) -> Arc<str> {
        match self.0.get(&list_id) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared: Arc<str> = Arc::from(list_id.as_str());
                self.0.insert(list_id, Arc::clone(&shared));
                shared
            }
        }
    }
}

fn activity_row(activity: CmActivity, list_ids: &mut ListIds) -> Result<(&'static str, Row), String> {
    let resource = resource_of(&activity.kind).ok_or_else(|| format!("unknown activity kind `{}`", activity.kind))?;
    let date = parse_local(&activity.date).ok_or_else(|| format!("bad activity date `{}`", activity.date))?;
    let CmActivity {
        email,
        list_id,
        url,
        bounce_type,
        reason,
        served_date,
        ..
    } = activity;
    let details = RowDetails {
        url: url.map(String::into_boxed_str),
        bounce_type: bounce_type.map(String::into_boxed_str),
        reason: reason.map(String::into_boxed_str),
        served_date: served_date.map(String::into_boxed_str),
    };
    let has_details = details.url.is_some()
        || details.bounce_type.is_some()
        || details.reason.is_some()
        || details.served_date.is_some();
    Ok((
        resource,
        Row {
            date,
            email: email.into_boxed_str(),
            list_id: list_ids.of(list_id),
            details: has_details.then(|| Box::new(details)),
        },
    ))
}

/// Adds one activity to a campaign at run time (the control API), in date order.
pub fn add_activity(state: &mut CampaignState, activity: &CmActivity) -> Result<(), String> {
    let (resource, row) = activity_row(activity.clone(), &mut ListIds::default())?;
    let rows = state.activity.entry(resource).or_default();
    let at = rows.partition_point(|r| r.date <= row.date);
    rows.insert(at, row);
    Ok(())
}
