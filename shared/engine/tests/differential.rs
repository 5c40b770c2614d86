//! The differential test of issue #18: for seeded random scenarios (sizes, activity timing and
//! order, CM page boundaries, when the syncs run, faults), the Salesforce state a series of syncs
//! leaves with every realism switch of the sandbox on equals the state a clean sandbox leaves.
//! Realism: Bulk results in any column and row order, the `CODE:message:fields --` error form,
//! Bulk jobs `InProgress` for several polls, short query pages, unknown statuses turned into the
//! default, the concurrent-request limit, CM records shown up to three hours late, OAuth tokens
//! that expire and rotate on both sides; on top, transient 5xx and lock errors. And where two
//! normal things meet (issue #32): runs handed over between invocations (small parts, a
//! deadline at a random check), records locked for whole runs (some members and people, until
//! the last sync, and any record that draws a lock error, for more attempts than a run makes),
//! CM records of equal date in any order between pages and an exclusive `date` filter, list
//! opt-outs and bounces the list shows late (read by the backstop), and a hot and a scheduled
//! run at the moment of every sync.
//!
//! `DIFFERENTIAL_SEEDS` sets how many scenarios (default 8, what `make test` runs), from
//! `DIFFERENTIAL_FIRST_SEED` (default 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use campaign_monitor::{CmClient, Credentials, OAuthTokens};
use chrono::NaiveDateTime;
use engine::campaign::{CampaignOutcome, Mode};
use engine::{Deadline, Engine, EngineOptions};
use events::LinkOrigin;
use events::publisher::{MemorySink, Publisher};
use harness::Control;
use salesforce::{Auth, RetryPolicy, SfClient, SfConfig};
use sandbox::generate::{Shape, generate};
use sandbox::scenario::{CmOAuth, CmSubscriber, Scenario};
use serde_json::Value;
use state::memory::MemoryStore;
use state::{LinkRecord, LinkStore, SettingsStore};

/// A seeded sequence of draws (splitmix64): enough for picking sizes and times.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One random case: the scenario, the CM clock at each sync, and for the realism side the
/// deadline check each sync's first invocation hands over at.
struct Case {
    scenario: Scenario,
    syncs_at: Vec<NaiveDateTime>,
    hand_over_at: Vec<u32>,
}

