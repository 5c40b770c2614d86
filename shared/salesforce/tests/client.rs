//! The Salesforce client against the sandbox: each auth flow, session expiry mid-stream, paging,
//! hostile SOQL values, IN-list splitting, collections and bulk with failures, lock retries, the
//! allocation guard, and the exact number of calls each operation takes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::time::Duration;

use salesforce::writes::{COLLECTION_LIMIT, Path, RecordResult};
use salesforce::{Auth, Operation, RecordOutcome, RetryPolicy, SfClient, SfConfig, SfError, WriteOptions, soql};
use sandbox::generate::{Shape, generate};
use sandbox::scenario::Scenario;
use serde_json::{Map, Value, json};

const KEY: &str = include_str!("../../../tests/sandbox/fixtures/jwt-test-key.pem");

fn scenario() -> Scenario {
    generate(&Shape {
        recipients: 6_000,
        activities: 10,
        in_salesforce: 1.0,
        already_members: 0.5,
        ..Shape::default()
    })
}

async fn start(scenario: Scenario) -> sandbox::Running {
    let any = "127.0.0.1:0".parse().unwrap();
    sandbox::start(scenario, any, any).await.unwrap()
}

fn jwt(running: &sandbox::Running) -> Auth {
    Auth::JwtBearer {
        token_host: running.sf_url.clone(),
        client_id: "sandbox-consumer-key".into(),
        username: "integration@example.com".into(),
        private_key_pem: KEY.into(),
        audience: Auth::audience_for("https://login.salesforce.com"),
    }
}

fn client(running: &sandbox::Running) -> SfClient {
    let mut config = SfConfig::new(jwt(running));
    config.retry = RetryPolicy {
        max_attempts: 8,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
    };
    config.bulk_poll_interval = Duration::from_millis(5);
    SfClient::new(config).unwrap()
}

async fn control(running: &sandbox::Running, path: &str, body: Value) {
    reqwest::Client::new()
        .post(format!("{}/_sandbox/{path}", running.sf_url))
        .json(&body)
        .send()
        .await
        .unwrap();
}

