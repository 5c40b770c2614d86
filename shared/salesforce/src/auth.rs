//! Signing in: the three OAuth flows ([`Auth`]), the cached session, and its renewal on
//! `INVALID_SESSION_ID`.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::*;

/// A future a [`SessionVault`] returns.
pub type VaultFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SfError>> + Send + 'a>>;

/// A sign-in a [`SessionVault`] runs when it must: spends the refresh token it is given.
pub type Renewal<'a> = Box<dyn FnOnce(String) -> VaultFuture<'a, SharedSession> + Send + 'a>;

/// A session as the processes of a deployment share it (refresh-token flow).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSession {
    /// The access token.
    pub access_token: String,
    /// The org's instance URL the token was issued for.
    pub instance_url: String,
    /// The refresh token to spend next (rotated by the sign-in, or the one it used).
    pub refresh_token: String,
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSession({}, tokens ***)", self.instance_url)
    }
}

/// Where the refresh-token flow's session is shared between processes (every container of a
/// deployment): with refresh-token rotation each sign-in spends the refresh token, so the
/// processes take turns and use the session the last sign-in made.
pub trait SessionVault: Send + Sync {
    /// A session to use after Salesforce refused `stale` (an access token; `None` at the first
    /// sign-in): the shared one when it is another, else `renewal` run with the shared refresh
    /// token while no other process signs in, its session shared before it returns.
    fn renew<'a>(&'a self, stale: Option<&'a str>, renewal: Renewal<'a>) -> VaultFuture<'a, SharedSession>;
}

/// How the client authenticates. Deserializes from the secret the functions read:
/// `{"flow": "jwt_bearer", "token_host": ..., "client_id": ..., "username": ...,
/// "private_key_pem": ...}` (`audience` optional), `{"flow": "client_credentials", ...}` or
/// `{"flow": "refresh_token", ...}`.
#[derive(Clone, serde::Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// OAuth 2.0 JWT bearer flow.
    JwtBearer {
        /// Where to post the assertion: the My Domain host (or login/test host).
        token_host: String,
        /// The connected app's consumer key (`iss`).
        client_id: String,
        /// The integration user (`sub`).
        username: String,
        /// PEM private key whose certificate the connected app holds.
        private_key_pem: String,
        /// `aud`: `https://login.salesforce.com` (production) or `https://test.salesforce.com`
        /// (sandboxes), whatever host the token is requested from. Empty: derived from
        /// `token_host` ([`Auth::audience_for`]).
        #[serde(default)]
        audience: String,
    },
    /// Client credentials flow (My Domain host only).
    ClientCredentials {
        /// My Domain host.
        token_host: String,
        /// Consumer key.
        client_id: String,
        /// Consumer secret.
        client_secret: String,
    },
    /// Refresh token flow.
    RefreshToken {
        /// Login or My Domain host.
        token_host: String,
        /// Consumer key.
        client_id: String,
        /// Consumer secret, if the app requires it.
        #[serde(default)]
        client_secret: Option<String>,
        /// The refresh token.
        refresh_token: String,
    },
    /// A signed-in person's own access token (the admin console): calls run as them, so
    /// Salesforce's sharing applies and records name them. Never renewed (their session ends,
    /// they sign in again); never read from a secret.
    #[serde(skip_deserializing)]
    UserToken {
        /// Their org's instance URL, from their token response.
        instance_url: String,
        /// Their access token.
        access_token: String,
    },
}

impl Auth {
    /// The audience for a host: sandboxes use `test.salesforce.com`, everything else
    /// `login.salesforce.com` (as the Salesforce CLI decides).
    pub fn audience_for(host: &str) -> String {
        if host.contains("test.salesforce.com") || host.contains(".sandbox.my.salesforce.com") {
            "https://test.salesforce.com".to_owned()
        } else {
            "https://login.salesforce.com".to_owned()
        }
    }