fn case(seed: u64) -> Case {
    let mut draws = Draws(seed);
    let recipients = draws.between(20, 600) as usize;
    // Across CM's 1,000-row page boundary for the larger ones.
    let activities = draws.between(0, 2_400) as usize;
    let mut scenario = generate(&Shape {
        seed,
        recipients,
        activities,
        in_salesforce: [0.5, 0.9, 1.0][draws.between(0, 2) as usize],
        already_members: [0.0, 0.3, 0.8][draws.between(0, 2) as usize],
        ..Shape::default()
    });
    // Activity runs from the send (2026-11-02 09:00) for a week; syncs at random moments in it,
    // and one the day after, when CM shows everything.
    let sent = NaiveDateTime::parse_from_str("2026-11-02 09:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
    // The list the backstop reads: some people unsubscribe or bounce during the week, several
    // in the same minute (in realism each change shows on the list late).
    let people: Vec<String> = ["Contact", "Lead"]
        .iter()
        .flat_map(|object| scenario.sf.records.get(*object).into_iter().flatten())
        .filter_map(|record| record.get("Email").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let minutes: Vec<i64> = (0..4).map(|_| draws.between(20, 7 * 24 * 60) as i64).collect();
    for email in &people {
        if draws.between(0, 9) != 0 {
            continue;
        }
        let state = ["Unsubscribed", "Bounced"][draws.between(0, 1) as usize];
        let date = sent + chrono::Duration::minutes(minutes[draws.between(0, 3) as usize]);
        scenario.cm.lists[0].subscribers.push(CmSubscriber {
            email: email.clone(),
            name: String::new(),
            state: state.into(),
            date: Some(date.format("%Y-%m-%d %H:%M:%S").to_string()),
        });
    }
    let mut syncs_at: Vec<NaiveDateTime> = (0..draws.between(1, 5))
        .map(|_| sent + chrono::Duration::minutes(draws.between(20, 7 * 24 * 60) as i64))
        .collect();
    syncs_at.sort();
    syncs_at.push(sent + chrono::Duration::days(8));
    let hand_over_at = syncs_at.iter().map(|_| draws.between(1, 40) as u32).collect();
    Case {
        scenario,
        syncs_at,
        hand_over_at,
    }
}

fn sf_config(auth: Auth) -> SfConfig {
    let mut config = SfConfig::new(auth);
    config.retry = RetryPolicy {
        max_attempts: 8,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    config.bulk_poll_interval = Duration::from_millis(2);
    // Bulk API 2.0 for the larger writes of these small scenarios too.
    config.bulk_threshold = 150;
    config
}

/// The Salesforce state a user looks at, without what only says when or in which order rows
/// were written (Ids of new members, modification stamps).
fn user_visible(records: Vec<Value>, key: &[&str]) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .map(|mut record| {
            let object = record.as_object_mut().unwrap();
            for stamp in ["LastModifiedDate", "SystemModstamp", "CreatedDate"] {
                object.remove(stamp);
            }
            let id: String = key
                .iter()
                .map(|field| object.get(*field).map(Value::to_string).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|");
            if !key.contains(&"Id") {
                object.remove("Id");
            }
            (id, record)
        })
        .collect()
}

async fn final_state(case: &Case, realism: bool) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let mut scenario = case.scenario.clone();
    if realism {
        scenario.faults.realism = true;
        scenario.faults.seed = case.syncs_at.len() as u64;
        scenario.faults.sf.error_rate = 0.02;
        scenario.faults.sf.lock_row_rate = 0.05;
        scenario.faults.sf.session_expires_after_calls = Some(25);
        scenario.faults.cm.error_rate = 0.02;
        scenario.faults.cm.token_expires_after_calls = Some(20);
        scenario.cm.oauth = Some(CmOAuth {
            client_id: "sandbox-oauth-client".into(),
            client_secret: "sandbox-oauth-secret".into(),
            access_token: "cm-access-start".into(),
            refresh_token: "cm-refresh-start".into(),
            token_lifetime_secs: 1_209_600,
        });
    } else {
        scenario.faults.sf.bulk_results_in_upload_order = true;
    }
    let running = harness::start_sandbox(scenario.clone()).await.unwrap();
    let mut settings = harness::settings_for(&scenario).unwrap();
    settings.cm_lists = vec![scenario.cm.lists[0].id.clone()];
    let (cm_credentials, sf_auth) = if realism {
        (
            Credentials::OAuth(OAuthTokens {
                access_token: "cm-access-start".into(),
                refresh_token: "cm-refresh-start".into(),
                expires_in: 0,
            }),
            Auth::RefreshToken {
                token_host: running.sf_url.clone(),
                client_id: "sandbox-consumer-key".into(),
                client_secret: None,
                refresh_token: "sandbox-refresh-token".into(),
            },
        )
    } else {
        (
            Credentials::api_key(harness::CM_API_KEY),
            harness::sf_auth(&running.sf_url),
        )
    };
    let cm = CmClient::builder(cm_credentials, settings.zone())
        .base_url(&running.cm_url)
        .retry(campaign_monitor::RetryPolicy {
            max_attempts: 8,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_total: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let store = MemoryStore::new();
    store.save_settings(&settings, None, chrono::Utc::now()).await.unwrap();
    let engine = Engine {
        store: Arc::new(store),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
        cm: Arc::new(cm),
        sf: Arc::new(SfClient::new(sf_config(sf_auth)).unwrap()),
        options: EngineOptions {
            // Parts small enough for several, so hand-overs fall between them.
            part_size: if realism { 100 } else { 50_000 },
            ..EngineOptions::default()
        },
    };
    let cm_id = harness::campaign_named(&scenario, "November newsletter").unwrap();
    engine
        .store
        .put_link(&LinkRecord {
            cm_campaign_id: cm_id.clone(),
            sf_campaign_id: "701000SB0000000001".into(),
            origin: LinkOrigin::Manual,
            linked_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let control = Control::of(&running);
    // Records another process keeps locked for whole runs (realism): some members and people,
    // until the last sync.
    let locked: Vec<Value> = ["CampaignMember", "Contact", "Lead"]
        .iter()
        .flat_map(|object| scenario.sf.records.get(*object).into_iter().flatten().take(2))
        .filter_map(|record| record.get("Id").cloned())
        .collect();
    let faults = |last: bool| {
        let mut faults = serde_json::to_value(&scenario.faults).unwrap();
        if last {
            // The last sync meets no lock: what earlier ones left must all be written now.
            faults["sf"]["lock_row_rate"] = 0.0.into();
        } else {
            faults["sf"]["locked_records"] = Value::Array(locked.clone());
        }
        faults
    };
    for (n, at) in case.syncs_at.iter().enumerate() {
        let last = n + 1 == case.syncs_at.len();
        // Set before the first and the last sync only: a lock drawn in one run (realism holds
        // it for more attempts than a run makes) is still there at the next.
        if realism && (n == 0 || last) {
            control.set_faults(faults(last)).await.unwrap();
        }
        control
            .set_cm_now(&at.format("%Y-%m-%d %H:%M:%S").to_string())
            .await
            .unwrap();
        // The hot and the scheduled run fall on the same moment: neither drops the other.
        let (hot_run, scheduled_run) = (engine::new_run_id(), engine::new_run_id());
        let (hot, scheduled) = tokio::join!(
            engine.run_hot(&settings, &hot_run),
            engine.run_scheduled(&settings, &scheduled_run)
        );
        for busy in [hot.map(|o| o.busy), scheduled.map(|o| o.busy)].into_iter().flatten() {
            assert!(!busy, "realism {realism}, at {at}: a run was dropped as busy");
        }
        let run = engine::new_run_id();
        let first_deadline = if realism {
            Deadline::at_check(case.hand_over_at[n])
        } else {
            Deadline::none()
        };
        let mut outcome = engine
            .sync_campaign(&settings, &cm_id, &run, Mode::APPLY, first_deadline)
            .await
            .unwrap_or_else(|e| panic!("realism {realism}, sync at {at}: {e}"));
        let mut continuation = 0;
        while matches!(outcome, CampaignOutcome::Continued { .. }) {
            continuation += 1;
            outcome = engine
                .sync_campaign(&settings, &cm_id, &run, Mode::Apply { continuation }, Deadline::none())
                .await
                .unwrap_or_else(|e| panic!("realism {realism}, continuation at {at}: {e}"));
        }
        assert!(
            matches!(outcome, CampaignOutcome::Done { .. }),
            "realism {realism}, sync at {at}: {outcome:?}"
        );
    }
    let mut state = BTreeMap::new();
    for (object, key) in [
        ("CampaignMember", &["CampaignId", "ContactId", "LeadId"][..]),
        ("CampaignMemberStatus", &["CampaignId", "Label"][..]),
        ("Campaign", &["Id"][..]),
        ("Contact", &["Id"][..]),
        ("Lead", &["Id"][..]),
    ] {
        state.insert(object, user_visible(control.sf_records(object).await.unwrap(), key));
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_realism_switch_on_salesforce_ends_as_with_a_clean_sandbox() {
    let seeds: u64 = std::env::var("DIFFERENTIAL_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let first: u64 = std::env::var("DIFFERENTIAL_FIRST_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    for seed in first..first + seeds {
        eprintln!("seed {seed}");
        let case = case(seed);
        let clean = final_state(&case, false).await;
        let real = final_state(&case, true).await;
        for (object, rows) in &clean {
            let other = &real[object];
            let differing: Vec<&String> = rows
                .keys()
                .chain(other.keys())
                .filter(|key| rows.get(*key) != other.get(*key))
                .collect();
            assert!(
                differing.is_empty(),
                "seed {seed} ({} recipients, {} activities, syncs at {:?}): {object} differs for {} rows, e.g. {:?}: clean {} / realism {}",
                case.scenario.cm.campaigns[0].recipients.len(),
                case.scenario.cm.campaigns[0].activity.len(),
                case.syncs_at,
                differing.len(),
                differing[0],
                rows.get(differing[0]).map_or("none".into(), Value::to_string),
                other.get(differing[0]).map_or("none".into(), Value::to_string),
            );
        }
        assert!(
            !clean["CampaignMember"].is_empty(),
            "seed {seed}: the scenario has members to compare"
        );
        let opted_out_or_bounced = ["Contact", "Lead"]
            .iter()
            .flat_map(|object| clean[object].values())
            .filter(|person| person["HasOptedOutOfEmail"] == Value::Bool(true) || !person["EmailBouncedDate"].is_null())
            .count();
        assert!(
            opted_out_or_bounced >= case.scenario.cm.lists[0].subscribers.len(),
            "seed {seed}: the list's {} opt-outs and bounces reach Salesforce ({opted_out_or_bounced} people)",
            case.scenario.cm.lists[0].subscribers.len()
        );
    }
}
