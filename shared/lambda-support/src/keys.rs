//! The deployment's keys secret (`KEYS_SECRET_ID`: `{"key": "<at least 32 random
//! characters>"}`, with `"previous_key"` while changing it; the template generates it). Two
//! keys are derived from each: the pepper person keys and webhook dedupe hashes are made with
//! ([`mapping::email::Peppers`]), and the key the shared OAuth tokens are sealed with
//! ([`crate::vault`]). During a change, keys made with the previous one still match and
//! tokens it sealed still open.

use mapping::email::{Peppers, keyed_digest};
use sha2::{Digest, Sha256};
use state::sealed::Sealer;

use crate::StartupError;

/// The shortest key accepted: 32 random characters are beyond guessing.
pub const MIN_KEY_CHARS: usize = 32;

/// The deployment's keys.
#[derive(Clone)]
pub struct DeploymentKeys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for DeploymentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeploymentKeys(***)")
    }
}

impl DeploymentKeys {
    /// The keys in the secret `id`'s text.
    pub fn parse(id: &str, text: &str) -> Result<DeploymentKeys, StartupError> {
        let invalid = || StartupError::Secret {
            id: id.to_owned(),
            reason: format!(
                "must be {{\"key\": \"<at least {MIN_KEY_CHARS} random characters>\"}} (and, while changing it, \"previous_key\")"
            ),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| invalid())?;
        let key = |name: &str| -> Result<Option<[u8; 32]>, StartupError> {
            match value[name].as_str() {
                Some(text) if text.chars().count() >= MIN_KEY_CHARS => Ok(Some(Sha256::digest(text.as_bytes()).into())),
                Some(_) => Err(invalid()),
                None => Ok(None),
            }
        };
        Ok(DeploymentKeys {
            current: key("key")?.ok_or_else(invalid)?,
            previous: key("previous_key")?,
        })
    }

    fn derive(master: &[u8; 32], purpose: &str) -> [u8; 32] {
        keyed_digest(Some(master), purpose, &[])
    }

    fn each(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// The peppers of person keys and dedupe hashes.
    pub fn peppers(&self) -> Peppers {
        Peppers {
            current: Self::derive(&self.current, "cm-sf-sync pepper"),
            previous: self.previous.map(|key| Self::derive(&key, "cm-sf-sync pepper")),
        }
    }

    /// The sealer of the shared OAuth tokens (seals with the current key, opens with either).
    pub fn token_sealer(&self) -> Result<Sealer, StartupError> {
        let keys: Vec<[u8; 32]> = self
            .each()
            .map(|key| Self::derive(key, "cm-sf-sync token store"))
            .collect();
        Sealer::new(&keys).map_err(|e| StartupError::Client(e.to_string()))
    }
}

/// Reads the keys secret and installs its peppers for this process.
pub async fn install(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<DeploymentKeys, StartupError> {
    let keys = DeploymentKeys::parse(secret_id, &crate::secret(client, secret_id).await?)?;
    if !mapping::email::install_peppers(keys.peppers()) {
        return Err(StartupError::Client(
            "this process already uses other peppers (two deployments' keys in one process)".into(),
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_long_and_a_previous_one_still_opens() {
        assert!(DeploymentKeys::parse("k", r#"{"key": "short"}"#).is_err());
        assert!(DeploymentKeys::parse("k", r#"{}"#).is_err());
        let old = DeploymentKeys::parse("k", &format!(r#"{{"key": "{}"}}"#, "a".repeat(40))).unwrap();
        let rotating = DeploymentKeys::parse(
            "k",
            &format!(
                r#"{{"key": "{}", "previous_key": "{}"}}"#,
                "b".repeat(40),
                "a".repeat(40)
            ),
        )
        .unwrap();
        let sealed = old.token_sealer().unwrap().seal("t", &"tokens").unwrap();
        assert_eq!(
            rotating.token_sealer().unwrap().open::<String>("t", &sealed).as_deref(),
            Some("tokens")
        );
        assert_eq!(rotating.peppers().previous, Some(old.peppers().current));
        assert_ne!(rotating.peppers().current, old.peppers().current);
        let master: [u8; 32] = Sha256::digest("a".repeat(40).as_bytes()).into();
        assert_ne!(old.peppers().current, master, "derived, not the key itself");
    }
}
