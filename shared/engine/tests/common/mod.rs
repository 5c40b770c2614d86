//! The engine against the sandbox, in process: the set-up every engine test starts from.

#![allow(dead_code)] // each test file uses its own share of the helpers

use engine::campaign::{CampaignOutcome, Mode};
use engine::{Deadline, Engine};
use events::LinkOrigin;
use events::publisher::MemorySink;
use harness::Control;
use mapping::Settings;
use sandbox::scenario::Scenario;
use serde_json::Value;
use state::memory::MemoryStore;
use state::{LinkRecord, LinkStore};

pub struct Harness {
    pub running: sandbox::Running,
    pub engine: Engine<MemoryStore, MemorySink>,
    pub control: Control,
    pub scenario: Scenario,
}
impl Harness {
    pub async fn new(scenario: Scenario, settings: impl FnOnce(&mut Settings)) -> Harness {
        let running = harness::start_sandbox(scenario.clone()).await.unwrap();
        let mut s = harness::settings_for(&scenario).unwrap();
        settings(&mut s);
        let engine = harness::memory_engine(&running, &s).await.unwrap();
        Harness {
            control: Control::of(&running),
            running,
            engine,
            scenario,
        }
    }

    /// A harness with the main campaign linked: the set-up most tests start from.
    pub async fn linked(scenario: Scenario, settings: impl FnOnce(&mut Settings)) -> (Harness, String) {
        let harness = Harness::new(scenario, settings).await;
        let cm = harness.link_main().await;
        (harness, cm)
    }

    pub async fn settings(&self) -> Settings {
        self.engine.settings().await.unwrap()
    }

    pub fn main_campaign(&self) -> (String, String) {
        let cm = harness::campaign_named(&self.scenario, "November newsletter").unwrap();
        (cm, "701000SB0000000001".to_owned())
    }

    pub async fn link_main(&self) -> String {
        let (cm, sf) = self.main_campaign();
        self.engine
            .store
            .put_link(&LinkRecord {
                cm_campaign_id: cm.clone(),
                sf_campaign_id: sf,
                origin: LinkOrigin::Manual,
                linked_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        cm
    }

    pub async fn sync(&self, cm: &str, dry_run: bool) -> CampaignOutcome {
        let mode = if dry_run { Mode::DryRun } else { Mode::APPLY };
        self.engine
            .sync_campaign(
                &self.settings().await,
                cm,
                &engine::new_run_id(),
                mode,
                Deadline::none(),
            )
            .await
            .unwrap()
    }

    pub async fn sf_records(&self, object: &str) -> Vec<Value> {
        self.control.sf_records(object).await.unwrap()
    }

    pub async fn sf_calls(&self) -> (u64, u64) {
        self.control.sf_calls().await.unwrap()
    }

    pub async fn reset_counters(&self) {
        self.control.reset_counters().await.unwrap()
    }

    pub async fn set_cm_now(&self, now: &str) {
        self.control.set_cm_now(now).await.unwrap()
    }

    pub async fn add_activity(&self, cm: &str, activity: Value) {
        self.control.add_activity(cm, activity).await.unwrap()
    }
}
/// CM's list shows these Deactivate events (no webhook registered: nothing is posted).
pub async fn cm_list_shows(h: &Harness, list: &str, events: Value) {
    h.control.deliver(list, events).await.unwrap();
}
pub const TOKEN_FOR_TEST: &str = "token-for-the-test";
