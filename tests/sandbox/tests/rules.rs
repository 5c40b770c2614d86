//! Each Salesforce rule the sandbox enforces, shown refusing with the real error code, and the
//! Campaign Monitor behaviours the product relies on, through plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::SocketAddr;

use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Value, json};

const V: &str = "/services/data/v66.0";

struct Sf {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Sf {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{V}/{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn query(&self, soql: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{V}/query", self.base))
            .query(&[("q", soql)])
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{V}/{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create(&self, object: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, &format!("sobjects/{object}"), body)
            .await
    }

    async fn update(&self, object: &str, id: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, &format!("sobjects/{object}/{id}"), body)
            .await
    }
}

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(scenario: Scenario) -> (sandbox::Running, Sf) {
    let running = sandbox::start(scenario, any_addr(), any_addr()).await.unwrap();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/services/oauth2/token", running.sf_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-consumer-key"),
            ("client_secret", "sandbox-consumer-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sf = Sf {
        http,
        base: running.sf_url.clone(),
        token: token["access_token"].as_str().unwrap().to_owned(),
    };
    (running, sf)
}

fn small() -> Scenario {
    generate(&Shape {
        recipients: 40,
        activities: 30,
        ..Shape::default()
    })
}

fn code(body: &Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or_default()
}

async fn new_campaign(sf: &Sf, name: &str) -> String {
    let (status, body) = sf.create("Campaign", json!({"Name": name})).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn a_contact(sf: &Sf) -> String {
    let (_, rows) = sf.query("SELECT Id FROM Contact LIMIT 1").await;
    rows["records"][0]["Id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_person_is_a_member_of_a_campaign_once() {
    let (_running, sf) = start(small()).await;
    let campaign = new_campaign(&sf, "Dup test").await;
    let contact = a_contact(&sf).await;
    let (status, _) = sf
        .create("CampaignMember", json!({"CampaignId": campaign, "ContactId": contact}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = sf
        .create("CampaignMember", json!({"CampaignId": campaign, "ContactId": contact}))
        .await;
    assert_eq!((status, code(&body)), (400, "DUPLICATE_VALUE"));
    assert_eq!(body[0]["message"], "Already a campaign member.");
}

#[tokio::test]
async fn a_new_campaign_gets_the_stock_statuses_in_the_org_language() {
    let mut scenario = small();
    scenario.sf.language = "ja".into();
    let (_running, sf) = start(scenario).await;
    let campaign = new_campaign(&sf, "日本").await;
    let (_, rows) = sf.query(&format!("SELECT Label, IsDefault, HasResponded FROM CampaignMemberStatus WHERE CampaignId = '{campaign}' ORDER BY SortOrder")).await;
    let statuses: Vec<(String, bool, bool)> = rows["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Label"].as_str().unwrap().to_owned(),
                r["IsDefault"].as_bool().unwrap(),
                r["HasResponded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("送信".to_owned(), true, false),
            ("レスポンスあり".to_owned(), false, true)
        ]
    );
    // A member added without a Status gets the default.
    let contact = a_contact(&sf).await;
    let (_, created) = sf
        .create("CampaignMember", json!({"CampaignId": campaign, "ContactId": contact}))
        .await;
    let member = sf
        .get(&format!("sobjects/CampaignMember/{}", created["id"].as_str().unwrap()))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(member["Status"], "送信");
}

#[tokio::test]
async fn status_labels_and_sort_orders_are_unique_per_campaign() {
    let (_running, sf) = start(small()).await;
    let campaign = new_campaign(&sf, "Labels").await;
    let (status, _) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": campaign, "Label": "Opened", "HasResponded": true, "SortOrder": 3}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": campaign, "Label": "Opened", "SortOrder": 4}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "DUPLICATE_VALUE"));
    // Salesforce compares text ignoring case.
    let (status, body) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": campaign, "Label": "OPENED", "SortOrder": 5}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "DUPLICATE_VALUE"));
    let (status, body) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": campaign, "Label": "Clicked", "SortOrder": 3}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "DUPLICATE_VALUE"));
    // The same label on another campaign is fine.
    let other = new_campaign(&sf, "Other").await;
    let (status, _) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": other, "Label": "Opened", "SortOrder": 3}),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_campaign_keeps_a_default_and_a_responded_status() {
    let (_running, sf) = start(small()).await;
    let campaign = new_campaign(&sf, "Keep").await;
    let (_, rows) = sf
        .query(&format!(
            "SELECT Id, IsDefault, HasResponded FROM CampaignMemberStatus WHERE CampaignId = '{campaign}'"
        ))
        .await;
    let records = rows["records"].as_array().unwrap();
    let default = records.iter().find(|r| r["IsDefault"] == true).unwrap()["Id"]
        .as_str()
        .unwrap();
    let responded = records.iter().find(|r| r["HasResponded"] == true).unwrap()["Id"]
        .as_str()
        .unwrap();
    let (status, body) = sf
        .update("CampaignMemberStatus", responded, json!({"HasResponded": false}))
        .await;
    assert_eq!((status, code(&body)), (400, "FIELD_INTEGRITY_EXCEPTION"));
    let (status, body) = sf
        .update("CampaignMemberStatus", default, json!({"IsDefault": false}))
        .await;
    assert_eq!((status, code(&body)), (400, "FIELD_INTEGRITY_EXCEPTION"));
    let (status, body) = sf
        .send(
            reqwest::Method::DELETE,
            &format!("sobjects/CampaignMemberStatus/{default}"),
            json!({}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "FIELD_INTEGRITY_EXCEPTION"));
    // Making another status the default moves the default.
    let (_, created) = sf
        .create(
            "CampaignMemberStatus",
            json!({"CampaignId": campaign, "Label": "New default", "IsDefault": true, "SortOrder": 9}),
        )
        .await;
    let (_, rows) = sf
        .query(&format!(
            "SELECT Label FROM CampaignMemberStatus WHERE CampaignId = '{campaign}' AND IsDefault = true"
        ))
        .await;
    assert_eq!(rows["totalSize"], 1);
    assert_eq!(rows["records"][0]["Label"], "New default", "{created}");
}

#[tokio::test]
async fn a_member_status_must_be_one_of_the_campaign_labels() {
    let (_running, sf) = start(small()).await;
    let campaign = new_campaign(&sf, "Picklist").await;
    let contact = a_contact(&sf).await;
    let (status, body) = sf
        .create(
            "CampaignMember",
            json!({"CampaignId": campaign, "ContactId": contact, "Status": "Clicked"}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"));
    sf.create(
        "CampaignMemberStatus",
        json!({"CampaignId": campaign, "Label": "Clicked", "HasResponded": true, "SortOrder": 5}),
    )
    .await;
    let (status, body) = sf
        .create(
            "CampaignMember",
            json!({"CampaignId": campaign, "ContactId": contact, "Status": "Clicked"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // HasResponded follows the status; the Campaign's response count follows the members.
    let (_, rows) = sf
        .query(&format!(
            "SELECT HasResponded, Campaign.NumberOfResponses FROM CampaignMember WHERE CampaignId = '{campaign}'"
        ))
        .await;
    assert_eq!(rows["records"][0]["HasResponded"], true);
    assert_eq!(rows["records"][0]["Campaign"]["NumberOfResponses"], 1.0);
}

#[tokio::test]
async fn derived_and_unknown_fields_are_refused() {
    let (_running, sf) = start(small()).await;
    let campaign = new_campaign(&sf, "Fields").await;
    let (status, body) = sf.update("Campaign", &campaign, json!({"NumberOfResponses": 5})).await;
    assert_eq!((status, code(&body)), (400, "INVALID_FIELD_FOR_INSERT_UPDATE"));
    let (status, body) = sf.update("Campaign", &campaign, json!({"Email_Opens__c": 5})).await;
    assert_eq!((status, code(&body)), (400, "INVALID_FIELD"));
    let (_, rows) = sf.query("SELECT Id FROM CampaignMember LIMIT 1").await;
    let member = rows["records"][0]["Id"].as_str().unwrap().to_owned();
    let (status, body) = sf
        .update("CampaignMember", &member, json!({"HasResponded": true}))
        .await;
    assert_eq!((status, code(&body)), (400, "INVALID_FIELD_FOR_INSERT_UPDATE"));
    let (status, body) = sf
        .update("CampaignMember", &member, json!({"CampaignId": campaign}))
        .await;
    assert_eq!((status, code(&body)), (400, "INVALID_FIELD_FOR_INSERT_UPDATE"));
    let (status, body) = sf.query("SELECT Nope__c FROM Campaign").await;
    assert_eq!((status, code(&body)), (400, "INVALID_FIELD"));
    // The product's custom fields exist and are writable.
    let (status, body) = sf
        .update("Campaign", &campaign, json!({"CM_Clicks__c": 12, "NumberSent": 100}))
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn soql_escapes_are_enforced_and_hostile_values_are_data() {
    let (_running, sf) = start(small()).await;
    let (status, body) = sf
        .create(
            "Contact",
            json!({"LastName": "O'Brien", "Email": "o'brien\\x@example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, rows) = sf
        .query("SELECT Id FROM Contact WHERE Email = 'O\\'BRIEN\\\\x@example.com'")
        .await;
    assert_eq!(
        (status, rows["totalSize"].as_u64()),
        (200, Some(1)),
        "case-insensitive, escaped"
    );
    let (status, body) = sf
        .query("SELECT Id FROM Contact WHERE Email = 'o'brien@example.com'")
        .await;
    assert_eq!((status, code(&body)), (400, "MALFORMED_QUERY"));
    let (status, body) = sf.query("SELECT Id FROM Contact WHERE Email = 'a\\zb'").await;
    assert_eq!((status, code(&body)), (400, "MALFORMED_QUERY"));
    let (_, rows) = sf.query("SELECT Id FROM Contact WHERE Email LIKE '%\\_%'").await;
    assert_eq!(rows["totalSize"], 0, "an escaped underscore is literal");
}

#[tokio::test]
async fn every_response_carries_the_limit_header_and_the_allocation_is_enforced() {
    let mut scenario = small();
    scenario.sf.api_allocation = 3;
    let (_running, sf) = start(scenario).await;
    for used in 1..=3 {
        let response = sf.get("limits").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["sforce-limit-info"],
            format!("api-usage={used}/3").as_str()
        );
    }
    let response = sf.get("limits").await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["sforce-limit-info"], "api-usage=3/3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "REQUEST_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn expired_sessions_get_invalid_session_id() {
    let (running, sf) = start(small()).await;
    assert_eq!(sf.get("limits").await.status(), 200);
    reqwest::Client::new()
        .post(format!("{}/_sandbox/sf/expire-sessions", running.sf_url))
        .send()
        .await
        .unwrap();
    let response = sf.get("limits").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "INVALID_SESSION_ID");
}

#[tokio::test]
async fn uris_over_the_limit_get_414() {
    let (_running, sf) = start(small()).await;
    let emails: Vec<String> = (0..800).map(|i| format!("'someone{i:05}@example.com'")).collect();
    let (status, _) = sf
        .query(&format!("SELECT Id FROM Contact WHERE Email IN ({})", emails.join(",")))
        .await;
    assert_eq!(status, 414);
}

#[tokio::test]
async fn collections_cap_at_200_and_all_or_none_rolls_back() {
    let (_running, sf) = start(small()).await;
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("N{i}")}))
        .collect();
    let (status, body) = sf
        .send(reqwest::Method::POST, "composite/sobjects", json!({"records": many}))
        .await;
    assert_eq!((status, code(&body)), (400, "EXCEEDED_ID_LIMIT"));
    let records = json!([{"attributes": {"type": "Contact"}, "LastName": "Kept?"}, {"attributes": {"type": "Contact"}, "FirstName": "no last name"}]);
    let (status, body) = sf
        .send(
            reqwest::Method::POST,
            "composite/sobjects",
            json!({"allOrNone": true, "records": records}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(body[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    let (_, rows) = sf.query("SELECT Id FROM Contact WHERE LastName = 'Kept?'").await;
    assert_eq!(rows["totalSize"], 0);
}

#[tokio::test]
async fn upsert_on_the_link_field_never_makes_two_campaigns() {
    let (_running, sf) = start(small()).await;
    let record = json!({"allOrNone": false, "records": [{"attributes": {"type": "Campaign"}, "CM_Campaign_ID__c": "abc", "Name": "Linked"}]});
    let (_, first) = sf
        .send(
            reqwest::Method::PATCH,
            "composite/sobjects/Campaign/CM_Campaign_ID__c",
            record.clone(),
        )
        .await;
    let (_, second) = sf
        .send(
            reqwest::Method::PATCH,
            "composite/sobjects/Campaign/CM_Campaign_ID__c",
            record,
        )
        .await;
    assert_eq!(
        (first[0]["created"].as_bool(), second[0]["created"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(first[0]["id"], second[0]["id"]);
    let (status, body) = sf
        .create("Campaign", json!({"Name": "Clash", "CM_Campaign_ID__c": "ABC"}))
        .await;
    assert_eq!((status, code(&body)), (400, "DUPLICATE_VALUE"));
}

#[tokio::test]
async fn lock_errors_are_injected_per_record_reproducibly() {
    let mut scenario = small();
    scenario.faults.seed = 42;
    scenario.faults.sf.lock_row_rate = 0.5;
    let run = |scenario: Scenario| async move {
        let (_running, sf) = start(scenario).await;
        let records: Vec<Value> = (0..20)
            .map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("L{i}")}))
            .collect();
        let (_, body) = sf
            .send(reqwest::Method::POST, "composite/sobjects", json!({"records": records}))
            .await;
        body.as_array()
            .unwrap()
            .iter()
            .map(|r| r["success"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    let first = run(scenario.clone()).await;
    let locked = first.iter().filter(|ok| !**ok).count();
    assert!((3..=17).contains(&locked), "{first:?}");
    assert_eq!(first, run(scenario).await, "the same seed gives the same faults");
}

/// Realism: a record that draws a lock error stays locked for more attempts than a run retries
/// (8 after the first): without the streak, eight failures in a row at a 30% rate would be
/// a 1-in-15,000 draw.
#[tokio::test]
async fn in_realism_a_drawn_lock_outlasts_a_runs_retries() {
    let mut scenario = small();
    scenario.faults.seed = 7;
    scenario.faults.realism = true;
    scenario.faults.sf.lock_row_rate = 0.3;
    scenario.faults.sf.concurrent_limit_rate = 0.0;
    let contact = scenario.sf.records["Contact"][0]["Id"].as_str().unwrap().to_owned();
    let (_running, sf) = start(scenario).await;
    let mut outcomes = Vec::new();
    for _ in 0..30 {
        let records =
            json!({"records": [{"attributes": {"type": "Contact"}, "id": contact, "HasOptedOutOfEmail": true}]});
        let (_, body) = sf.send(reqwest::Method::PATCH, "composite/sobjects", records).await;
        outcomes.push(body[0]["success"].as_bool().unwrap());
    }
    let first_lock = outcomes
        .iter()
        .position(|ok| !ok)
        .expect("a lock is drawn in 30 attempts");
    assert!(first_lock + 9 <= outcomes.len(), "{outcomes:?}");
    assert!(
        outcomes[first_lock..first_lock + 9].iter().all(|ok| !ok),
        "locked for 9 attempts in a row: {outcomes:?}"
    );
    assert!(outcomes.iter().any(|ok| *ok), "then written: {outcomes:?}");
}

#[tokio::test]
async fn cm_paging_codes_dates_and_auth() {
    let scenario = small();
    let campaign = scenario.cm.campaigns[0].id.clone();
    let (running, _sf) = start(scenario).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}/api/v3.3/{path}", running.cm_url);
        async move {
            let response = http
                .get(url)
                .basic_auth("sandbox-api-key", Some("x"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    for (query, expected) in [
        ("page=0", 800),
        ("pagesize=5", 801),
        ("orderfield=colour", 802),
        ("orderdirection=up", 803),
        ("date=yesterday", 5),
    ] {
        let (status, body) = get(format!("campaigns/{campaign}/opens.json?{query}")).await;
        assert_eq!((status, body["Code"].as_i64()), (400, Some(expected)), "{query}");
    }
    let (status, body) = get(format!(
        "campaigns/{campaign}/opens.json?date=2026-11-02+10:00&pagesize=10&orderfield=DATE"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let dates: Vec<&str> = body["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Date"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] <= w[1]) && dates.iter().all(|d| *d >= "2026-11-02 10:00:00"),
        "{dates:?}"
    );
    let response = http
        .get(format!("{}/api/v3.3/clients.json", running.cm_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["Code"], 50);
}

#[tokio::test]
async fn cm_oauth_tokens_expire_with_121_and_refresh() {
    let mut scenario = small();
    scenario.cm.oauth = Some(sandbox::scenario::CmOAuth {
        client_id: "app".into(),
        client_secret: "secret".into(),
        access_token: "first-access".into(),
        refresh_token: "first-refresh".into(),
        token_lifetime_secs: 3600,
    });
    let (running, _sf) = start(scenario).await;
    let http = reqwest::Client::new();
    let clients = |token: String| {
        let http = http.clone();
        let url = format!("{}/api/v3.3/clients.json", running.cm_url);
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert!(clients("first-access".into()).await.is_array());
    http.post(format!("{}/_sandbox/cm/expire-tokens", running.cm_url))
        .send()
        .await
        .unwrap();
    assert_eq!(clients("first-access".into()).await["Code"], 121);
    assert_eq!(clients("made-up".into()).await["Code"], 120);
    let refreshed: Value = http
        .post(format!("{}/oauth/token", running.cm_url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "first-refresh")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        clients(refreshed["access_token"].as_str().unwrap().to_owned())
            .await
            .is_array()
    );
    // A used refresh token is spent.
    let again = http
        .post(format!("{}/oauth/token", running.cm_url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "first-refresh")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn webhooks_are_delivered_batched_as_cm_posts_them_and_counters_count() {
    use axum::routing::post;
    let scenario = small();
    let list = scenario.cm.lists[0].id.clone();
    let (running, _sf) = start(scenario).await;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(any_addr()).await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let cm = |path: &str| format!("{}/api/v3.3/{path}", running.cm_url);
    let created = http
        .post(cm(&format!("lists/{list}/webhooks.json")))
        .basic_auth("sandbox-api-key", Some("x"))
        .json(&json!({"Events": ["Deactivate"], "Url": hook_url, "PayloadFormat": "json"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let webhook_id: String = created.json().await.unwrap();
    let test = http
        .get(cm(&format!("lists/{list}/webhooks/{webhook_id}/test.json")))
        .basic_auth("sandbox-api-key", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), 200);

    let events = json!([
        {"Type": "Deactivate", "Date": "2026-11-27 10:00:00", "EmailAddress": "a@example.com", "Name": "A", "State": "Unsubscribed", "CustomFields": []},
        {"Type": "Subscribe", "Date": "2026-11-27 10:01:00", "EmailAddress": "b@example.com", "Name": "B", "CustomFields": [], "SignupIPAddress": "TypeManual"},
        {"Type": "Deactivate", "Date": "2026-11-27 10:02:00", "EmailAddress": "c@example.com", "Name": "C", "State": "Bounced", "CustomFields": []}
    ]);
    let delivered: Value = http
        .post(format!("{}/_sandbox/webhooks/deliver", running.cm_url))
        .json(&json!({"ListID": list, "Events": events}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(delivered[0]["status"], 200);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "the test call and one batch");
    let batch = &received[1];
    assert_eq!(batch["ListID"], list.as_str());
    let types: Vec<&str> = batch["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Deactivate", "Deactivate"],
        "only the subscribed event type, batched"
    );

    let counters: Value = http
        .get(format!("{}/_sandbox/counters", running.cm_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["cm POST /api/v3.3/lists/{id}/webhooks.json"], 1, "{counters}");
}

#[tokio::test]
async fn transient_faults_and_latency_follow_the_settings() {
    let mut scenario = small();
    scenario.faults.seed = 7;
    scenario.faults.cm.error_rate = 0.5;
    scenario.faults.sf.error_rate = 0.5;
    scenario.faults.cm.endpoint_latency_ms.insert("systemdate".into(), 60);
    let (running, sf) = start(scenario).await;
    let http = reqwest::Client::new();
    let mut cm_statuses = std::collections::BTreeSet::new();
    let mut sf_statuses = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let response = http
            .get(format!("{}/api/v3.3/clients.json", running.cm_url))
            .basic_auth("sandbox-api-key", Some("x"))
            .send()
            .await
            .unwrap();
        cm_statuses.insert(response.status().as_u16());
        let response = sf.get("limits").await;
        let status = response.status().as_u16();
        if status == 503 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(code(&body), "SERVER_UNAVAILABLE");
        }
        sf_statuses.insert(status);
    }
    assert_eq!(cm_statuses, [200, 429, 503].into(), "CM answers some calls 429 or 503");
    assert_eq!(sf_statuses, [200, 503].into());

    // Faults are changed at run time; latency applies to the named endpoint only.
    http.put(format!("{}/_sandbox/faults", running.cm_url))
        .json(&json!({"seed": 1, "cm": {"endpoint_latency_ms": {"systemdate": 60}}}))
        .send()
        .await
        .unwrap();
    let timed = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v3.3/{path}", running.cm_url);
        async move {
            let started = std::time::Instant::now();
            let status = http
                .get(url)
                .basic_auth("sandbox-api-key", Some("x"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
            started.elapsed()
        }
    };
    assert!(timed("systemdate.json").await >= std::time::Duration::from_millis(60));
}

#[tokio::test]
async fn sessions_can_expire_after_a_number_of_calls() {
    let mut scenario = small();
    scenario.faults.sf.session_expires_after_calls = Some(2);
    let (_running, sf) = start(scenario).await;
    assert_eq!(sf.get("limits").await.status(), 200);
    assert_eq!(sf.get("limits").await.status(), 200);
    assert_eq!(sf.get("limits").await.status(), 401);
}

#[tokio::test]
async fn every_salesforce_token_flow_is_checked() {
    let (running, _sf) = start(small()).await;
    let http = reqwest::Client::new();
    let token = |form: Vec<(&'static str, &'static str)>| {
        let http = http.clone();
        let url = format!("{}/services/oauth2/token", running.sf_url);
        async move {
            let response = http.post(url).form(&form).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = token(vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", "sandbox-refresh-token"),
        ("client_id", "sandbox-consumer-key"),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("expires_in").is_none(), "Salesforce gives no expires_in");
    assert_eq!(body["instance_url"], running.sf_url.as_str());
    let (status, body) = token(vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", "stolen"),
        ("client_id", "sandbox-consumer-key"),
    ])
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, body) = token(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sandbox-consumer-key"),
        ("client_secret", "wrong"),
    ])
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
    let (status, body) = token(vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", "not.a.jwt"),
    ])
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

/// A page of recipients is theirs in address order, either way, page after page; `list` order
/// sorts by list, then address.
#[tokio::test]
async fn recipients_page_in_address_order_both_ways() {
    let mut scenario = small();
    let main = scenario.cm.campaigns.last_mut().unwrap();
    main.recipients.reverse(); // the scenario's order is not the served order
    let campaign = main.id.clone();
    let mut emails: Vec<String> = main.recipients.iter().map(|r| r.email.clone()).collect();
    emails.sort();
    let (running, _sf) = start(scenario).await;
    let http = reqwest::Client::new();
    let page = |query: String| {
        let http = http.clone();
        let url = format!(
            "{}/api/v3.3/campaigns/{campaign}/recipients.json?{query}",
            running.cm_url
        );
        async move {
            let body: Value = http
                .get(url)
                .basic_auth("sandbox-api-key", Some("x"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let addresses: Vec<String> = body["Results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["EmailAddress"].as_str().unwrap().to_owned())
                .collect();
            (addresses, body["TotalNumberOfRecords"].as_u64())
        }
    };
    let mut ascending = Vec::new();
    for number in 1..=4 {
        let (addresses, total) = page(format!("page={number}&pagesize=10&orderfield=email")).await;
        assert_eq!(total, Some(40));
        ascending.extend(addresses);
    }
    assert_eq!(ascending, emails);
    let (descending, _) = page("page=1&pagesize=10&orderfield=email&orderdirection=desc".into()).await;
    assert_eq!(descending, emails.iter().rev().take(10).cloned().collect::<Vec<_>>());
    let (by_list, _) = page("page=2&pagesize=10&orderfield=list".into()).await;
    assert_eq!(by_list, emails[10..20], "one list: by address within it");
}

/// Bulk API 2.0: the stand-in keeps the rows and outcomes of the most recent jobs only; an
/// older job still answers its state and counts, and its results `NOT_FOUND`.
#[tokio::test]
async fn only_the_most_recent_bulk_jobs_keep_their_results() {
    let (_running, sf) = start(small()).await;
    let mut jobs = Vec::new();
    for n in 0..=sandbox::sf::bulk::JOBS_WITH_ROWS {
        let (status, job) = sf
            .send(
                reqwest::Method::POST,
                "jobs/ingest",
                json!({"object": "Contact", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"}),
            )
            .await;
        assert_eq!(status, 200, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        let uploaded = sf
            .http
            .put(format!("{}{V}/jobs/ingest/{id}/batches", sf.base))
            .bearer_auth(&sf.token)
            .header("content-type", "text/csv")
            .body(format!("LastName,Email\nBulk {n},bulk{n}@example.com\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status().as_u16(), 201);
        let (status, closed) = sf
            .send(
                reqwest::Method::PATCH,
                &format!("jobs/ingest/{id}"),
                json!({"state": "UploadComplete"}),
            )
            .await;
        assert_eq!(status, 200, "{closed}");
        jobs.push(id);
    }
    let results = |id: &str| format!("jobs/ingest/{id}/successfulResults");
    let newest = sf.get(&results(jobs.last().unwrap())).await;
    assert_eq!(newest.status().as_u16(), 200);
    assert!(
        newest
            .text()
            .await
            .unwrap()
            .contains(&format!("bulk{}@example.com", jobs.len() - 1))
    );
    let oldest = sf.get(&results(&jobs[0])).await;
    assert_eq!(oldest.status().as_u16(), 404);
    assert_eq!(code(&oldest.json().await.unwrap()), "NOT_FOUND");
    let info: Value = sf.get(&format!("jobs/ingest/{}", jobs[0])).await.json().await.unwrap();
    assert_eq!(
        (info["state"].as_str(), info["numberRecordsProcessed"].as_u64()),
        (Some("JobComplete"), Some(1))
    );
    let (_, written) = sf
        .query("SELECT Id FROM Contact WHERE Email = 'bulk0@example.com'")
        .await;
    assert_eq!(written["totalSize"], 1, "the old job's row is written all the same");
}
