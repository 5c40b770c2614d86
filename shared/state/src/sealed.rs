//! Values sealed with the deployment's keys (AES-256-GCM, a random nonce each): the console's
//! cookies and the OAuth tokens the functions share through the state table. Each value is
//! bound to a purpose, so one kind never passes for another; during a key rotation the previous
//! key still opens what it sealed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Seals values (cookie contents, shared tokens) with the deployment's current key and opens them with any of its
/// keys: during a rotation the previous key still opens the cookies it sealed (each is sealed
/// again with the current key on the next request), so no one is signed out mid-task.
pub struct Sealer {
    keys: Vec<LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
#[error("the value could not be sealed")]
pub struct SealError;

/// A fresh random 32-byte key (a local console's session key, for its own lifetime).
pub fn random_key() -> Result<[u8; 32], SealError> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| SealError)?;
    Ok(key)
}

impl Sealer {
    /// A sealer with 32-byte keys, the current one first (it seals; every one opens).
    pub fn new(keys: &[[u8; 32]]) -> Result<Sealer, SealError> {
        if keys.is_empty() {
            return Err(SealError);
        }
        let keys = keys
            .iter()
            .map(|key| {
                Ok(LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError)?,
                ))
            })
            .collect::<Result<Vec<_>, SealError>>()?;
        Ok(Sealer {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// `purpose` is bound into the seal: a sign-in cookie cannot pass for a session, nor a cookie
    /// for shared tokens.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> Result<String, SealError> {
        let mut data = serde_json::to_vec(value).map_err(|_| SealError)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError)?;
        let current = self.keys.first().ok_or(SealError)?;
        current
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The value, if it was sealed by one of these keys for `purpose` and is unchanged.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut data = data.to_vec();
            let plain = key
                .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
                .ok()?;
            serde_json::from_slice(plain).ok()
        })
    }
}
