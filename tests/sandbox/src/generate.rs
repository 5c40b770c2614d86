//! Generates large, realistic scenarios from a seed: recipients, people in SF (a share of them
//! already campaign members), and opens, clicks, bounces, unsubscribes and spam complaints with
//! plausible timing and repeats.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::scenario::{CmAccount, CmActivity, CmCampaign, CmClient, CmList, CmRecipient, CustomField, Scenario, SfOrg};
use crate::sf::Record;

/// The test certificate whose private key (`fixtures/jwt-test-key.pem`) signs JWT assertions in
/// tests and the demo. A test key, never a real one.
pub const TEST_CERTIFICATE: &str = include_str!("../fixtures/jwt-test-cert.pem");

/// What to generate.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shape {
    /// Seed: the same seed gives the same scenario.
    pub seed: u64,
    /// Recipients of the campaign.
    pub recipients: usize,
    /// Activity records (opens, clicks, ...).
    pub activities: usize,
    /// Share of recipients that exist in SF as a Lead or Contact.
    pub in_salesforce: f64,
    /// Share of those already members of the linked SF Campaign.
    pub already_members: f64,
    /// CM account zone.
    pub timezone: String,
    /// Further small sent campaigns (one a day before the main one), for discovery and paging.
    pub extra_campaigns: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            seed: 1,
            recipients: 1_000,
            activities: 800,
            in_salesforce: 0.95,
            already_members: 0.5,
            timezone: "Australia/Sydney".into(),
            extra_campaigns: 0,
        }
    }
}

/// The custom fields `infra/salesforce` ships (those the default settings name, and the
/// engagement detail fields a deployment may turn on).
pub fn product_custom_fields() -> BTreeMap<String, Vec<CustomField>> {
    let field = |name: &str, field_type: &str, external_id: bool| CustomField {
        name: name.into(),
        field_type: field_type.into(),
        external_id,
    };
    BTreeMap::from([
        (
            "Campaign".to_owned(),
            vec![
                field("CM_Campaign_ID__c", "string", true),
                field("CM_Total_Opens__c", "double", false),
                field("CM_Unique_Opens__c", "double", false),
                field("CM_Clicks__c", "double", false),
                field("CM_Unsubscribes__c", "double", false),
                field("CM_Bounces__c", "double", false),
                field("CM_Spam_Complaints__c", "double", false),
            ],
        ),
        (
            "CampaignMember".to_owned(),
            vec![
                field("CM_Activity_Date__c", "datetime", false),
                field("CM_Activity_Kind__c", "string", false),
                field("CM_Status_Locked_At__c", "datetime", false),
                field("CM_First_Opened__c", "datetime", false),
                field("CM_Last_Opened__c", "datetime", false),
                field("CM_First_Clicked__c", "datetime", false),
                field("CM_Last_Clicked__c", "datetime", false),
                field("CM_Last_Clicked_URL__c", "string", false),
                field("CM_Bounce_Type__c", "string", false),
            ],
        ),
    ])
}

