//! The OAuth tokens every container of a deployment shares: CM rotates its refresh token with
//! every refresh (and Salesforce does with refresh-token rotation on), so a refresh spends the
//! token every other container holds too.
//!
//! [`TokenKeeper`] keeps the current tokens in one sealed, versioned item of the state table
//! ([`state::TokenStore`]), renews them under a lease (one refresh per credential at a time,
//! across containers; the others wait and take up its tokens) and writes the secret only when
//! the table cannot be written, so secret versions stay rare (Secrets Manager asks for at most
//! one `PutSecretValue` per 10 minutes, sustained). The secret is the seed: the table's tokens
//! are used while they descend from the secret's refresh token; once an admin puts new tokens
//! in the secret, those win.
//!
//! A save that fails is retried with backoff; if the table stays unwritable the new tokens go to
//! the secret instead (so they never live in one container alone), and if that fails too the
//! container keeps trying at each later use, alarmed ([`ALARM_TOKEN_SAVE_FAILED`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use campaign_monitor::{CmError, OAuthTokens};
use chrono::Utc;
use salesforce::{SfError, SharedSession};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use state::sealed::Sealer;
use state::{LeaseStore, Scope, SealedTokens, TokenStore};

/// Logged (as the `alarm` field) when renewed tokens could be saved neither to the state table
/// nor to the secret: they live in one container until a later save succeeds.
pub const ALARM_TOKEN_SAVE_FAILED: &str = "TokenSaveFailed";

/// The purpose the tokens are sealed for (a cookie sealed with the same key never opens as
/// tokens).
const SEAL_PURPOSE: &str = "shared-oauth-tokens";

/// Whose tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// Campaign Monitor's OAuth tokens (`{"access_token", "refresh_token"}` in its secret).
    CampaignMonitor,
    /// Salesforce's refresh-token flow (`{"flow": "refresh_token", "refresh_token", ...}`).
    Salesforce,
}

impl Credential {
    /// The item's and the lease's name.
    fn name(self) -> &'static str {
        match self {
            Credential::CampaignMonitor => "cm",
            Credential::Salesforce => "sf",
        }
    }
}

/// The tokens as shared.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The access token, once a refresh made one (a seed from Salesforce's secret has none).
    pub access_token: Option<String>,
    /// The refresh token to spend next.
    pub refresh_token: String,
    /// Salesforce's instance URL for the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(***)")
    }
}

/// Why the shared tokens could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The secret cannot be read.
    #[error("secret: {0}")]
    Secret(String),
    /// The secret holds no tokens to start from: an admin must authorise.
    #[error("{0}")]
    NoTokens(String),
    /// The state table could not be read.
    #[error("state table: {0}")]
    Store(String),
    /// Another container kept renewing past the wait.
    #[error("another container is still renewing the tokens; try again")]
    Busy,
}

impl KeeperError {
    fn retryable(&self) -> bool {
        !matches!(self, KeeperError::NoTokens(_))
    }
}

/// The secret a credential was configured with: read whole, token fields written back.
pub trait SecretSlot: Send + Sync {
    /// The secret's JSON.
    fn read(&self) -> impl Future<Output = Result<Value, String>> + Send;
    /// Sets `fields`, keeping the rest.
    fn write(&self, fields: &[(&str, &str)]) -> impl Future<Output = Result<(), String>> + Send;
}

/// A Secrets Manager secret.
#[derive(Debug, Clone)]
pub struct SecretsManagerSlot {
    client: aws_sdk_secretsmanager::Client,
    id: String,
}

impl SecretsManagerSlot {
    /// The secret `id`.
    pub fn new(client: aws_sdk_secretsmanager::Client, id: &str) -> SecretsManagerSlot {
        SecretsManagerSlot {
            client,
            id: id.to_owned(),
        }
    }
}

