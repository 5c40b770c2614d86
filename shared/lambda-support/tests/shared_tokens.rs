//! Tokens shared by many containers (issue #33 item 1): five containers of one deployment, each
//! with its own client and keeper, over one state table and one secret, against the stand-ins
//! (CM rotates its refresh token at every refresh and refuses a spent one; Salesforce does with
//! rotation on).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use campaign_monitor::{CmClient, Credentials, OAuthTokens};
use chrono::{DateTime, Utc};
use lambda_support::vault::{KeeperTiming, SecretSlot};
use lambda_support::{Credential, TokenKeeper};
use salesforce::{Auth, SfClient, SfConfig};
use sandbox::generate::{Shape, generate};
use sandbox::scenario::{CmOAuth, Scenario};
use serde_json::{Value, json};
use state::memory::MemoryStore;
use state::sealed::Sealer;
use state::{Lease, LeaseStore, RunCommit, SealedTokens, StoreError, TokenStore};

/// The state table, whose token saves fail while `failing_saves` is above zero.
#[derive(Default)]
struct Table {
    inner: MemoryStore,
    failing_saves: AtomicUsize,
    saves: AtomicUsize,
}

impl TokenStore for Table {
    async fn sealed_tokens(&self, credential: &str) -> Result<Option<SealedTokens>, StoreError> {
        self.inner.sealed_tokens(credential).await
    }

    async fn save_sealed_tokens(&self, tokens: &SealedTokens) -> Result<bool, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self
            .failing_saves
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Backend {
                operation: "PutItem",
                message: "ProvisionedThroughputExceededException".into(),
                retryable: true,
            });
        }
        self.inner.save_sealed_tokens(tokens).await
    }
}

impl LeaseStore for Table {
    async fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.acquire_lease(scope, owner, now, until).await
    }

    async fn release_lease(&self, scope: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_lease(scope, owner).await
    }

    async fn commit_under_lease(&self, lease: &Lease, commit: &RunCommit) -> Result<bool, StoreError> {
        self.inner.commit_under_lease(lease, commit).await
    }
}

/// The credential's secret; its writes fail while `failing` is set.
#[derive(Clone)]
struct Secret(Arc<SecretState>);

struct SecretState {
    doc: Mutex<Value>,
    writes: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

impl Secret {
    fn new(doc: Value) -> Secret {
        Secret(Arc::new(SecretState {
            doc: Mutex::new(doc),
            writes: AtomicUsize::new(0),
            failing: false.into(),
        }))
    }

    fn field(&self, name: &str) -> String {
        self.0.doc.lock().unwrap()[name].as_str().unwrap().to_owned()
    }

    fn writes(&self) -> usize {
        self.0.writes.load(Ordering::SeqCst)
    }
}

impl SecretSlot for Secret {
    async fn read(&self) -> Result<Value, String> {
        Ok(self.0.doc.lock().unwrap().clone())
    }