    /// The host tokens are asked from (the org's My Domain, or the sandbox).
    pub fn token_host(&self) -> &str {
        match self {
            Auth::JwtBearer { token_host, .. }
            | Auth::ClientCredentials { token_host, .. }
            | Auth::RefreshToken { token_host, .. } => token_host,
            Auth::UserToken { instance_url, .. } => instance_url,
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flow = match self {
            Auth::JwtBearer { .. } => "JwtBearer",
            Auth::ClientCredentials { .. } => "ClientCredentials",
            Auth::RefreshToken { .. } => "RefreshToken",
            Auth::UserToken { .. } => "UserToken",
        };
        write!(f, "Auth::{flow}({}, secrets ***)", self.token_host())
    }
}

impl Auth {
    /// What makes this configuration unusable before any call: the client credentials flow is
    /// answered only on the org's My Domain ("OAuth 2.0 Client Credentials Flow for
    /// Server-to-Server Integration": the token request goes to the My Domain URL), so the
    /// generic login hosts are refused here, naming the fix, instead of failing every sign-in.
    pub fn check(&self) -> Result<(), String> {
        if let Auth::ClientCredentials { token_host, .. } = self {
            let host = token_host
                .split_once("://")
                .map_or(token_host.as_str(), |(_, rest)| rest)
                .split(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if ["login.salesforce.com", "test.salesforce.com"].contains(&host.as_str()) {
                return Err(format!(
                    "the client_credentials flow needs the org's My Domain as token_host (https://<domain>.my.salesforce.com), not {host}"
                ));
            }
        }
        Ok(())
    }
}

/// Whether a token response's `instance_url` may receive the token: the host the token was
/// asked from (a My Domain, a sandbox, a test stand-in) or an https Salesforce domain. Anything
/// else is refused, so an access token is never sent to a host a tampered answer names.
pub fn instance_url_allowed(instance_url: &str, token_host: &str) -> bool {
    fn origin(url: &str) -> Option<(&str, &str)> {
        let (scheme, rest) = url.split_once("://")?;
        Some((scheme, rest.split(['/', '?', '#']).next().unwrap_or_default()))
    }
    let Some((scheme, host)) = origin(instance_url) else {
        return false;
    };
    if host.contains('@') || host.is_empty() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    origin(token_host).is_some_and(|(s, h)| s == scheme && h.eq_ignore_ascii_case(&host))
        || scheme == "https"
            && [".salesforce.com", ".force.com", ".salesforce.mil", ".cloudforce.com"]
                .iter()
                .any(|domain| host.ends_with(domain) && host.len() > domain.len())
}

/// The most of a token response read: a real one is well under 4 KB.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub(super) struct Session {
    pub(super) access_token: String,
    pub(super) instance_url: String,
}

impl SfClient {
    /// Signs in; `stale`: the access token Salesforce refused, if any. With the refresh-token
    /// flow and a vault, the session every process shares (one sign-in across them); without
    /// one, the refresh token in use (the configuration's, or the last one rotated).
    pub(super) async fn login(&self, stale: Option<&str>) -> Result<Session, SfError> {
        if let Auth::UserToken {
            instance_url,
            access_token,
        } = &self.config.auth
        {
            return Ok(Session {
                access_token: access_token.clone(),
                instance_url: instance_url.trim_end_matches('/').to_owned(),
            });
        }
        let used = self.current_refresh_token()?;
        if let (Some(vault), Some(_)) = (&self.vault, &used) {
            let shared = vault
                .renew(
                    stale,
                    Box::new(move |refresh_token: String| {
                        Box::pin(async move {
                            let (session, rotated) = self.request_session(Some(&refresh_token)).await?;
                            Ok(SharedSession {
                                access_token: session.access_token,
                                instance_url: session.instance_url,
                                refresh_token: rotated.unwrap_or(refresh_token),
                            })
                        })
                    }),
                )
                .await?;
            if !instance_url_allowed(&shared.instance_url, self.config.auth.token_host()) {
                return Err(SfError::Session(
                    "the shared session names an instance that is neither the sign-in host nor an https Salesforce domain".into(),
                ));
            }
            self.set_refresh_token(&shared.refresh_token)?;
            return Ok(Session {
                access_token: shared.access_token,
                instance_url: shared.instance_url.trim_end_matches('/').to_owned(),
            });
        }
        let (session, rotated) = self.request_session(used.as_deref()).await?;
        if let Some(rotated) = rotated {
            self.set_refresh_token(&rotated)?;
        }
        Ok(session)
    }

    fn current_refresh_token(&self) -> Result<Option<String>, SfError> {
        let Auth::RefreshToken { refresh_token, .. } = &self.config.auth else {
            return Ok(None);
        };
        let rotated = self.refresh_token_slot()?.clone();
        Ok(Some(rotated.unwrap_or_else(|| refresh_token.clone())))
    }

    fn set_refresh_token(&self, token: &str) -> Result<(), SfError> {
        *self.refresh_token_slot()? = Some(token.to_owned());
        Ok(())
    }

