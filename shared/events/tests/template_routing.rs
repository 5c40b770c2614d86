//! The deployment template routes what the code emits: the rules are read from
//! `infra/template.yaml`, created on the moto emulator (`make test` starts it), and one event of
//! every kind the code emits is published through the real publisher; each must land at the
//! function that consumes it, once, and nowhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::path::PathBuf;

use events::publisher::Publisher;
use events::{Event, Trigger, is_schedule_trigger, rule_pattern};
use serde_norway::Value as Yaml;

mod common;
use common::Routing;

fn template() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap()
}

fn resources(template: &Yaml) -> &serde_norway::Mapping {
    template["Resources"].as_mapping().expect("Resources")
}

/// `!GetAtt Logical.Arn` → `Logical`.
fn get_att_target(value: &Yaml) -> String {
    let Yaml::Tagged(tagged) = value else {
        panic!("target Arn is not !GetAtt: {value:?}")
    };
    assert_eq!(tagged.tag, "GetAtt");
    let reference = tagged.value.as_str().unwrap();
    reference.strip_suffix(".Arn").unwrap().to_owned()
}

/// The function crate a `AWS::Serverless::Function` deploys, from its `CodeUri`
/// (`../target/lambda/<crate>/`, where `make build` puts each `bootstrap`).
fn function_crate(function: &Yaml) -> String {
    let code_uri = function["Properties"]["CodeUri"].as_str().unwrap();
    code_uri
        .strip_prefix("../target/lambda/")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected CodeUri {code_uri}"))
        .to_owned()
}

/// Every rule on the product's bus: (the function crate it targets, its pattern as JSON).
fn template_rules(template: &Yaml) -> Vec<(String, serde_json::Value)> {
    let resources = resources(template);
    let mut rules = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Events::Rule") {
            continue;
        }
        let properties = &resource["Properties"];
        let targets = properties["Targets"].as_sequence().unwrap();
        assert_eq!(targets.len(), 1, "{name:?}: one consumer per rule");
        let function = get_att_target(&targets[0]["Arn"]);
        let function_resource = &resources[function.as_str()];
        assert_eq!(function_resource["Type"].as_str(), Some("AWS::Serverless::Function"));
        assert!(
            targets[0]["DeadLetterConfig"]["Arn"] != Yaml::Null,
            "{name:?}: undeliverable events must go to a dead-letter queue"
        );
        let pattern: serde_json::Value = serde_norway::from_value(properties["EventPattern"].clone()).unwrap();
        rules.push((function_crate(function_resource), pattern));
    }
    rules
}

#[test]
fn each_rule_pattern_is_the_one_the_code_builds_for_its_consumer() {
    let rules = template_rules(&template());
    let mut consumers: Vec<&str> = Event::DETAIL_TYPES
        .iter()
        .filter_map(|t| Event::consumer_of(t))
        .collect();
    consumers.sort_unstable();
    consumers.dedup();
    assert_eq!(rules.len(), consumers.len(), "one rule per consuming function");
    let mut covered = Vec::new();
    for (function, pattern) in &rules {
        let detail_types: Vec<&str> = Event::DETAIL_TYPES
            .into_iter()
            .filter(|t| Event::consumer_of(t) == Some(function.as_str()))
            .collect();
        assert_eq!(pattern, &rule_pattern(&detail_types), "rule for {function}");
        covered.extend(detail_types);
    }
    covered.sort_unstable();
    let mut all = Event::DETAIL_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(covered, all, "every detail-type is routed");
}

