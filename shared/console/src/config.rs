//! What a deployment sets for its console.

/// The custom permission the console requires by default, shipped in `infra/salesforce`
/// (`customPermissions/CM_Sync_Console`).
pub const DEFAULT_PERMISSION: &str = "CM_Sync_Console";

/// The label of the permission set in `infra/salesforce` that grants it
/// (`permissionsets/CM_Sync_Console_Admin`): what the 403 page tells a user to ask for.
pub const DEFAULT_PERMISSION_SET: &str = "CM Sync Console Admin";

/// The console's settings.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// Where browsers reach the console (`http://127.0.0.1:8080`, `https://console.example.com`):
    /// the only `Origin` a change is accepted from, and the base of the OAuth callback.
    pub public_origin: String,
    /// Salesforce's login host (`https://login.salesforce.com`, a My Domain, or the sandbox).
    pub sf_login_url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// Its secret, when the connected app requires one for the web server flow.
    pub client_secret: Option<String>,
    /// The only org whose users may sign in (18-character id).
    pub org_id: String,
    /// The custom permission a user must hold (its API name).
    pub permission: String,
    /// The permission set that grants it (named on the 403 page).
    pub permission_set: String,
    /// The keys sealing session cookies (32 bytes each, from the deployment's secret): the
    /// first seals, every one opens (two during a rotation).
    pub session_keys: Vec<[u8; 32]>,
    /// Served on a loopback address: only a loopback `Host` is answered (no DNS rebinding) and
    /// cookies go without `Secure` (plain HTTP).
    pub loopback: bool,
}

impl ConsoleConfig {
    /// The OAuth callback URL, as registered on the connected app.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.public_origin.trim_end_matches('/'))
    }
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("public_origin", &self.public_origin)
            .field("sf_login_url", &self.sf_login_url)
            .field("org_id", &self.org_id)
            .field("permission", &self.permission)
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

/// The console's origin from the host its Function URL was called on
/// (`https://<url-id>.lambda-url.<region>.on.aws`, AWS Lambda Developer Guide, "Invoking Lambda
/// function URLs"), if `domain` is one of this region's: the template cannot hand a function its
/// own URL (the URL is made after the function), so the deployed console learns it from the first
/// request Lambda routes to it, and answers no other host after that.
pub fn function_url_origin(domain: &str, region: &str) -> Option<String> {
    let (id, rest) = domain.split_once('.')?;
    let well_formed_id =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (well_formed_id && !region.is_empty() && rest == format!("lambda-url.{region}.on.aws"))
        .then(|| format!("https://{domain}"))
}

/// The fields of the console's own secret (`ConsoleSecretName` in the template), the only
/// credentials the deployed console reads: its External Client App's consumer key and secret,
/// and the cookie keys (base64 of 32 random bytes each; the first seals, the others still open
/// cookies during a rotation).
///
/// `{"client_id": "3MVG…", "client_secret": "…", "cookie_keys": ["<new>", "<previous>"]}`
#[derive(Clone)]
pub struct ConsoleSecret {
    /// The External Client App's consumer key.
    pub client_id: String,
    /// Its consumer secret (absent when the app does not require one for the web server flow).
    pub client_secret: Option<String>,
    /// The cookie keys, the current one first.
    pub cookie_keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ConsoleSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSecret")
            .field("cookie_keys", &self.cookie_keys.len())
            .finish_non_exhaustive()
    }
}

