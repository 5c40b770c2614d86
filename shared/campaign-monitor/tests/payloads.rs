//! Deserialisation of payloads in the documented shapes, including the odd ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use campaign_monitor::types::{Page, SentCampaign, Subscriber, Summary, Tag};
use campaign_monitor::webhook::{WebhookBatch, WebhookEventType};

#[test]
fn counts_sent_as_strings_are_read_as_numbers() {
    let tags: Vec<Tag> =
        serde_json::from_str(r#"[{"Name":"newsletter","NumberOfCampaigns":"12"},{"Name":"x","NumberOfCampaigns":3}]"#)
            .unwrap();
    assert_eq!((tags[0].number_of_campaigns, tags[1].number_of_campaigns), (12, 3));
    let summary: Summary =
        serde_json::from_str(r#"{"Recipients":"1000","TotalOpened":700,"UniqueOpened":"400","Clicks":120.0}"#).unwrap();
    assert_eq!(
        (
            summary.recipients,
            summary.unique_opened,
            summary.clicks,
            summary.forwards
        ),
        (1000, 400, 120, 0)
    );
    assert!(serde_json::from_str::<Summary>(r#"{"Recipients":"many"}"#).is_err());
}

#[test]
fn webhook_batches_with_odd_values_parse() {
    let batch: WebhookBatch = serde_json::from_str(
        r#"{"ListID":"0123456789abcdef0123456789abcdef","Events":[
            {"Type":"Subscribe","Date":"2024-03-05 14:07:00","EmailAddress":"jo@example.com","Name":"","CustomFields":[],"SignupIPAddress":"TypeManual"},
            {"Type":"Update","Date":"2024-03-05 14:10:00","EmailAddress":"sam.new@example.com","OldEmailAddress":"sam@example.com","Name":"Sam","State":"Active","CustomFields":[{"Key":"website","Value":"x"},{"Key":"website","Value":"y"}]},
            {"Type":"Deactivate","Date":"2024-03-05 14:09:00","EmailAddress":"jo@example.com","State":"Bounced"}
        ]}"#,
    )
    .unwrap();
    assert_eq!(batch.events[0].signup_ip_address.as_deref(), Some("TypeManual"));
    assert_eq!(batch.events[1].custom_fields.len(), 2, "multi-select repeats the key");
    assert_eq!(batch.events[2].event_type, WebhookEventType::Deactivate);
    assert!(
        batch.events[2].custom_fields.is_empty() && batch.events[2].name.is_empty(),
        "missing optional fields default"
    );
    assert!(
        serde_json::from_str::<WebhookBatch>(
            r#"{"ListID":"x","Events":[{"Type":"Forward","Date":"d","EmailAddress":"e"}]}"#
        )
        .is_err()
    );
}

#[test]
fn empty_arrays_and_missing_optional_fields() {
    let page: Page<SentCampaign> = serde_json::from_str(
        r#"{"Results":[{"CampaignID":"c","Name":"n","SentDate":"2024-01-01 00:00:00","TotalRecipients":"5"}],
            "ResultsOrderedBy":"sentdate","OrderDirection":"desc","PageNumber":1,"PageSize":1000,"RecordsOnThisPage":1,
            "TotalNumberOfRecords":"1","NumberOfPages":1}"#,
    )
    .unwrap();
    assert_eq!(page.results[0].tags, Vec::<String>::new());
    assert_eq!(page.results[0].total_recipients, 5);
    let empty: Page<SentCampaign> = serde_json::from_str(
        r#"{"Results":[],"PageNumber":1,"PageSize":1000,"RecordsOnThisPage":0,"TotalNumberOfRecords":0,"NumberOfPages":0}"#,
    )
    .unwrap();
    assert!(empty.results.is_empty());
    let subscriber: Subscriber = serde_json::from_str(r#"{"EmailAddress":"jo@example.com","State":"Active"}"#).unwrap();
    assert!(subscriber.custom_fields.is_empty() && subscriber.name.is_empty());
}
