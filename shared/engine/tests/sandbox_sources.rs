//! The sandbox serves a generated workload built in its own process (`--shape`, what `make
//! bench` uses for workload L) or a scenario read from JSON; both must be the same org and
//! account, down to what a full sync writes (#34: the in-process path is only worth having if it
//! changes nothing the benchmarks measure).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;

use common::Harness;
use harness::Control;
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::Value;

/// What a full sync of the main campaign leaves in Salesforce, with the times of the run left
/// out (they differ between two runs).
async fn synced_records(source: sandbox::Source, scenario: Scenario) -> Vec<(String, Vec<Value>)> {
    let any = "127.0.0.1:0".parse().unwrap();
    let running = sandbox::start_from(source, any, any).await.unwrap();
    let settings = harness::settings_for(&scenario).unwrap();
    let engine = harness::memory_engine(&running, &settings).await.unwrap();
    let h = Harness {
        control: Control::of(&running),
        running,
        engine,
        scenario,
    };
    let cm = h.link_main().await;
    let engine::campaign::CampaignOutcome::Done { counts, .. } = h.sync(&cm, false).await else {
        panic!("the sync did not finish")
    };
    assert_eq!(counts.failed, 0, "{counts:?}");
    let mut objects = Vec::new();
    for object in ["Campaign", "CampaignMember", "CampaignMemberStatus", "Contact", "Lead"] {
        let mut records = h.sf_records(object).await;
        for record in &mut records {
            if let Some(fields) = record.as_object_mut() {
                fields
                    .retain(|name, _| !matches!(name.as_str(), "LastModifiedDate" | "CreatedDate" | "SystemModstamp"));
            }
        }
        records.sort_by_key(|r| r["Id"].as_str().unwrap_or_default().to_owned());
        objects.push((object.to_owned(), records));
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_generated_in_the_sandbox_syncs_as_the_same_scenario_read_from_json() {
    let shape = Shape {
        seed: 34,
        recipients: 3_000,
        activities: 2_500,
        ..Shape::default()
    };
    let scenario = generate(&shape);
    let from_json: Scenario = serde_json::from_slice(&serde_json::to_vec(&scenario).unwrap()).unwrap();
    let read = synced_records(sandbox::Source::Scenario(Arc::new(from_json)), scenario.clone()).await;
    let built = synced_records(sandbox::Source::Generated(shape), scenario).await;
    assert_eq!(read.len(), built.len());
    for ((object, a), (_, b)) in read.iter().zip(&built) {
        assert_eq!(a.len(), b.len(), "{object}: as many records");
        assert!(a == b, "{object}: the same records");
    }
    let members = &read[1].1;
    assert!(members.len() > 1_000, "a real sync: {} members", members.len());
}