fn hex_id(rng: &mut ChaCha8Rng) -> String {
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// Builds the scenario.
pub fn generate(shape: &Shape) -> Scenario {
    let (mut scenario, records) = generate_parts(shape);
    scenario.sf.records = records
        .into_iter()
        .map(|(object, rows)| (object, rows.iter().map(Record::to_map).collect()))
        .collect();
    scenario
}

/// The world of [`generate`]'s scenario, built without it: the org's records are made in the
/// form the stand-in holds them (a million people as JSON maps would be a gigabyte more at the
/// peak of the load).
pub fn generate_world(shape: &Shape, sf_base: &str) -> Result<crate::World, String> {
    let (scenario, records) = generate_parts(shape);
    crate::World::from_parts(scenario, records, sf_base)
}

/// The scenario without its SF records, and those records.
fn generate_parts(shape: &Shape) -> (Scenario, BTreeMap<String, Vec<Record>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let client_id = hex_id(&mut rng);
    let list_id = hex_id(&mut rng);
    let campaign_id = hex_id(&mut rng);
    let sent = NaiveDateTime::parse_from_str("2026-11-02 09:00:00", "%Y-%m-%d %H:%M:%S").unwrap_or_default();
    let email = |i: usize| format!("person{i:07}@example.com");

    let recipients: Vec<CmRecipient> = (0..shape.recipients)
        .map(|i| CmRecipient {
            email: email(i),
            list_id: list_id.clone(),
        })
        .collect();
    let mut activity = Vec::with_capacity(shape.activities);
    for _ in 0..shape.activities {
        // Engagement is skewed: a fifth of the recipients make most of the activity.
        let who = if rng.random_bool(0.7) {
            rng.random_range(0..shape.recipients.max(1) / 5 + 1)
        } else {
            rng.random_range(0..shape.recipients.max(1))
        };
        let roll: f64 = rng.random();
        let kind = match roll {
            r if r < 0.62 => "open",
            r if r < 0.90 => "click",
            r if r < 0.95 => "bounce",
            r if r < 0.99 => "unsubscribe",
            _ => "spam",
        };
        // Most activity comes in the first hours; whole minutes, as CM reports.
        let minutes = if rng.random_bool(0.6) {
            rng.random_range(1..6 * 60)
        } else {
            rng.random_range(1..7 * 24 * 60)
        };
        let date = sent + Duration::minutes(minutes);
        activity.push(CmActivity {
            kind: kind.into(),
            email: email(who.min(shape.recipients.saturating_sub(1))),
            list_id: list_id.clone(),
            date: date.format("%Y-%m-%d %H:%M:%S").to_string(),
            url: (kind == "click").then(|| format!("https://example.com/offer/{}", rng.random_range(1..6))),
            bounce_type: (kind == "bounce").then(|| {
                if rng.random_bool(0.3) {
                    "Soft".into()
                } else {
                    "Hard".into()
                }
            }),
            reason: (kind == "bounce").then(|| "Hard Bounce - Mailbox does not exist".into()),
            served_date: None,
        });
    }

    let campaign_sf_id = "701000SB0000000001".to_owned();
    let mut leads = Vec::new();
    let mut contacts = Vec::new();
    let mut members = Vec::new();
    for i in 0..shape.recipients {
        if !rng.random_bool(shape.in_salesforce) {
            continue;
        }
        let is_contact = rng.random_bool(0.6);
        let id = if is_contact {
            format!("003000SB{i:010}")
        } else {
            format!("00Q000SB{i:010}")
        };
        let mut person = Record::new();
        person.insert("Id", json!(id));
        person.insert("LastName", json!(format!("Person {i}")));
        person.insert("Email", json!(email(i)));
        person.insert("LastModifiedDate", json!("2026-10-01T00:00:00.000+0000"));
        if is_contact {
            contacts.push(person);
        } else {
            person.insert("Company", json!("Example Ltd"));
            leads.push(person);
        }
        if rng.random_bool(shape.already_members) {
            let mut member = Record::new();
            member.insert("Id", json!(format!("00v000SB{i:010}")));
            member.insert("CampaignId", json!(campaign_sf_id));
            member.insert(if is_contact { "ContactId" } else { "LeadId" }, json!(id));
            member.insert("Status", json!("Sent"));
            members.push(member);
        }
    }
    let mut campaign = Record::new();
    campaign.insert("Id", json!(campaign_sf_id));
    campaign.insert("Name", json!("November newsletter"));
    campaign.insert("IsActive", json!(true));
    campaign.insert("CM_Campaign_ID__c", json!(campaign_id));
    let mut records: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    records.insert("Campaign".to_owned(), vec![campaign]);
    records.insert("Lead".to_owned(), leads);
    records.insert("Contact".to_owned(), contacts);
    records.insert("CampaignMember".to_owned(), members);

    let mut campaigns = Vec::with_capacity(shape.extra_campaigns + 1);
    for n in 0..shape.extra_campaigns {
        let day = sent - Duration::days(n as i64 + 1);
        let id = hex_id(&mut rng);
        let recipients: Vec<CmRecipient> = (0..20)
            .map(|i| CmRecipient {
                email: email((n * 20 + i) % shape.recipients.max(1)),
                list_id: list_id.clone(),
            })
            .collect();
        let activity = recipients
            .iter()
            .take(5)
            .map(|r| CmActivity {
                kind: "open".into(),
                email: r.email.clone(),
                list_id: list_id.clone(),
                date: (day + Duration::hours(2)).format("%Y-%m-%d %H:%M:%S").to_string(),
                url: None,
                bounce_type: None,
                reason: None,
                served_date: None,
            })
            .collect();
        campaigns.push(CmCampaign {
            id,
            client_id: client_id.clone(),
            name: format!("Daily update {}", day.format("%Y-%m-%d")),
            subject: "Today".into(),
            state: "sent".into(),
            sent_date: Some(day.format("%Y-%m-%d %H:%M:%S").to_string()),
            date_created: None,
            date_scheduled: None,
            tags: vec!["daily".into()],
            list_ids: vec![list_id.clone()],
            recipients,
            activity,
            forwards: 0,
        });
    }
    campaigns.push(CmCampaign {
        id: campaign_id,
        client_id: client_id.clone(),
        name: "November newsletter".into(),
        subject: "News for November".into(),
        state: "sent".into(),
        sent_date: Some(sent.format("%Y-%m-%d %H:%M:%S").to_string()),
        date_created: None,
        date_scheduled: None,
        tags: vec!["newsletter".into()],
        list_ids: vec![list_id.clone()],
        recipients,
        activity,
        forwards: 0,
    });

    let scenario = Scenario {
        cm: CmAccount {
            api_key: "sandbox-api-key".into(),
            oauth: None,
            timezone: shape.timezone.clone(),
            now: Some("2026-11-27 09:00:00".into()),
            clients: vec![CmClient {
                id: client_id.clone(),
                name: "Example Ltd".into(),
                timezone_display: None,
            }],
            lists: vec![CmList {
                id: list_id,
                client_id,
                name: "Newsletter".into(),
                subscribers: Vec::new(),
            }],
            campaigns,
        },
        sf: SfOrg {
            jwt_certificate_pem: Some(TEST_CERTIFICATE.to_owned()),
            refresh_token: Some("sandbox-refresh-token".into()),
            custom_fields: product_custom_fields(),
            ..SfOrg::default()
        },
        faults: Default::default(),
    };
    (scenario, records)
}