#[test]
fn the_schedule_input_is_what_scheduled_sync_treats_as_a_scheduled_run() {
    let template = template();
    let function = &resources(&template)["ScheduledSyncFunction"];
    let schedule = &function["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    let input: serde_json::Value = serde_json::from_str(schedule["Properties"]["Input"].as_str().unwrap()).unwrap();
    assert!(is_schedule_trigger(
        input["source"].as_str().unwrap(),
        input["detail-type"].as_str().unwrap()
    ));
    assert_eq!(trigger_of(schedule), Trigger::Schedule);
}

#[test]
fn the_hot_schedule_input_is_what_scheduled_sync_treats_as_a_hot_run() {
    let template = template();
    let function = &resources(&template)["ScheduledSyncFunction"];
    let hot = &function["Properties"]["Events"]["HotSchedule"];
    assert_eq!(hot["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(trigger_of(hot), Trigger::HotSchedule);
}

/// What scheduled-sync makes of a schedule's input.
fn trigger_of(schedule: &Yaml) -> Trigger {
    let input: serde_json::Value = serde_json::from_str(schedule["Properties"]["Input"].as_str().unwrap()).unwrap();
    let envelope: events::EventBridgeEvent = serde_json::from_value(input).unwrap();
    Trigger::try_from(envelope).unwrap()
}

#[test]
fn webhook_batches_have_a_consumer_and_reserved_concurrency_of_their_own() {
    let template = template();
    let consumer = Event::consumer_of("webhook-batch-received.v1").unwrap();
    let sync = Event::consumer_of("campaign-sync-requested.v1").unwrap();
    assert_ne!(consumer, sync, "webhook events never wait behind syncs");
    let reserved = |crate_name: &str| {
        let function = resources(&template)
            .values()
            .find(|r| r["Type"].as_str() == Some("AWS::Serverless::Function") && function_crate(r) == crate_name)
            .unwrap_or_else(|| panic!("{crate_name} is not in the template"));
        let Yaml::Tagged(reference) = &function["Properties"]["ReservedConcurrentExecutions"] else {
            panic!("{crate_name}: no reserved concurrency parameter")
        };
        reference.value.as_str().unwrap().to_owned()
    };
    assert_ne!(reserved(consumer), reserved(sync), "slots of its own, set apart");
}

#[test]
fn every_function_crate_is_deployed_by_the_template() {
    let template = template();
    let mut deployed: Vec<String> = resources(&template)
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(function_crate)
        .collect();
    deployed.sort();
    let functions_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../functions");
    let mut crates: Vec<String> = std::fs::read_dir(functions_dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            entry
                .path()
                .join("Cargo.toml")
                .exists()
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect();
    crates.sort();
    assert_eq!(deployed, crates);
}

#[tokio::test]
async fn every_event_the_code_emits_lands_at_its_consumer_only() {
    let rules = template_rules(&template());
    let routing = Routing::new(&rules).await;
    let examples = Event::examples();
    let emitted: Vec<&str> = examples.iter().map(Event::detail_type).collect();
    assert_eq!(emitted, Event::DETAIL_TYPES, "one example of every kind");
    Publisher::new(routing.sink()).publish(&examples).await.unwrap();

    let mut received: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (function, _) in &rules {
        let events = routing.drain(function).await;
        received.insert(function.clone(), events.iter().map(Event::detail_type).collect());
    }
    let mut expected: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for event in &examples {
        let consumer = Event::consumer_of(event.detail_type()).unwrap();
        expected
            .entry(consumer.to_owned())
            .or_default()
            .push(event.detail_type());
    }
    for types in received.values_mut().chain(expected.values_mut()) {
        types.sort_unstable();
    }
    assert_eq!(received, expected);
}

#[test]
fn every_routed_detail_type_has_a_fixture_and_a_handler_test_at_its_consumer() {
    let template = template();
    let functions = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../functions");
    let mut cases: Vec<(String, String)> = template_rules(&template)
        .into_iter()
        .flat_map(|(function, pattern)| {
            let types: Vec<String> = serde_json::from_value(pattern["detail-type"].clone()).unwrap();
            types.into_iter().map(move |t| (function.clone(), t))
        })
        .collect();
    cases.push(("scheduled-sync".into(), "schedule".into()));
    for (function, detail_type) in cases {
        let name = format!("{detail_type}.json");
        let path = functions.join(&function).join("fixtures").join(&name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let envelope: events::EventBridgeEvent = serde_json::from_str(&text).unwrap();
        let trigger = events::Trigger::try_from(envelope).unwrap();
        if detail_type != "schedule" {
            let events::Trigger::Event(event) = trigger else {
                panic!("{name} is not an event")
            };
            assert_eq!(event.detail_type(), detail_type, "{}", path.display());
        }
        let handler = std::fs::read_to_string(functions.join(&function).join("src/handler.rs")).unwrap();
        assert!(
            handler.contains(&format!("include_str!(\"../fixtures/{name}\")")),
            "functions/{function}/src/handler.rs has no test on fixtures/{name}"
        );
    }
}