    async fn write(&self, fields: &[(&str, &str)]) -> Result<(), String> {
        if self.0.failing.load(Ordering::SeqCst) {
            return Err("ThrottlingException".into());
        }
        let mut doc = self.0.doc.lock().unwrap();
        for (name, value) in fields {
            doc[*name] = json!(value);
        }
        self.0.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn sealer() -> Sealer {
    Sealer::new(&[[42; 32]]).unwrap()
}

fn fast() -> KeeperTiming {
    KeeperTiming {
        lease: Duration::from_secs(30),
        wait: Duration::from_secs(20),
        poll: Duration::from_millis(20),
        save_attempts: 4,
        save_backoff: Duration::from_millis(5),
    }
}

fn keeper(table: &Arc<Table>, secret: &Secret, credential: Credential) -> Arc<TokenKeeper<Table, Secret>> {
    Arc::new(TokenKeeper::new(table.clone(), secret.clone(), credential, sealer()).with_timing(fast()))
}

fn cm_scenario() -> Scenario {
    let mut scenario = generate(&Shape {
        recipients: 50,
        activities: 50,
        ..Shape::default()
    });
    scenario.cm.oauth = Some(CmOAuth {
        client_id: "app".into(),
        client_secret: "secret".into(),
        access_token: "access-1".into(),
        refresh_token: "refresh-1".into(),
        token_lifetime_secs: 3600,
    });
    scenario
}

async fn start(scenario: Scenario) -> sandbox::Running {
    let any = "127.0.0.1:0".parse().unwrap();
    sandbox::start(scenario, any, any).await.unwrap()
}

async fn counter(url: &str, name: &str) -> u64 {
    let counters: Value = reqwest::get(format!("{url}/_sandbox/counters"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    counters[name].as_u64().unwrap_or(0)
}

async fn expire_cm_tokens(running: &sandbox::Running) {
    let response = reqwest::Client::new()
        .post(format!("{}/_sandbox/cm/expire-tokens", running.cm_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// A container as `deployed_container` builds it: the shared tokens first, then the client.
async fn cm_container(running: &sandbox::Running, table: &Arc<Table>, secret: &Secret) -> CmClient {
    let keeper = keeper(table, secret, Credential::CampaignMonitor);
    let shared = keeper.tokens().await.unwrap();
    CmClient::builder(
        Credentials::OAuth(OAuthTokens {
            access_token: shared.access_token.unwrap(),
            refresh_token: shared.refresh_token,
            expires_in: 0,
        }),
        chrono_tz::UTC,
    )
    .base_url(&running.cm_url)
    .token_vault(keeper)
    .build()
    .unwrap()
}

fn cm_secret() -> Secret {
    Secret::new(json!({"access_token": "access-1", "refresh_token": "refresh-1"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_containers_whose_token_expired_refresh_it_once_and_all_go_on() {
    let running = start(cm_scenario()).await;
    let (table, secret) = (Arc::new(Table::default()), cm_secret());
    let mut containers = Vec::new();
    for _ in 0..5 {
        containers.push(Arc::new(cm_container(&running, &table, &secret).await));
    }
    expire_cm_tokens(&running).await;
    let calls = containers.iter().map(|cm| {
        let cm = cm.clone();
        tokio::spawn(async move { cm.clients().await })
    });
    for outcome in futures::future::join_all(calls).await {
        assert_eq!(outcome.unwrap().unwrap().len(), 1, "every container goes on");
    }
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 1, "one refresh");
    assert_eq!(
        secret.writes(),
        0,
        "the secret is not written: the table keeps the tokens"
    );
    let stored = table.inner.sealed_tokens("cm").await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert!(
        !stored.sealed.contains("access") && !stored.sealed.contains("refresh"),
        "sealed"
    );

    // A sixth container starting now uses the shared tokens: no refresh, although the secret
    // still holds the spent ones.
    let late = cm_container(&running, &table, &secret).await;
    assert_eq!(late.clients().await.unwrap().len(), 1);
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 1);
    assert_eq!(secret.field("refresh_token"), "refresh-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saves_that_fail_are_retried_and_the_next_container_signs_in_with_them() {
    let running = start(cm_scenario()).await;
    let (table, secret) = (Arc::new(Table::default()), cm_secret());
    table.failing_saves.store(3, Ordering::SeqCst);
    let first = cm_container(&running, &table, &secret).await;
    expire_cm_tokens(&running).await;
    assert_eq!(first.clients().await.unwrap().len(), 1);
    assert_eq!(table.saves.load(Ordering::SeqCst), 4, "three refused, the fourth kept");
    assert_eq!(secret.writes(), 0);
    let second = cm_container(&running, &table, &secret).await;
    assert_eq!(second.clients().await.unwrap().len(), 1);
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_that_stays_unwritable_sends_the_tokens_to_the_secret_and_a_later_save_catches_up() {
    let running = start(cm_scenario()).await;
    let (table, secret) = (Arc::new(Table::default()), cm_secret());
    table.failing_saves.store(usize::MAX, Ordering::SeqCst);
    let first = cm_container(&running, &table, &secret).await;
    expire_cm_tokens(&running).await;
    assert_eq!(first.clients().await.unwrap().len(), 1);
    assert_eq!(secret.writes(), 1, "the renewed tokens went to the secret instead");
    assert_ne!(secret.field("refresh_token"), "refresh-1");
    // A new container (the table still unwritable) takes them from the secret.
    let second = cm_container(&running, &table, &secret).await;
    assert_eq!(second.clients().await.unwrap().len(), 1);
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 1);

    // Both unwritable: the container keeps its tokens and saves them at a later use.
    secret.0.failing.store(true, Ordering::SeqCst);
    let third_keeper = keeper(&table, &secret, Credential::CampaignMonitor);
    let third = CmClient::builder(
        Credentials::OAuth(OAuthTokens {
            access_token: secret.field("access_token"),
            refresh_token: secret.field("refresh_token"),
            expires_in: 0,
        }),
        chrono_tz::UTC,
    )
    .base_url(&running.cm_url)
    .token_vault(third_keeper.clone())
    .build()
    .unwrap();
    expire_cm_tokens(&running).await;
    assert_eq!(third.clients().await.unwrap().len(), 1);
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 2);
    assert!(table.inner.sealed_tokens("cm").await.unwrap().is_none());
    table.failing_saves.store(0, Ordering::SeqCst);
    let now_shared = third_keeper.tokens().await.unwrap();
    assert!(
        table.inner.sealed_tokens("cm").await.unwrap().is_some(),
        "saved at the next use"
    );
    // Every container now uses the tokens the third renewed, with no further refresh.
    let fourth = cm_container(&running, &table, &secret).await;
    assert_eq!(fourth.clients().await.unwrap().len(), 1);
    assert_eq!(counter(&running.cm_url, "cm POST /oauth/token").await, 2);
    assert_ne!(now_shared.refresh_token, secret.field("refresh_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_an_admin_puts_in_the_secret_win_over_the_shared_ones() {
    let running = start(cm_scenario()).await;
    let (table, secret) = (Arc::new(Table::default()), cm_secret());
    let first = cm_container(&running, &table, &secret).await;
    expire_cm_tokens(&running).await;
    assert_eq!(first.clients().await.unwrap().len(), 1);
    let running_keeper = keeper(&table, &secret, Credential::CampaignMonitor);
    let shared = running_keeper.tokens().await.unwrap();
    assert_ne!(shared.refresh_token, "refresh-1");
    // The admin authorises again: the secret holds another chain's tokens.
    secret
        .write(&[("access_token", "admin-access"), ("refresh_token", "admin-refresh")])
        .await
        .unwrap();
    let fresh = keeper(&table, &secret, Credential::CampaignMonitor);
    assert_eq!(fresh.tokens().await.unwrap().refresh_token, "admin-refresh");
    // A running container reads the secret again once CM refuses its token outright.
    let taken_up = campaign_monitor::TokenVault::load(&*running_keeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        taken_up.refresh_token, "admin-refresh",
        "a running container sees it too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_salesforce_containers_sign_in_once_with_rotation_on() {
    let mut scenario = generate(&Shape {
        recipients: 50,
        activities: 10,
        ..Shape::default()
    });
    scenario.faults.sf.rotate_refresh_tokens = true;
    let running = start(scenario).await;
    let (table, secret) = (
        Arc::new(Table::default()),
        Secret::new(json!({"flow": "refresh_token", "refresh_token": "sandbox-refresh-token"})),
    );
    let containers: Vec<Arc<SfClient>> = (0..5)
        .map(|_| {
            Arc::new(
                SfClient::new(SfConfig::new(Auth::RefreshToken {
                    token_host: running.sf_url.clone(),
                    client_id: "sandbox-consumer-key".into(),
                    client_secret: None,
                    refresh_token: "sandbox-refresh-token".into(),
                }))
                .unwrap()
                .with_session_vault(keeper(&table, &secret, Credential::Salesforce)),
            )
        })
        .collect();
    let queries = containers.iter().map(|sf| {
        let sf = sf.clone();
        tokio::spawn(async move { sf.query_all("SELECT Id FROM Campaign").await })
    });
    for outcome in futures::future::join_all(queries).await {
        outcome.unwrap().unwrap();
    }
    let signed_in: u64 = containers.iter().map(|sf| sf.calls().auth).sum();
    assert_eq!(signed_in, 1, "one sign-in across the five; the others used its session");
    assert_eq!(secret.writes(), 0);
    assert_eq!(table.inner.sealed_tokens("sf").await.unwrap().unwrap().version, 1);
}