/// What is wrong with the console's secret: names the field, never shows a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsoleSecretError {
    /// Not a JSON object.
    #[error("the console secret is not a JSON object")]
    NotAnObject,
    /// A required field is missing or blank.
    #[error("the console secret has no {0}")]
    Missing(&'static str),
    /// A field is there but unusable.
    #[error("the console secret's {field} {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The most cookie keys accepted at once: the current one and the one being retired.
pub const MAX_COOKIE_KEYS: usize = 2;

impl ConsoleSecret {
    /// Reads the secret's JSON.
    pub fn parse(text: &str) -> Result<ConsoleSecret, ConsoleSecretError> {
        use base64::Engine as _;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| ConsoleSecretError::NotAnObject)?;
        let object = value.as_object().ok_or(ConsoleSecretError::NotAnObject)?;
        let text_field = |name: &'static str| {
            object
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let client_id = text_field("client_id").ok_or(ConsoleSecretError::Missing("client_id"))?;
        let client_secret = text_field("client_secret");
        let keys = object
            .get("cookie_keys")
            .and_then(serde_json::Value::as_array)
            .filter(|keys| !keys.is_empty())
            .ok_or(ConsoleSecretError::Missing("cookie_keys"))?;
        if keys.len() > MAX_COOKIE_KEYS {
            return Err(ConsoleSecretError::Invalid {
                field: "cookie_keys",
                problem: "holds more than two keys (the current one and the one being retired)",
            });
        }
        let cookie_keys = keys
            .iter()
            .map(|key| {
                let bytes = key
                    .as_str()
                    .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k.trim()).ok())
                    .ok_or(ConsoleSecretError::Invalid {
                        field: "cookie_keys",
                        problem: "holds a value that is not base64",
                    })?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConsoleSecretError::Invalid {
                    field: "cookie_keys",
                    problem: "holds a key that is not 32 bytes (make one with `openssl rand -base64 32`)",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ConsoleSecret {
            client_id,
            client_secret,
            cookie_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_this_regions_function_url_hosts_give_an_origin() {
        let host = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws";
        assert_eq!(function_url_origin(host, "eu-west-1"), Some(format!("https://{host}")));
        for (domain, region) in [
            (host, "us-east-1"),
            ("evil.example", "eu-west-1"),
            ("x.lambda-url.eu-west-1.on.aws.evil.example", "eu-west-1"),
            ("ABC.lambda-url.eu-west-1.on.aws", "eu-west-1"),
            (".lambda-url.eu-west-1.on.aws", "eu-west-1"),
            ("a-b.lambda-url.eu-west-1.on.aws", "eu-west-1"),
        ] {
            assert_eq!(function_url_origin(domain, region), None, "{domain}");
        }
    }

    const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="; // 1..=32

    #[test]
    fn the_console_secret_gives_the_app_and_its_cookie_keys() {
        let secret = ConsoleSecret::parse(&format!(
            r#"{{"client_id":"3MVGx","client_secret":"s","cookie_keys":["{KEY}"]}}"#
        ))
        .unwrap();
        assert_eq!(secret.client_id, "3MVGx");
        assert_eq!(secret.client_secret.as_deref(), Some("s"));
        assert_eq!(
            secret.cookie_keys,
            vec![core::array::from_fn::<u8, 32, _>(|i| i as u8 + 1)]
        );
        assert!(!format!("{secret:?}").contains("3MVGx"), "no credential in logs");
    }

    #[test]
    fn a_console_secret_without_what_it_needs_names_the_field() {
        let cases = [
            ("[]".to_owned(), ConsoleSecretError::NotAnObject),
            (
                format!(r#"{{"cookie_keys":["{KEY}"]}}"#),
                ConsoleSecretError::Missing("client_id"),
            ),
            (
                r#"{"client_id":"a"}"#.to_owned(),
                ConsoleSecretError::Missing("cookie_keys"),
            ),
            (
                r#"{"client_id":"a","cookie_keys":[]}"#.to_owned(),
                ConsoleSecretError::Missing("cookie_keys"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ConsoleSecret::parse(&text).unwrap_err(), expected, "{text}");
        }
        for keys in [
            r#"["c2hvcnQ="]"#.to_owned(),
            r#"["not base64!"]"#.to_owned(),
            format!(r#"["{KEY}","{KEY}","{KEY}"]"#),
        ] {
            let error = ConsoleSecret::parse(&format!(r#"{{"client_id":"a","cookie_keys":{keys}}}"#)).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConsoleSecretError::Invalid {
                        field: "cookie_keys",
                        ..
                    }
                ),
                "{keys}: {error}"
            );
            assert!(!error.to_string().contains("c2hvcnQ"), "no value shown");
        }
    }
}