impl SecretSlot for SecretsManagerSlot {
    async fn read(&self) -> Result<Value, String> {
        let text = super::secret(&self.client, &self.id).await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|_| format!("secret {} is not a JSON object", self.id))
    }

    async fn write(&self, fields: &[(&str, &str)]) -> Result<(), String> {
        let mut doc = self.read().await?;
        let Some(object) = doc.as_object_mut() else {
            return Err(format!("secret {} is not a JSON object", self.id));
        };
        for (name, value) in fields {
            object.insert((*name).to_owned(), Value::String((*value).to_owned()));
        }
        self.client
            .put_secret_value()
            .secret_id(&self.id)
            .secret_string(doc.to_string())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "secret {}: {}",
                    self.id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }
}

/// How long the keeper waits and retries.
#[derive(Debug, Clone)]
pub struct KeeperTiming {
    /// How long a renewal holds the lease (past it, another container may renew).
    pub lease: Duration,
    /// How long a container waits for another's renewal before failing (retryable).
    pub wait: Duration,
    /// How often a waiting container looks again.
    pub poll: Duration,
    /// Attempts at saving to the table, with backoff from `save_backoff`.
    pub save_attempts: usize,
    /// The first wait between save attempts (doubling).
    pub save_backoff: Duration,
}

impl Default for KeeperTiming {
    fn default() -> Self {
        KeeperTiming {
            lease: Duration::from_secs(90),
            wait: Duration::from_secs(100),
            poll: Duration::from_millis(500),
            save_attempts: 6,
            save_backoff: Duration::from_millis(250),
        }
    }
}

/// The shared tokens of one credential, as one container sees them.
pub struct TokenKeeper<S, V> {
    store: Arc<S>,
    secret: V,
    credential: Credential,
    sealer: Sealer,
    owner: String,
    timing: KeeperTiming,
    /// The secret's tokens, read once and again when the table's do not descend from them.
    seed: tokio::sync::Mutex<Option<Tokens>>,
    /// Renewed tokens no save has kept yet (the table and the secret both failed).
    unsaved: Mutex<Option<SealedTokens>>,
}

impl<S, V> std::fmt::Debug for TokenKeeper<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeeper({})", self.credential.name())
    }
}

/// The shared tokens read, with what a save over them needs.
struct Current {
    tokens: Tokens,
    /// The stored item's version (0: none, or the secret won).
    version: u64,
    /// The fingerprint of the seed the tokens descend from.
    seed: String,
}

/// A refresh token's fingerprint: says which secret a chain of refreshes started from, without
/// the token.
fn fingerprint(refresh_token: &str) -> String {
    hex::encode(&Sha256::digest(refresh_token.as_bytes())[..16])
}

/// Whether the stored tokens descend from the secret's `seed` (the chain of refreshes started
/// from it), or are its own.
fn descends(item: &SealedTokens, tokens: &Tokens, seed: &Tokens) -> bool {
    let origin = fingerprint(&seed.refresh_token);
    item.seed == origin || fingerprint(&tokens.refresh_token) == origin
}

impl<S: TokenStore + LeaseStore, V: SecretSlot> TokenKeeper<S, V> {
    /// A keeper of `credential`'s tokens, sealed with `sealer` (the deployment's token keys).
    pub fn new(store: Arc<S>, secret: V, credential: Credential, sealer: Sealer) -> TokenKeeper<S, V> {
        TokenKeeper {
            store,
            secret,
            credential,
            sealer,
            owner: uuid::Uuid::new_v4().to_string(),
            timing: KeeperTiming::default(),
            seed: tokio::sync::Mutex::new(None),
            unsaved: Mutex::new(None),
        }
    }

    /// With other timings (tests).
    pub fn with_timing(mut self, timing: KeeperTiming) -> TokenKeeper<S, V> {
        self.timing = timing;
        self
    }

    /// The tokens shared now.
    pub async fn tokens(&self) -> Result<Tokens, KeeperError> {
        Ok(self.current(false).await?.tokens)
    }

