//! The endpoints the sync uses, typed: discovery, CM's clock, campaign lists and summaries,
//! subscribers and webhooks (activity streams are in [`activity`](crate::activity)).

use chrono::{DateTime, Utc};
use mapping::CmTimestamp;
use reqwest::Method;
use serde_json::Value;

use crate::types::{
    ClientDetails, ClientSummary, ListMembership, ListState, ListSubscriber, ListSummary, Page, SentCampaign,
    Subscriber, Summary, UnsentCampaign, Webhook,
};
use crate::{CmClient, CmError, SentFilter, webhook};

impl CmClient {
    /// The account's clients.
    pub async fn clients(&self) -> Result<Vec<ClientSummary>, CmError> {
        self.get("clients.json", &[]).await
    }

    /// A client's details (its time zone).
    pub async fn client_details(&self, client_id: &str) -> Result<ClientDetails, CmError> {
        self.get(&format!("clients/{client_id}.json"), &[]).await
    }

    /// A client's lists.
    pub async fn lists(&self, client_id: &str) -> Result<Vec<ListSummary>, CmError> {
        self.get(&format!("clients/{client_id}/lists.json"), &[]).await
    }

    /// The client's lists an address is on, with its state on each.
    pub async fn lists_for_email(&self, client_id: &str, email: &str) -> Result<Vec<ListMembership>, CmError> {
        self.get(
            &format!("clients/{client_id}/listsforemail.json"),
            &[("email", email.to_owned())],
        )
        .await
    }

    /// CM's current time in the account's zone (the safe upper bound of a poll).
    pub async fn system_date(&self) -> Result<CmTimestamp, CmError> {
        let value: Value = self.get("systemdate.json", &[]).await?;
        let text = value["SystemDate"].as_str().unwrap_or_default();
        CmTimestamp::parse(text).map_err(|e| CmError::Decode {
            endpoint: "systemdate.json".into(),
            detail: e.to_string(),
        })
    }

    /// Every sent campaign matching the filter, all pages, newest first.
    pub async fn sent_campaigns(&self, client_id: &str, filter: &SentFilter) -> Result<Vec<SentCampaign>, CmError> {
        let path = format!("clients/{client_id}/campaigns.json");
        let mut campaigns = Vec::new();
        let mut page = 1;
        loop {
            let page_size = filter.page_size.unwrap_or(1000).clamp(10, 1000);
            let mut query = vec![
                ("page", page.to_string()),
                ("pagesize", page_size.to_string()),
                ("orderdirection", "desc".to_owned()),
            ];
            if let Some(from) = filter.sent_from {
                query.push(("sentfromdate", from.format("%Y-%m-%d").to_string()));
            }
            if let Some(to) = filter.sent_to {
                query.push(("senttodate", to.format("%Y-%m-%d").to_string()));
            }
            if !filter.tags.is_empty() {
                query.push(("tags", filter.tags.join(",")));
            }
            let result: Page<SentCampaign> = self.get(&path, &query).await?;
            result.check(&path, page)?;
            campaigns.extend(result.results);
            if result.page_number >= result.number_of_pages {
                return Ok(campaigns);
            }
            page += 1;
        }
    }

    /// A list's subscribers in one state whose state changed at or after `since` (CM local
    /// time; all of them without it), every page of 1,000, oldest change first:
    /// `lists/{id}/{unsubscribed|bounced|deleted|active}.json`. Custom fields are dropped as read.
    pub async fn list_subscribers(
        &self,
        list_id: &str,
        state: ListState,
        since: Option<CmTimestamp>,
    ) -> Result<Vec<ListSubscriber>, CmError> {
        let path = format!("lists/{list_id}/{}.json", state.resource());
        let mut subscribers = Vec::new();
        let mut page: i64 = 1;
        loop {
            let mut query = vec![
                ("page", page.to_string()),
                ("pagesize", "1000".to_owned()),
                ("orderfield", "date".to_owned()),
                ("orderdirection", "asc".to_owned()),
            ];
            if let Some(since) = since {
                query.push(("date", since.to_cm_string()));
            }
            let result: Page<Subscriber> = self.get(&path, &query).await?;
            result.check(&path, page)?;
            subscribers.extend(result.results.into_iter().map(|s| ListSubscriber {
                email: mapping::email::normalize_email(&s.email_address),
                date: s.date,
                state: s.state,
            }));
            if result.page_number >= result.number_of_pages {
                return Ok(subscribers);
            }
            page += 1;
        }
    }

    /// Scheduled campaigns.
    pub async fn scheduled_campaigns(&self, client_id: &str) -> Result<Vec<UnsentCampaign>, CmError> {
        self.get(&format!("clients/{client_id}/scheduled.json"), &[]).await
    }

    /// Draft campaigns.
    pub async fn draft_campaigns(&self, client_id: &str) -> Result<Vec<UnsentCampaign>, CmError> {
        self.get(&format!("clients/{client_id}/drafts.json"), &[]).await
    }

    /// A campaign's summary.
    pub async fn summary(&self, campaign_id: &str) -> Result<Summary, CmError> {
        self.get(&format!("campaigns/{campaign_id}/summary.json"), &[]).await
    }

    /// One subscriber of a list.
    pub async fn subscriber(&self, list_id: &str, email: &str) -> Result<Subscriber, CmError> {
        self.get(&format!("subscribers/{list_id}.json"), &[("email", email.to_owned())])
            .await
    }

    /// The webhooks of a list.
    pub async fn webhooks(&self, list_id: &str) -> Result<Vec<Webhook>, CmError> {
        self.get(&format!("lists/{list_id}/webhooks.json"), &[]).await
    }

    /// Registers a JSON webhook for the given events; returns its id.
    pub async fn create_webhook(
        &self,
        list_id: &str,
        url: &str,
        events: &[webhook::WebhookEventType],
    ) -> Result<String, CmError> {
        let body = serde_json::json!({"Events": events, "Url": url, "PayloadFormat": "json"});
        let path = format!("lists/{list_id}/webhooks.json");
        let value = self.call(Method::POST, &path, &[], Some(&body)).await?;
        value.as_str().map(str::to_owned).ok_or(CmError::Decode {
            endpoint: path,
            detail: "expected the webhook id".into(),
        })
    }

    /// Removes a webhook.
    pub async fn delete_webhook(&self, list_id: &str, webhook_id: &str) -> Result<(), CmError> {
        self.call(
            Method::DELETE,
            &format!("lists/{list_id}/webhooks/{webhook_id}.json"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Activates a webhook again (CM deactivates one whose URL keeps failing).
    pub async fn activate_webhook(&self, list_id: &str, webhook_id: &str) -> Result<(), CmError> {
        self.call(
            Method::PUT,
            &format!("lists/{list_id}/webhooks/{webhook_id}/activate.json"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Asks CM to post a test event to the webhook; `Ok` when the URL answered 2xx.
    pub async fn test_webhook(&self, list_id: &str, webhook_id: &str) -> Result<(), CmError> {
        self.call(
            Method::GET,
            &format!("lists/{list_id}/webhooks/{webhook_id}/test.json"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Converts a CM local date to UTC in the client's zone.
    pub fn to_utc(&self, local: &str) -> Result<DateTime<Utc>, CmError> {
        CmTimestamp::parse(local)
            .map(|t| t.to_utc(self.zone))
            .map_err(|e| CmError::Decode {
                endpoint: "(date)".into(),
                detail: e.to_string(),
            })
    }
}