fn record(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[tokio::test]
async fn every_auth_flow_signs_in_and_bad_credentials_are_clear() {
    let running = start(scenario()).await;
    let flows = [
        jwt(&running),
        Auth::ClientCredentials {
            token_host: running.sf_url.clone(),
            client_id: "sandbox-consumer-key".into(),
            client_secret: "sandbox-consumer-secret".into(),
        },
        Auth::RefreshToken {
            token_host: running.sf_url.clone(),
            client_id: "sandbox-consumer-key".into(),
            client_secret: None,
            refresh_token: "sandbox-refresh-token".into(),
        },
    ];
    for auth in flows {
        let sf = SfClient::new(SfConfig::new(auth.clone())).unwrap();
        assert_eq!(
            sf.query_all("SELECT Id FROM Campaign").await.unwrap().len(),
            1,
            "{auth:?}"
        );
        assert_eq!(sf.calls().auth, 1);
    }
    let other_key = String::from_utf8(
        std::process::Command::new("openssl")
            .args(["genrsa", "2048"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let Auth::JwtBearer {
        token_host,
        client_id,
        username,
        audience,
        ..
    } = jwt(&running)
    else {
        unreachable!()
    };
    let forged = SfClient::new(SfConfig::new(Auth::JwtBearer {
        token_host,
        client_id,
        username,
        private_key_pem: other_key,
        audience,
    }))
    .unwrap();
    let error = forged.query_all("SELECT Id FROM Campaign").await.unwrap_err();
    assert!(
        matches!(&error, SfError::Auth { error, .. } if error == "invalid_grant"),
        "{error:?}"
    );
    assert!(!format!("{forged:?}").contains("PRIVATE"), "secrets never print");
}

#[tokio::test]
async fn a_query_of_several_pages_survives_session_expiry_mid_stream() {
    let scenario = scenario();
    let contacts = scenario.sf.records["Contact"].len();
    assert!(contacts > 2_000);
    let running = start(scenario).await;
    let sf = client(&running);
    let mut stream = sf.query("SELECT Id, Email FROM Contact");
    let first = stream.next_page().await.unwrap().unwrap();
    assert_eq!(first.len(), 2_000);
    control(&running, "sf/expire-sessions", json!({})).await;
    let mut total = first.len();
    while let Some(page) = stream.next_page().await.unwrap() {
        total += page.len();
    }
    assert_eq!(total, contacts);
    assert_eq!(sf.calls().auth, 2, "renewed once");
    assert_eq!(
        sf.calls().reads,
        contacts.div_ceil(2_000) as u64 + 1,
        "each page, and the replayed one"
    );
}

#[tokio::test]
async fn hostile_values_are_data_never_soql() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let hostile = [
        "o'brien@example.com",
        r"back\slash@example.com",
        "50%_off@example.com",
        "ünïcødé@例え.jp",
        "x' OR LastName != '",
        "quote\"d@example.com",
    ];
    let contacts: Vec<Map<String, Value>> = hostile
        .iter()
        .map(|e| record(&[("LastName", json!("Hostile")), ("Email", json!(e))]))
        .collect();
    let results = sf
        .write("Contact", &Operation::Create, &contacts, &WriteOptions::default())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.outcome.is_success()));
    for email in hostile {
        let rows = sf
            .query_all(&format!(
                "SELECT Id, Email FROM Contact WHERE Email = {}",
                soql::quote(email)
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{email}");
        assert_eq!(rows[0]["Email"], email);
    }
    let like = sf
        .query_all("SELECT Id FROM Contact WHERE Email LIKE '50\\%\\_off%'")
        .await
        .unwrap();
    assert_eq!(like.len(), 1);
}

#[tokio::test]
async fn in_lists_travel_in_composite_bodies_five_queries_a_call() {
    let scenario = scenario();
    let emails: Vec<String> = scenario.sf.records["Contact"]
        .iter()
        .chain(&scenario.sf.records["Lead"])
        .map(|c| c["Email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(emails.len(), 6_000);
    let running = start(scenario).await;
    let sf = client(&running);
    let before = "SELECT Id, Email FROM Contact WHERE Email IN ";
    let queries = sf.in_list_queries(before, &emails, "");
    assert_eq!(queries.len(), 4, "1,900 values a query");
    assert!(
        salesforce::soql::encoded_len(&queries[0]) > salesforce::soql::MAX_URI_BYTES,
        "as a GET this query would be refused with 414"
    );
    assert!(
        queries
            .iter()
            .all(|q| q.chars().count() <= salesforce::MAX_BODY_SOQL_CHARS)
    );
    let contacts = sf.query_in(before, &emails, "").await.unwrap();
    let expected = running.state.lock().sf.records["Contact"].len();
    assert_eq!(contacts.len(), expected, "every Contact found");
    assert_eq!(sf.calls().reads, 1, "four queries, one Composite call");

    // Six queries take two calls; a result longer than a page is followed.
    let mut six = queries.clone();
    six.extend(["SELECT Id FROM Contact".to_owned(), "SELECT Id FROM Lead".to_owned()]);
    let before_calls = sf.calls().reads;
    let rows = sf.query_many(&six).await.unwrap();
    assert_eq!(rows.len(), 2 * expected + (6_000 - expected));
    assert!(
        expected > 2_000 && 6_000 - expected > 2_000,
        "both whole-object queries need a second page"
    );
    let leads = 6_000 - expected;
    let pages_beyond_the_first = (expected.div_ceil(2_000) - 1) + (leads.div_ceil(2_000) - 1);
    assert_eq!(sf.calls().reads - before_calls, 2 + pages_beyond_the_first as u64);

    let refused = sf.query_many(&["SELECT Id FROM Nothing".to_owned()]).await.unwrap_err();
    assert!(
        refused.to_string().contains("INVALID_TYPE") || refused.to_string().contains("NOT_FOUND"),
        "{refused}"
    );
}

/// The most SF requests the sandbox had open at once since its counters were reset.
async fn peak_in_flight(running: &sandbox::Running) -> u64 {
    let counters: Value = reqwest::get(format!("{}/_sandbox/counters", running.sf_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    counters["peak in flight: sf"].as_u64().unwrap_or(0)
}

async fn reset_counters(running: &sandbox::Running) {
    reqwest::Client::new()
        .delete(format!("{}/_sandbox/counters", running.sf_url))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn composite_requests_go_side_by_side_within_the_bound_and_rows_keep_the_queries_order() {
    let mut scenario = scenario();
    let emails: Vec<String> = scenario.sf.records["Contact"]
        .iter()
        .map(|c| c["Email"].as_str().unwrap().to_owned())
        .collect();
    // Each request takes a while, as over a real network.
    scenario.faults.sf.latency_ms = 40;
    let running = start(scenario).await;
    let queries: Vec<String> = emails
        .chunks(250)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(|e| salesforce::soql::quote(e)).collect();
            format!("SELECT Id, Email FROM Contact WHERE Email IN ({})", values.join(", "))
        })
        .collect();
    assert!(queries.len() > 10, "three Composite requests at least");
    let one_at_a_time = {
        let mut config = SfConfig::new(jwt(&running));
        config.requests_in_flight = 1;
        SfClient::new(config).unwrap().query_many(&queries).await.unwrap()
    };
    assert_eq!(peak_in_flight(&running).await, 1);
    reset_counters(&running).await;
    let mut config = SfConfig::new(jwt(&running));
    config.requests_in_flight = 2;
    let sf = SfClient::new(config).unwrap();
    let side_by_side = sf.query_many(&queries).await.unwrap();
    let emails_of = |rows: &[Value]| -> Vec<String> { rows.iter().map(|r| r["Email"].to_string()).collect() };
    assert_eq!(emails_of(&side_by_side), emails_of(&one_at_a_time));
    assert_eq!(side_by_side.len(), emails.len());
    assert_eq!(peak_in_flight(&running).await, 2, "two requests in flight, never more");
    assert_eq!(sf.calls().reads, queries.len().div_ceil(5) as u64);
}

async fn member_ids(sf: &SfClient, limit: usize) -> Vec<String> {
    sf.query_all(&format!("SELECT Id FROM CampaignMember LIMIT {limit}"))
        .await
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn updating_1000_members_through_collections_takes_exactly_5_write_calls() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let ids = member_ids(&sf, 1_000).await;
    let updates: Vec<_> = ids
        .iter()
        .map(|id| record(&[("Id", json!(id)), ("Status", json!("Responded"))]))
        .collect();
    let results = sf
        .write("CampaignMember", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.outcome == RecordOutcome::Updated(ids[r.index].clone()))
    );
    assert_eq!(sf.calls().writes, (1_000 / COLLECTION_LIMIT) as u64);
    assert_eq!(sf.calls().writes, 5);
}

/// Collections calls of one write go side by side, never more than the client's bound at once,
/// and each record's outcome stays at its place, a refusal in a later chunk included.
#[tokio::test]
async fn collections_calls_go_side_by_side_within_the_bound_and_outcomes_keep_their_place() {
    let mut scenario = scenario();
    scenario.faults.sf.latency_ms = 40;
    let running = start(scenario).await;
    let mut config = SfConfig::new(jwt(&running));
    config.requests_in_flight = 2;
    let sf = SfClient::new(config).unwrap();
    let ids = member_ids(&sf, 1_000).await;
    let mut updates: Vec<_> = ids
        .iter()
        .map(|id| record(&[("Id", json!(id)), ("Status", json!("Responded"))]))
        .collect();
    updates[777].insert("Status".into(), json!("Not a status"));
    reset_counters(&running).await;
    let results = sf
        .write("CampaignMember", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    for result in &results {
        if result.index == 777 {
            assert!(
                matches!(&result.outcome, RecordOutcome::Failed(e) if e.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
                "{:?}",
                result.outcome
            );
        } else {
            assert_eq!(result.outcome, RecordOutcome::Updated(ids[result.index].clone()));
        }
    }
    assert_eq!(peak_in_flight(&running).await, 2, "two at once, never more");
    assert_eq!(sf.calls().writes, 5);
}

#[tokio::test]
async fn partial_failures_are_reported_per_record_in_the_callers_order() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let ids = member_ids(&sf, 4).await;
    let mut updates: Vec<_> = ids
        .iter()
        .map(|id| record(&[("Id", json!(id)), ("Status", json!("Responded"))]))
        .collect();
    updates[2].insert("Status".into(), json!("Not a status"));
    let results = sf
        .write("CampaignMember", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    let ok: Vec<bool> = results.iter().map(|r| r.outcome.is_success()).collect();
    assert_eq!(ok, [true, true, false, true]);
    let RecordOutcome::Failed(error) = &results[2].outcome else {
        panic!()
    };
    assert_eq!(error.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    assert_eq!(sf.calls().writes, 1, "a permanent error is not retried");
}

#[tokio::test]
async fn idempotent_member_insert_treats_duplicates_as_already_there() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let existing = sf
        .query_all("SELECT CampaignId, ContactId FROM CampaignMember WHERE ContactId != null LIMIT 2")
        .await
        .unwrap();
    let inserts: Vec<_> = existing
        .iter()
        .map(|m| {
            record(&[
                ("CampaignId", m["CampaignId"].clone()),
                ("ContactId", m["ContactId"].clone()),
            ])
        })
        .collect();
    let strict = sf
        .write("CampaignMember", &Operation::Create, &inserts, &WriteOptions::default())
        .await
        .unwrap();
    assert!(
        strict
            .iter()
            .all(|r| matches!(&r.outcome, RecordOutcome::Failed(e) if e.code == "DUPLICATE_VALUE"))
    );
    let lenient = sf
        .write(
            "CampaignMember",
            &Operation::Create,
            &inserts,
            &WriteOptions {
                duplicate_is_success: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(lenient.iter().all(|r| r.outcome == RecordOutcome::AlreadyExists));
}

#[tokio::test]
async fn a_bulk_job_maps_failed_rows_back_and_counts_its_calls() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let contacts: Vec<String> = sf
        .query_all("SELECT Id FROM Contact")
        .await
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect();
    let mut updates: Vec<_> = contacts
        .iter()
        .take(2_500)
        .map(|id| record(&[("Id", json!(id)), ("HasOptedOutOfEmail", json!(true))]))
        .collect();
    updates[10] = record(&[("Id", json!("003000SB9999999999")), ("HasOptedOutOfEmail", json!(true))]);
    updates[20].insert("Nope__c".into(), json!("x"));
    let reads_before = sf.calls().reads;
    let results = sf
        .write("Contact", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    let failed: Vec<(usize, String)> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            RecordOutcome::Failed(e) => Some((r.index, e.code.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(10, "ENTITY_IS_DELETED".to_owned()), (20, "INVALID_FIELD".to_owned())]
    );
    assert_eq!(results.iter().filter(|r| r.outcome.is_success()).count(), 2_498);
    let calls = sf.calls();
    assert_eq!(calls.writes, 0, "2,500 records go through Bulk API 2.0");
    assert_eq!(
        calls.bulk, 6,
        "create, upload, close, one poll, the successful and failed results (every row processed: \
         no unprocessed-records call)"
    );
    assert_eq!(calls.reads, reads_before);
}

/// 2,500 contact updates (Bulk size) and the ids they update.
async fn bulk_sized_updates(sf: &SfClient) -> Vec<Map<String, Value>> {
    sf.query_all("SELECT Id FROM Contact")
        .await
        .unwrap()
        .iter()
        .take(2_500)
        .map(|r| record(&[("Id", r["Id"].clone()), ("EmailBouncedReason", json!("Bulk-tested"))]))
        .collect()
}

async fn contacts_titled(sf: &SfClient, title: &str) -> usize {
    sf.query_all(&format!("SELECT Id FROM Contact WHERE EmailBouncedReason = '{title}'"))
        .await
        .unwrap()
        .len()
}

/// 2,500 Contact updates (Bulk-sized) written on a sandbox `faults` set up: the sandbox (kept
/// running), the client and the results.
async fn bulk_sized_write(faults: impl FnOnce(&mut Scenario)) -> (sandbox::Running, SfClient, Vec<RecordResult>) {
    let mut scenario = scenario();
    faults(&mut scenario);
    let running = start(scenario).await;
    let sf = client(&running);
    let updates = bulk_sized_updates(&sf).await;
    let results = sf
        .write("Contact", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    (running, sf, results)
}

#[tokio::test]
async fn a_slow_bulk_job_is_polled_until_it_completes() {
    let (_running, sf, results) = bulk_sized_write(|s| s.faults.sf.bulk_in_progress_polls = 3).await;
    assert!(results.iter().all(|r| r.outcome.is_success()));
    let calls = sf.calls();
    assert_eq!(
        calls.bulk, 8,
        "create, upload, close, four polls, the successful results (none failed, all processed)"
    );
    assert_eq!(calls.writes, 0);
}

/// A client that gives up on a Bulk job after `limit_ms`, polling every 5 ms.
fn impatient_bulk_config(running: &sandbox::Running, limit_ms: u64) -> SfConfig {
    let mut config = SfConfig::new(jwt(running));
    config.bulk_poll_interval = Duration::from_millis(5);
    config.bulk_poll_limit = Duration::from_millis(limit_ms);
    config
}

#[tokio::test]
async fn a_bulk_job_past_its_time_limit_is_aborted_and_written_through_collections() {
    let mut scenario = scenario();
    scenario.faults.sf.bulk_in_progress_polls = 1_000_000;
    let running = start(scenario).await;
    let sf = SfClient::new(impatient_bulk_config(&running, 200)).unwrap();
    let updates = bulk_sized_updates(&sf).await;
    let results = sf
        .write("Contact", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.outcome.is_success()), "every row written");
    assert_eq!(contacts_titled(&sf, "Bulk-tested").await, 2_500);
    let calls = sf.calls();
    assert_eq!(calls.writes, 13, "2,500 rows in Collections of 200");
    let polls = calls.bulk - 4; // create, upload, close, abort
    assert!((2..=8).contains(&polls), "polling stops at the limit ({polls} polls)");
    let counters: Value = reqwest::get(format!("{}/_sandbox/counters", running.sf_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aborts = counters
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with("sf PATCH") && route.contains("jobs/ingest"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(aborts, 2, "closed once, aborted once");
}

/// A job past its time limit that cannot be aborted may still write its rows after a later run
/// wrote newer ones (#33 item 7): nothing is written until it is stopped, and the write fails
/// retryable instead of going through Collections.
#[tokio::test]
async fn a_bulk_job_that_cannot_be_aborted_holds_every_write_until_it_is_stopped() {
    let mut scenario = scenario();
    scenario.faults.sf.bulk_in_progress_polls = 1_000_000;
    scenario.faults.sf.bulk_abort_failures = 1_000;
    let running = start(scenario).await;
    let mut config = impatient_bulk_config(&running, 100);
    config.retry = RetryPolicy {
        max_attempts: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let sf = SfClient::new(config).unwrap();
    let updates = bulk_sized_updates(&sf).await;
    let error = sf
        .write("Contact", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("BULK_JOB_NOT_STOPPED"), "{error}");
    assert_eq!(
        sf.calls().writes,
        0,
        "nothing through Collections while the job may still write"
    );

    // Still unstoppable: a later write (a newer value) is refused before it starts a job.
    let bulk_before = sf.calls().bulk;
    let one = vec![updates[0].clone()];
    let refused = sf
        .write("Contact", &Operation::Update, &one, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("BULK_JOB_NOT_STOPPED"), "{refused}");
    assert_eq!(sf.calls().writes, 0);
    let jobs_created = |counters: &Value| {
        counters["sf POST /services/data/v66.0/jobs/ingest"]
            .as_u64()
            .unwrap_or(0)
    };
    let counters: Value = reqwest::get(format!("{}/_sandbox/counters", running.sf_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs_created(&counters), 1, "no second job");
    assert!(sf.calls().bulk > bulk_before, "it tried to stop the old job first");

    // The abort goes through: the old job is stopped, and writing resumes.
    let mut faults: Value = reqwest::get(format!("{}/_sandbox/faults", running.sf_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    faults["sf"]["bulk_abort_failures"] = json!(0);
    reqwest::Client::new()
        .put(format!("{}/_sandbox/faults", running.sf_url))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let results = sf
        .write("Contact", &Operation::Update, &one, &WriteOptions::default())
        .await
        .unwrap();
    assert!(results[0].outcome.is_success());
    assert_eq!(sf.calls().writes, 1);
}

#[tokio::test]
async fn a_failed_bulk_job_falls_back_to_collections() {
    let mut scenario = scenario();
    scenario.faults.sf.bulk_job_failure = Some("InvalidBatch : Failed to process query".into());
    let running = start(scenario).await;
    let sf = client(&running);
    let updates = bulk_sized_updates(&sf).await;
    let results = sf
        .write("Contact", &Operation::Update, &updates, &WriteOptions::default())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.outcome.is_success()));
    assert_eq!(contacts_titled(&sf, "Bulk-tested").await, 2_500);
    let calls = sf.calls();
    assert_eq!(calls.bulk, 4, "create, upload, close, one poll that reads Failed");
    assert_eq!(calls.writes, 13);
}

#[tokio::test]
async fn lock_errors_are_retried_to_success() {
    let mut scenario = scenario();
    scenario.faults.seed = 9;
    scenario.faults.sf.lock_row_rate = 0.3;
    let running = start(scenario).await;
    let sf = client(&running);
    let ids = member_ids(&sf, 400).await;
    let updates: Vec<_> = ids
        .iter()
        .map(|id| record(&[("Id", json!(id)), ("Status", json!("Responded"))]))
        .collect();
    let results = sf
        .write(
            "CampaignMember",
            &Operation::Update,
            &updates,
            &WriteOptions {
                path: Path::Collections,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        results.iter().all(|r| r.outcome.is_success()),
        "{:?}",
        results.iter().find(|r| !r.outcome.is_success())
    );
    assert!(sf.calls().writes > 2, "the locked records were sent again");
}

#[tokio::test]
async fn server_unavailable_is_retried() {
    let mut scenario = scenario();
    scenario.faults.seed = 4;
    scenario.faults.sf.error_rate = 0.4;
    let running = start(scenario).await;
    let sf = client(&running);
    for _ in 0..10 {
        assert_eq!(sf.query_all("SELECT Id FROM Campaign").await.unwrap().len(), 1);
    }
    assert!(sf.calls().reads > 10);
}

#[tokio::test]
async fn the_allocation_guard_refuses_new_work_with_a_clear_error() {
    let mut scenario = scenario();
    scenario.sf.api_allocation = 100;
    scenario.sf.api_used = 78;
    let running = start(scenario).await;
    let sf = client(&running);
    sf.query_all("SELECT Id FROM Campaign").await.unwrap(); // 79/100
    sf.query_all("SELECT Id FROM Campaign").await.unwrap(); // 80/100: the guard is reached
    let error = sf.query_all("SELECT Id FROM Campaign").await.unwrap_err();
    assert_eq!(
        error,
        SfError::AllocationGuard {
            used: 80,
            max: 100,
            percent: 80
        }
    );
    assert!(error.to_string().contains("80 of its 100 daily API requests"));
    let writes = sf
        .write(
            "Contact",
            &Operation::Create,
            &[record(&[("LastName", json!("X"))])],
            &WriteOptions::default(),
        )
        .await;
    assert!(matches!(writes, Err(SfError::AllocationGuard { .. })));
}

#[tokio::test]
async fn request_limit_exceeded_is_reported_not_retried() {
    let mut scenario = scenario();
    scenario.sf.api_allocation = 1;
    let running = start(scenario).await;
    let mut config = SfConfig::new(jwt(&running));
    config.allocation_guard = 1.5; // let the org's own limit speak
    let sf = SfClient::new(config).unwrap();
    sf.query_all("SELECT Id FROM Campaign").await.unwrap();
    let error = sf.query_all("SELECT Id FROM Campaign").await.unwrap_err();
    assert!(matches!(error, SfError::RequestLimit(_)), "{error:?}");
    assert_eq!(sf.calls().reads, 2);
}

#[tokio::test]
async fn too_many_concurrent_requests_is_waited_out_not_reported_as_the_daily_limit() {
    let mut scenario = scenario();
    scenario.faults.seed = 4;
    scenario.faults.sf.concurrent_limit_rate = 0.5;
    let running = start(scenario).await;
    let sf = client(&running);
    for _ in 0..10 {
        let rows = sf.query_all("SELECT Id FROM Campaign").await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    assert!(sf.calls().reads > 10, "some were retried: {:?}", sf.calls());
}

#[tokio::test]
async fn query_pages_shorter_than_asked_for_still_give_every_row_once() {
    let mut scenario = scenario();
    scenario.faults.seed = 11;
    scenario.faults.sf.short_query_pages = true;
    let contacts = scenario.sf.records["Contact"].len();
    let running = start(scenario).await;
    let sf = client(&running);
    let rows = sf.query_all("SELECT Id, Email FROM Contact").await.unwrap();
    let ids: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r["Id"].as_str()).collect();
    assert_eq!((rows.len(), ids.len()), (contacts, contacts));
    assert!(sf.calls().reads > contacts.div_ceil(2000) as u64, "{:?}", sf.calls());
}

#[tokio::test]
async fn describe_is_cached_per_object() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let first = sf.describe("CampaignMember").await.unwrap();
    let second = sf.describe("CampaignMember").await.unwrap();
    assert_eq!(first, second);
    assert!(first.field("cm_activity_date__c").is_some_and(|f| f.updateable));
    assert!(first.field("HasResponded").is_some_and(|f| !f.updateable));
    assert_eq!(sf.calls().reads, 1);
    let missing = sf.describe("Nope").await.unwrap_err();
    assert!(matches!(missing, SfError::Api { status: 404, .. }), "{missing:?}");
}

#[tokio::test]
async fn upsert_on_the_link_field_is_idempotent() {
    let running = start(scenario()).await;
    let sf = client(&running);
    let campaign = record(&[("CM_Campaign_ID__c", json!("feedface")), ("Name", json!("Auto"))]);
    let upsert = Operation::Upsert {
        external_id_field: "CM_Campaign_ID__c".into(),
    };
    let first = sf
        .write(
            "Campaign",
            &upsert,
            std::slice::from_ref(&campaign),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let second = sf
        .write("Campaign", &upsert, &[campaign], &WriteOptions::default())
        .await
        .unwrap();
    let (RecordOutcome::Created(a), RecordOutcome::Updated(b)) = (&first[0].outcome, &second[0].outcome) else {
        panic!("{first:?} {second:?}")
    };
    assert_eq!(a, b);
}

#[tokio::test]
async fn the_secret_json_form_signs_in_and_typos_are_refused() {
    let running = start(scenario()).await;
    let secret = json!({"flow": "jwt_bearer", "token_host": running.sf_url, "client_id": "sandbox-consumer-key",
                        "username": "integration@example.com", "private_key_pem": KEY});
    let auth: Auth = serde_json::from_value(secret).unwrap();
    let sf = SfClient::new(SfConfig::new(auth)).unwrap();
    assert_eq!(
        sf.query_all("SELECT Id FROM Campaign").await.unwrap().len(),
        1,
        "audience derived from the host"
    );
    let typo =
        json!({"flow": "jwt_bearer", "token_host": "x", "client_id": "c", "user_name": "u", "private_key_pem": "k"});
    let error = serde_json::from_value::<Auth>(typo).err().unwrap().to_string();
    assert!(error.contains("user_name"), "{error}");
}

/// A server that speaks just enough of Salesforce to hand back one query cursor forever: what a
/// faulty proxy or a Salesforce bug could do. The client must stop, not loop.
#[tokio::test]
async fn a_query_cursor_handed_back_twice_stops_the_walk_with_an_error() {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let instance = base.clone();
    let page = || {
        axum::Json(json!({"totalSize": 4_000, "done": false,
            "nextRecordsUrl": "/services/data/v66.0/query/01gSB0000000001-2000",
            "records": [{"attributes": {"type": "Contact"}, "Id": "003SB0000000001AAA"}]}))
    };
    let app = axum::Router::new()
        .route(
            "/services/oauth2/token",
            post(move || async move { axum::Json(json!({"access_token": "t", "instance_url": instance})) }),
        )
        .route("/services/data/v66.0/query", get(move || async move { page() }))
        .route(
            "/services/data/v66.0/query/{cursor}",
            get(move || async move { page() }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sf = SfClient::new(SfConfig::new(Auth::ClientCredentials {
        token_host: base,
        client_id: "id".into(),
        client_secret: "secret".into(),
    }))
    .unwrap();
    let error = sf.query_all("SELECT Id FROM Contact").await.unwrap_err();
    assert!(matches!(&error, SfError::Decode(m) if m.contains("repeats")), "{error}");
    assert_eq!(sf.calls().reads, 2, "the first page and the repeated one, no more");
}

#[tokio::test]
async fn a_token_answer_naming_a_foreign_instance_or_too_big_is_refused_and_the_token_never_sent() {
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let foreign_calls = std::sync::Arc::new(AtomicU64::new(0));
    let counted = foreign_calls.clone();
    let app = axum::Router::new()
        .route(
            "/foreign/services/oauth2/token",
            post(|| async {
                axum::Json(json!({"access_token": "t", "instance_url": "https://collector.example.com"}))
            }),
        )
        .route(
            "/huge/services/oauth2/token",
            post(|| async { format!("{{\"access_token\": \"t\", \"pad\": \"{}\"}}", "x".repeat(200_000)) }),
        )
        .fallback(get(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { "{}" }
        }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (path, expected) in [("foreign", "neither the sign-in host"), ("huge", "over")] {
        let sf = SfClient::new(SfConfig::new(Auth::ClientCredentials {
            token_host: format!("{base}/{path}"),
            client_id: "id".into(),
            client_secret: "secret".into(),
        }))
        .unwrap();
        let error = sf.query_all("SELECT Id FROM Contact").await.unwrap_err();
        assert!(error.to_string().contains(expected), "{path}: {error}");
    }
    assert_eq!(foreign_calls.load(Ordering::Relaxed), 0);
    for (instance, host, allowed) in [
        ("https://acme.my.salesforce.com", "https://login.salesforce.com", true),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "https://test.salesforce.com",
            true,
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", true),
        ("http://acme.my.salesforce.com", "https://login.salesforce.com", false),
        (
            "https://salesforce.com.evil.example",
            "https://login.salesforce.com",
            false,
        ),
        (
            "https://evil.example/.salesforce.com",
            "https://login.salesforce.com",
            false,
        ),
        ("https://user@evil.example", "https://login.salesforce.com", false),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9000", false),
    ] {
        assert_eq!(
            salesforce::instance_url_allowed(instance, host),
            allowed,
            "{instance} from {host}"
        );
    }
}

/// A vault in memory shared by the test's "containers": one sign-in at a time, the shared
/// session used when it is not the refused one (what lambda-support's keeper does across
/// processes).
struct MemoryVault {
    refresh_token: std::sync::Mutex<String>,
    session: std::sync::Mutex<Option<salesforce::SharedSession>>,
    turn: tokio::sync::Mutex<()>,
}

impl MemoryVault {
    fn seeded(refresh_token: &str) -> MemoryVault {
        MemoryVault {
            refresh_token: std::sync::Mutex::new(refresh_token.into()),
            session: std::sync::Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn refresh_token(&self) -> String {
        self.refresh_token.lock().unwrap().clone()
    }
}

impl salesforce::SessionVault for MemoryVault {
    fn renew<'a>(
        &'a self,
        stale: Option<&'a str>,
        renewal: salesforce::Renewal<'a>,
    ) -> salesforce::VaultFuture<'a, salesforce::SharedSession> {
        Box::pin(async move {
            let _turn = self.turn.lock().await;
            let shared = self.session.lock().unwrap().clone();
            if let Some(shared) = shared.filter(|s| Some(s.access_token.as_str()) != stale) {
                return Ok(shared);
            }
            let session = renewal(self.refresh_token()).await?;
            *self.refresh_token.lock().unwrap() = session.refresh_token.clone();
            *self.session.lock().unwrap() = Some(session.clone());
            Ok(session)
        })
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_saved_and_another_container_takes_it_up() {
    let mut scenario = scenario();
    scenario.faults.sf.rotate_refresh_tokens = true;
    let running = start(scenario).await;
    let auth = Auth::RefreshToken {
        token_host: running.sf_url.clone(),
        client_id: "sandbox-consumer-key".into(),
        client_secret: None,
        refresh_token: "sandbox-refresh-token".into(),
    };
    let vault = std::sync::Arc::new(MemoryVault::seeded("sandbox-refresh-token"));
    let first = SfClient::new(SfConfig::new(auth.clone()))
        .unwrap()
        .with_session_vault(vault.clone());
    let second = SfClient::new(SfConfig::new(auth))
        .unwrap()
        .with_session_vault(vault.clone());
    let mut saved = Vec::new();
    // Three sessions in a row, each ended by Salesforce: each refresh rotates the token.
    for _ in 0..3 {
        assert_eq!(first.query_all("SELECT Id FROM Campaign").await.unwrap().len(), 1);
        let token = vault.refresh_token();
        assert!(!saved.contains(&token) && token != "sandbox-refresh-token");
        saved.push(token);
        control(&running, "sf/expire-sessions", json!({})).await;
    }
    // A container started before the rotations still has the first token: it uses the shared
    // session (expired: one renewal of the shared refresh token), never its own spent one.
    assert_eq!(second.query_all("SELECT Id FROM Campaign").await.unwrap().len(), 1);
    assert_eq!(second.calls().auth, 1);
    // A third container starts while the session is good: no sign-in at all.
    let third = SfClient::new(SfConfig::new(Auth::RefreshToken {
        token_host: running.sf_url.clone(),
        client_id: "sandbox-consumer-key".into(),
        client_secret: None,
        refresh_token: "sandbox-refresh-token".into(),
    }))
    .unwrap()
    .with_session_vault(vault.clone());
    assert_eq!(third.query_all("SELECT Id FROM Campaign").await.unwrap().len(), 1);
    assert_eq!(third.calls().auth, 0, "the shared session was used");
}

#[tokio::test]
async fn tasks_that_see_the_session_end_together_sign_in_once() {
    let mut scenario = scenario();
    scenario.faults.sf.rotate_refresh_tokens = true;
    let running = start(scenario).await;
    let sf = std::sync::Arc::new(
        SfClient::new(SfConfig::new(Auth::RefreshToken {
            token_host: running.sf_url.clone(),
            client_id: "sandbox-consumer-key".into(),
            client_secret: None,
            refresh_token: "sandbox-refresh-token".into(),
        }))
        .unwrap(),
    );
    assert_eq!(sf.query_all("SELECT Id FROM Campaign").await.unwrap().len(), 1);
    control(&running, "sf/expire-sessions", json!({})).await;
    // Six queries of one sync at once: with one sign-in each, every sign-in would spend the
    // refresh token the one before it was given.
    let queries = (0..6).map(|_| {
        let sf = sf.clone();
        tokio::spawn(async move { sf.query_all("SELECT Id FROM Campaign").await })
    });
    for outcome in futures::future::join_all(queries).await {
        assert_eq!(outcome.unwrap().unwrap().len(), 1);
    }
    assert_eq!(sf.calls().auth, 2, "the first sign-in and one renewal");
}

#[test]
fn the_client_credentials_flow_is_refused_on_a_generic_login_host_before_any_call() {
    let auth = |flow: &str, host: &str| -> salesforce::Auth {
        let mut fields = serde_json::json!({"flow": flow, "token_host": host, "client_id": "c"});
        let extra = if flow == "client_credentials" {
            serde_json::json!({"client_secret": "s"})
        } else {
            serde_json::json!({"username": "u@example.com", "private_key_pem": "k"})
        };
        fields
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(fields).unwrap()
    };
    for host in ["https://login.salesforce.com", "https://TEST.salesforce.com/"] {
        let refused = auth("client_credentials", host).check().unwrap_err();
        assert!(refused.contains("My Domain"), "{refused}");
    }
    assert_eq!(
        auth("client_credentials", "https://acme.my.salesforce.com").check(),
        Ok(())
    );
    assert_eq!(
        auth("client_credentials", "http://127.0.0.1:9000").check(),
        Ok(()),
        "the sandbox"
    );
    assert_eq!(
        auth("jwt_bearer", "https://login.salesforce.com").check(),
        Ok(()),
        "JWT may use it"
    );
}

#[tokio::test]
async fn rows_a_bulk_job_records_in_no_result_file_are_written_again_not_failed_for_good() {
    let (_running, sf, results) = bulk_sized_write(|s| s.faults.sf.bulk_results_dropped_rows = 7).await;
    let failed: Vec<_> = results.iter().filter(|r| !r.outcome.is_success()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(contacts_titled(&sf, "Bulk-tested").await, 2_500);
    let calls = sf.calls();
    assert_eq!(
        calls.writes, 1,
        "the 7 rows with no recorded outcome go again, through one Collections call"
    );
    assert!(salesforce::is_transient_code(salesforce::NOT_PROCESSED));
}