    async fn read_seed(&self, again: bool) -> Result<Tokens, KeeperError> {
        let mut seed = self.seed.lock().await;
        if let (Some(tokens), false) = (&*seed, again) {
            return Ok(tokens.clone());
        }
        let doc = self.secret.read().await.map_err(KeeperError::Secret)?;
        let field = |name: &str| doc[name].as_str().filter(|v| !v.is_empty()).map(str::to_owned);
        let Some(refresh_token) = field("refresh_token") else {
            return Err(KeeperError::NoTokens("the secret holds no refresh_token".into()));
        };
        let tokens = Tokens {
            access_token: match self.credential {
                Credential::CampaignMonitor => field("access_token"),
                Credential::Salesforce => None,
            },
            refresh_token,
            instance_url: None,
        };
        *seed = Some(tokens.clone());
        Ok(tokens)
    }

    /// The table's tokens while they descend from the secret's (or are the secret's own);
    /// else the secret's. `fresh_seed`: read the secret again first.
    async fn current(&self, fresh_seed: bool) -> Result<Current, KeeperError> {
        self.save_unsaved().await;
        let stored = self
            .store
            .sealed_tokens(self.credential.name())
            .await
            .map_err(|e| KeeperError::Store(e.to_string()))?;
        let opened = stored.as_ref().and_then(|item| {
            let tokens: Tokens = self.sealer.open(SEAL_PURPOSE, &item.sealed)?;
            Some((item, tokens))
        });
        if stored.is_some() && opened.is_none() {
            tracing::warn!(
                credential = self.credential.name(),
                "the shared tokens do not open with the deployment's keys; the secret's are used"
            );
        }
        let mut seed = self.read_seed(fresh_seed).await?;
        // Before the secret wins over the table, it is read again: it may have changed since
        // this container read it.
        if !fresh_seed
            && opened
                .as_ref()
                .is_some_and(|(item, tokens)| !descends(item, tokens, &seed))
        {
            seed = self.read_seed(true).await?;
        }
        Ok(match opened {
            Some((item, tokens)) if descends(item, &tokens, &seed) => Current {
                tokens,
                version: item.version,
                seed: item.seed.clone(),
            },
            _ => Current {
                seed: fingerprint(&seed.refresh_token),
                version: stored.as_ref().map_or(0, |item| item.version),
                tokens: seed,
            },
        })
    }

    /// Tokens to use after `stale` was refused (`None`: any shared access token will do): the
    /// shared ones when they are others, else one `refresh` (of the shared refresh token) under
    /// the credential's lease, its result saved before it is returned.
    pub async fn renew<E, F, Fut>(&self, stale: Option<&str>, refresh: F) -> Result<Tokens, RenewError<E>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Tokens, E>>,
    {
        let usable = |tokens: &Tokens| tokens.access_token.as_deref().is_some_and(|a| Some(a) != stale);
        let scope = Scope::Tokens(self.credential.name()).key();
        let started = tokio::time::Instant::now();
        let lease = loop {
            let current = self.current(false).await?;
            if usable(&current.tokens) {
                return Ok(current.tokens);
            }
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(self.timing.lease).unwrap_or_default();
            match self
                .store
                .acquire_lease(&scope, &self.owner, now, until)
                .await
                .map_err(|e| KeeperError::Store(e.to_string()))?
            {
                Some(lease) => break lease,
                None if started.elapsed() >= self.timing.wait => return Err(KeeperError::Busy.into()),
                None => tokio::time::sleep(self.timing.poll).await,
            }
        };
        let outcome = self.renew_holding_lease(usable, refresh).await;
        if let Err(error) = self.store.release_lease(&lease.scope, &lease.owner).await {
            tracing::warn!(error = %error, "the token lease was not released (it expires by itself)");
        }
        outcome
    }