    fn refresh_token_slot(&self) -> Result<std::sync::MutexGuard<'_, Option<String>>, SfError> {
        self.refresh_token
            .lock()
            .map_err(|_| SfError::Config("refresh token lock poisoned".into()))
    }

    /// One token request; `refresh_token` is the one to send in the refresh-token flow. Also
    /// returns a new refresh token the response holds (rotation).
    async fn request_session(&self, refresh_token: Option<&str>) -> Result<(Session, Option<String>), SfError> {
        self.counts.auth.fetch_add(1, Ordering::Relaxed);
        let host = self.config.auth.token_host().trim_end_matches('/');
        let url = format!("{host}/services/oauth2/token");
        let form: Vec<(&str, String)> = match &self.config.auth {
            Auth::JwtBearer {
                client_id,
                username,
                private_key_pem,
                audience,
                ..
            } => {
                #[derive(serde::Serialize)]
                struct Claims<'a> {
                    iss: &'a str,
                    sub: &'a str,
                    aud: &'a str,
                    exp: i64,
                    iat: i64,
                }
                let now = chrono::Utc::now().timestamp();
                let derived;
                let audience = if audience.is_empty() {
                    derived = Auth::audience_for(self.config.auth.token_host());
                    derived.as_str()
                } else {
                    audience.as_str()
                };
                let claims = Claims {
                    iss: client_id,
                    sub: username,
                    aud: audience,
                    exp: now + 180,
                    iat: now,
                };
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
                    .map_err(|e| SfError::Config(format!("the JWT private key is not an RSA PEM key: {e}")))?;
                let assertion = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                    &claims,
                    &key,
                )
                .map_err(|e| SfError::Config(format!("cannot sign the JWT: {e}")))?;
                vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()),
                    ("assertion", assertion),
                ]
            }
            Auth::ClientCredentials {
                client_id,
                client_secret,
                ..
            } => vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.clone()),
            ],
            Auth::RefreshToken {
                client_id,
                client_secret,
                refresh_token: configured,
                ..
            } => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh_token.unwrap_or(configured).to_owned()),
                    ("client_id", client_id.clone()),
                ];
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.clone()));
                }
                form
            }
            Auth::UserToken { .. } => {
                return Err(SfError::Config(
                    "a person's access token is not renewed: they sign in again".into(),
                ));
            }
        };
        let response = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SfError::Network {
                attempts: 1,
                message: describe_reqwest(&e),
            })?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_TOKEN_RESPONSE_BYTES as u64)
        {
            return Err(SfError::Decode(format!(
                "token response over {MAX_TOKEN_RESPONSE_BYTES} bytes"
            )));
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SfError::Decode(format!("token response: {}", describe_reqwest(&e))))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(SfError::Decode(format!(
                    "token response over {MAX_TOKEN_RESPONSE_BYTES} bytes"
                )));
            }
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| SfError::Decode(format!("token response: {e}")))?;
        if !status.is_success() {
            return Err(SfError::Auth {
                error: body["error"].as_str().unwrap_or("unknown").to_owned(),
                description: body["error_description"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let (Some(token), Some(instance)) = (body["access_token"].as_str(), body["instance_url"].as_str()) else {
            return Err(SfError::Decode(
                "token response without access_token or instance_url".into(),
            ));
        };
        if !instance_url_allowed(instance, self.config.auth.token_host()) {
            return Err(SfError::Decode(
                "the token response names an instance that is neither the sign-in host nor an https Salesforce domain; the token is not used".into(),
            ));
        }
        tracing::info!("authenticated with Salesforce");
        let rotated = body["refresh_token"]
            .as_str()
            .filter(|new| refresh_token.is_some_and(|used| used != *new))
            .map(str::to_owned);
        Ok((
            Session {
                access_token: token.to_owned(),
                instance_url: instance.trim_end_matches('/').to_owned(),
            },
            rotated,
        ))
    }

    /// The session; `expired`: the access token a call was refused with, renewed unless
    /// another task already did (one sign-in for every task that saw the session end: with
    /// refresh-token rotation, each sign-in spends a refresh token).
    pub(super) async fn session(&self, expired: Option<&str>) -> Result<Session, SfError> {
        let mut guard = self.session.lock().await;
        let stale = match (&*guard, expired) {
            (None, _) => true,
            (Some(current), Some(expired)) => current.access_token == expired,
            (Some(_), None) => false,
        };
        if stale {
            *guard = Some(self.login(expired).await?);
        }
        guard.clone().ok_or_else(|| SfError::Session("no session".into()))
    }
}
