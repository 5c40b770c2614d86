//! `cm-sf-admin doctor` and the daily webhook check against the sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use sandbox::generate::{Shape, generate};
use serde_json::Value;
use state::{RunStore, WatermarkStore};

use common::*;

#[tokio::test]
async fn a_webhook_cm_deactivated_is_reported_by_the_days_check_and_by_doctor_and_register_reactivates_it() {
    let small = generate(&Shape {
        recipients: 10,
        activities: 0,
        ..Shape::default()
    });
    let list = small.cm.lists[0].id.clone();
    let h = Harness::new(small, |s| s.cm_lists = vec![list.clone()]).await;
    let settings = h.settings().await;
    let url = "https://abc.lambda-url.eu-west-1.on.aws/hooks/s3cret-token-0123456789";
    h.engine.register_webhooks(url).await.unwrap();
    let first = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(first.inactive_webhooks, Some(0), "the day's check ran: all active");

    // CM gives up on the URL and deactivates the webhook.
    let hooks: Value = reqwest::Client::new()
        .get(format!("{}/api/v3.3/lists/{list}/webhooks.json", h.running.cm_url))
        .basic_auth(&h.scenario.cm.api_key, Some("x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_id = hooks[0]["WebhookID"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .put(format!(
            "{}/api/v3.3/lists/{list}/webhooks/{webhook_id}/deactivate.json",
            h.running.cm_url
        ))
        .basic_auth(&h.scenario.cm.api_key, Some("x"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let later = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(later.inactive_webhooks, None, "checked once a day");
    h.engine.store.reset_watermarks("webhooks").await.unwrap(); // a day later
    let next_day = h.engine.run_scheduled(&settings, &engine::new_run_id()).await.unwrap();
    assert_eq!(next_day.inactive_webhooks, Some(1));
    let runs = h.engine.store.recent_runs(10).await.unwrap();
    let report = runs.iter().find(|r| r.scope == "webhooks").unwrap();
    let (_, failures) = h.engine.store.run(&report.run_id).await.unwrap().unwrap();
    assert!(failures[0].reason.contains("webhooks register"), "{failures:?}");

    let findings = h.engine.doctor(Some(url)).await;
    let finding = findings
        .iter()
        .find(|f| f.check == format!("webhooks of list {list}"))
        .unwrap();
    assert_eq!(finding.severity, engine::doctor::Severity::Problem);
    assert!(
        finding.fix.as_deref().unwrap().contains("webhooks register"),
        "{finding:?}"
    );

    let changes = h.engine.register_webhooks(url).await.unwrap();
    assert!(
        matches!(changes[0], engine::admin::WebhookChange::Reactivated { .. }),
        "{changes:?}"
    );
    let findings = h.engine.doctor(Some(url)).await;
    let finding = findings
        .iter()
        .find(|f| f.check == format!("webhooks of list {list}"))
        .unwrap();
    assert_eq!(finding.severity, engine::doctor::Severity::Ok);
}

#[tokio::test]
async fn doctor_names_a_cm_client_in_another_time_zone_than_cm_timezone() {
    let mut scenario = generate(&Shape {
        recipients: 10,
        activities: 0,
        ..Shape::default()
    });
    let h = Harness::new(scenario.clone(), |_| {}).await;
    let client = h.settings().await.cm_clients[0].clone();
    let finding = |findings: Vec<engine::doctor::Finding>| {
        findings
            .into_iter()
            .find(|f| f.check == format!("CM client {client} time zone"))
            .unwrap()
    };
    let agreeing = finding(h.engine.doctor(None).await);
    assert_eq!(agreeing.severity, engine::doctor::Severity::Ok, "{agreeing:?}");

    scenario.cm.clients[0].timezone_display = Some("(GMT-05:00) Eastern Time (US & Canada)".into());
    let h = Harness::new(scenario, |_| {}).await;
    let other = finding(h.engine.doctor(None).await);
    assert_eq!(other.severity, engine::doctor::Severity::Warning, "{other:?}");
    assert!(other.detail.contains("15 hours off"), "{other:?}");
}
