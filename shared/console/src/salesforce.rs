//! Signing in with Salesforce: the OAuth 2.0 web server flow with PKCE, the identity URL (who
//! signed in, in which org, holding which custom permissions) and token revocation. Every call
//! uses the signed-in admin's own token, so Salesforce's sharing applies to what they see.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::ConsoleConfig;

/// Why Salesforce did not let someone in, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Salesforce refused (an OAuth error, a revoked token).
    #[error("Salesforce refused: {0}")]
    Refused(String),
    /// Salesforce could not be reached or answered what it never answers.
    #[error("Salesforce could not be asked: {0}")]
    Unavailable(String),
}

/// What the token endpoint returns for an authorization code.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The admin's access token.
    pub access_token: String,
    /// Their identity URL.
    pub id: String,
    /// Their org's instance URL.
    pub instance_url: String,
}

/// Who signed in (the identity URL's answer).
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    /// User id.
    pub user_id: String,
    /// Org id.
    pub organization_id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Custom permissions granted to the connected app, and whether this user holds each
    /// (present with the `custom_permissions` scope).
    #[serde(default)]
    pub custom_permissions: BTreeMap<String, bool>,
}

impl Identity {
    /// Whether the user holds `permission`.
    pub fn holds(&self, permission: &str) -> bool {
        self.custom_permissions.get(permission).copied().unwrap_or(false)
    }
}

/// The OAuth client of the console's connected app.
#[derive(Debug, Clone)]
pub struct SalesforceAuth {
    http: reqwest::Client,
}

/// The scopes asked for: the identity URL, the API (the admin's own reads), and the custom
/// permissions in the identity answer.
pub const SCOPES: &str = "id api custom_permissions";

impl SalesforceAuth {
    /// A client with a bounded timeout.
    pub fn new() -> Result<SalesforceAuth, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(SalesforceAuth { http })
    }

    /// Where the browser goes to sign in.
    pub fn authorize_url(config: &ConsoleConfig, state: &str, challenge: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &config.callback_url())
            .append_pair("scope", SCOPES)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}/services/oauth2/authorize?{query}", login(config))
    }

    /// The authorization code exchanged for the admin's tokens, proving the verifier.
    pub async fn exchange(&self, config: &ConsoleConfig, code: &str, verifier: &str) -> Result<Tokens, AuthError> {
        let callback = config.callback_url();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", config.client_id.as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = &config.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let response = self
            .http
            .post(format!("{}/services/oauth2/token", login(config)))
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(AuthError::Refused(oauth_error(&body)));
        }
        serde_json::from_value(body).map_err(|e| AuthError::Unavailable(format!("token answer: {e}")))
    }

    /// Who holds `token`, from their identity URL (only on Salesforce's login hosts).
    pub async fn identity(
        &self,
        config: &ConsoleConfig,
        identity_url: &str,
        token: &str,
    ) -> Result<Identity, AuthError> {
        if !identity_host_allowed(config, identity_url) {
            return Err(AuthError::Refused(
                "the identity URL is not on a Salesforce login host".into(),
            ));
        }
        let response = self
            .http
            .get(identity_url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(AuthError::Refused("the session ended in Salesforce".into()));
        }
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!("identity URL answered {status}")));
        }
        response
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))
    }

    /// Revokes the admin's token (sign-out): it stops working in Salesforce too.
    pub async fn revoke(&self, config: &ConsoleConfig, token: &str) -> Result<(), AuthError> {
        let response = self
            .http
            .post(format!("{}/services/oauth2/revoke", login(config)))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(AuthError::Refused(format!("revocation answered {}", response.status())))
        }
    }
}

fn login(config: &ConsoleConfig) -> &str {
    config.sf_login_url.trim_end_matches('/')
}

/// Identity URLs are on the login host the console uses, or Salesforce's own login hosts
/// (a My Domain sign-in answers with `login.salesforce.com`): never anywhere else.
fn identity_host_allowed(config: &ConsoleConfig, url: &str) -> bool {
    let origin = |u: &str| {
        let rest = u.split_once("://").map(|(scheme, rest)| (scheme.to_owned(), rest))?;
        let host = rest.1.split('/').next()?.to_owned();
        Some((rest.0, host))
    };
    let Some(target) = origin(url) else { return false };
    let own = origin(login(config));
    own.as_ref() == Some(&target)
        || target.0 == "https" && ["login.salesforce.com", "test.salesforce.com"].contains(&target.1.as_str())
}

/// Instance URLs are on the login host the console uses (a sandbox, a My Domain) or an https
/// Salesforce domain: a token answer naming anything else is refused, so the admin's token is
/// never sent elsewhere.
pub fn instance_host_allowed(config: &ConsoleConfig, url: &str) -> bool {
    salesforce::instance_url_allowed(url, login(config))
}

/// A Salesforce client that calls as the signed-in admin (their token, their sharing).
pub fn as_user(session: &crate::session::Session) -> Result<salesforce::SfClient, salesforce::SfError> {
    let mut config = salesforce::SfConfig::new(salesforce::Auth::UserToken {
        instance_url: session.instance_url.clone(),
        access_token: session.access_token.clone(),
    });
    // A page waits for these reads: fail fast rather than retry for minutes.
    config.retry.max_attempts = 2;
    config.request_timeout = std::time::Duration::from_secs(20);
    salesforce::SfClient::new(config)
}

fn oauth_error(body: &serde_json::Value) -> String {
    let text = |k: &str| {
        body.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    format!("{} ({})", text("error_description"), text("error"))
}