    async fn renew_holding_lease<E, F, Fut>(
        &self,
        usable: impl Fn(&Tokens) -> bool,
        refresh: F,
    ) -> Result<Tokens, RenewError<E>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Tokens, E>>,
    {
        // Renewed just before the lease was ours, or an admin authorised again meanwhile.
        let current = self.current(true).await?;
        if usable(&current.tokens) {
            return Ok(current.tokens);
        }
        let renewed = refresh(current.tokens.refresh_token.clone())
            .await
            .map_err(RenewError::Refresh)?;
        self.save(renewed.clone(), &current).await;
        Ok(renewed)
    }

    /// Keeps renewed tokens for every container: the table (retried), else the secret, else
    /// this container keeps trying at each later use.
    async fn save(&self, tokens: Tokens, over: &Current) {
        let Ok(sealed) = self.sealer.seal(SEAL_PURPOSE, &tokens) else {
            tracing::error!(
                alarm = ALARM_TOKEN_SAVE_FAILED,
                credential = self.credential.name(),
                "the renewed tokens could not be sealed"
            );
            return;
        };
        let item = SealedTokens {
            credential: self.credential.name().to_owned(),
            version: over.version + 1,
            sealed,
            seed: over.seed.clone(),
            saved_at: Utc::now(),
        };
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.timing.save_backoff)
            .with_max_delay(self.timing.save_backoff * 16)
            .with_max_times(self.timing.save_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        let last = loop {
            match self.store.save_sealed_tokens(&item).await {
                Ok(true) => {
                    tracing::info!(
                        credential = self.credential.name(),
                        version = item.version,
                        "renewed tokens shared"
                    );
                    return;
                }
                Ok(false) => {
                    // Another container saved over the same version: its lease outlived ours.
                    // Theirs are newer; ours still work for this container until they expire.
                    tracing::warn!(
                        credential = self.credential.name(),
                        "another container saved renewed tokens first; theirs are kept"
                    );
                    return;
                }
                Err(error) => {
                    let Some(wait) = delays.next() else {
                        break error.to_string();
                    };
                    tracing::warn!(credential = self.credential.name(), error = %error, wait_ms = wait.as_millis() as u64, "saving the renewed tokens failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        // The secret instead: a later read sees the secret's tokens are not the table's seed,
        // and takes them.
        match self.write_secret(&tokens).await {
            Ok(()) => tracing::error!(
                alarm = ALARM_TOKEN_SAVE_FAILED,
                credential = self.credential.name(),
                error = %last,
                "the state table kept refusing the renewed tokens; they were written to the secret instead"
            ),
            Err(secret_error) => {
                tracing::error!(
                    alarm = ALARM_TOKEN_SAVE_FAILED,
                    credential = self.credential.name(),
                    error = %last,
                    secret_error = %secret_error,
                    "the renewed tokens could be saved neither to the state table nor to the secret; this container keeps trying"
                );
                if let Ok(mut unsaved) = self.unsaved.lock() {
                    *unsaved = Some(item);
                }
            }
        }
    }

    async fn write_secret(&self, tokens: &Tokens) -> Result<(), String> {
        let mut fields = vec![("refresh_token", tokens.refresh_token.as_str())];
        if let (Credential::CampaignMonitor, Some(access)) = (self.credential, &tokens.access_token) {
            fields.push(("access_token", access.as_str()));
        }
        self.secret.write(&fields).await?;
        // What this container now takes for the seed.
        *self.seed.lock().await = None;
        Ok(())
    }

    /// A save that failed earlier, tried once more.
    async fn save_unsaved(&self) {
        let Some(item) = self.unsaved.lock().ok().and_then(|u| u.clone()) else {
            return;
        };
        match self.store.save_sealed_tokens(&item).await {
            Ok(_) => {
                tracing::info!(credential = self.credential.name(), "renewed tokens saved late");
                if let Ok(mut unsaved) = self.unsaved.lock() {
                    *unsaved = None;
                }
            }
            Err(error) => tracing::error!(
                alarm = ALARM_TOKEN_SAVE_FAILED,
                credential = self.credential.name(),
                error = %error,
                "renewed tokens still unsaved"
            ),
        }
    }
}

/// Why a renewal failed: the keeper's part, or the refresh itself.
#[derive(Debug)]
pub enum RenewError<E> {
    /// Reading, waiting or saving.
    Keeper(KeeperError),
    /// The refresh the client ran.
    Refresh(E),
}

impl<E> From<KeeperError> for RenewError<E> {
    fn from(error: KeeperError) -> Self {
        RenewError::Keeper(error)
    }
}

impl<S: TokenStore + LeaseStore + 'static, V: SecretSlot + 'static> campaign_monitor::TokenVault for TokenKeeper<S, V> {
    /// Asked when CM refused a token outright (codes 120, 122): the secret is read again, as an
    /// admin may have authorised anew.
    fn load(&self) -> campaign_monitor::VaultFuture<'_, Option<OAuthTokens>> {
        Box::pin(async move {
            let tokens = self.current(true).await.map_err(cm_error)?.tokens;
            Ok(tokens.access_token.map(|access_token| OAuthTokens {
                access_token,
                refresh_token: tokens.refresh_token,
                expires_in: 0,
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        stale: &'a str,
        refresh: campaign_monitor::Refresh<'a>,
    ) -> campaign_monitor::VaultFuture<'a, OAuthTokens> {
        Box::pin(async move {
            let renewed = TokenKeeper::renew(self, Some(stale), |refresh_token| async move {
                let tokens = refresh(refresh_token).await?;
                Ok::<_, CmError>(Tokens {
                    access_token: Some(tokens.access_token),
                    refresh_token: tokens.refresh_token,
                    instance_url: None,
                })
            })
            .await;
            match renewed {
                Ok(Tokens {
                    access_token: Some(access_token),
                    refresh_token,
                    ..
                }) => Ok(OAuthTokens {
                    access_token,
                    refresh_token,
                    expires_in: 0,
                }),
                Ok(_) => Err(cm_error(KeeperError::NoTokens(
                    "the shared tokens hold no access token".into(),
                ))),
                Err(RenewError::Keeper(error)) => Err(cm_error(error)),
                Err(RenewError::Refresh(error)) => Err(error),
            }
        })
    }
}

impl<S: TokenStore + LeaseStore + 'static, V: SecretSlot + 'static> salesforce::SessionVault for TokenKeeper<S, V> {
    fn renew<'a>(
        &'a self,
        stale: Option<&'a str>,
        renewal: salesforce::Renewal<'a>,
    ) -> salesforce::VaultFuture<'a, SharedSession> {
        Box::pin(async move {
            let renewed = TokenKeeper::renew(self, stale, |refresh_token| async move {
                let session = renewal(refresh_token).await?;
                Ok::<_, SfError>(Tokens {
                    access_token: Some(session.access_token),
                    refresh_token: session.refresh_token,
                    instance_url: Some(session.instance_url),
                })
            })
            .await;
            match renewed {
                Ok(Tokens {
                    access_token: Some(access_token),
                    refresh_token,
                    instance_url: Some(instance_url),
                }) => Ok(SharedSession {
                    access_token,
                    instance_url,
                    refresh_token,
                }),
                Ok(_) => Err(sf_error(KeeperError::NoTokens(
                    "the shared session has no access token".into(),
                ))),
                Err(RenewError::Keeper(error)) => Err(sf_error(error)),
                Err(RenewError::Refresh(error)) => Err(error),
            }
        })
    }
}

fn cm_error(error: KeeperError) -> CmError {
    CmError::Vault {
        retryable: error.retryable(),
        message: error.to_string(),
    }
}

fn sf_error(error: KeeperError) -> SfError {
    SfError::Vault {
        retryable: error.retryable(),
        message: error.to_string(),
    }
}
