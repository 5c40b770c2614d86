//! Changing the settings, as the CLI (`settings apply|set|diff`) and the console do it: one
//! implementation of "prepare, compare, store with the version read", so a change made meanwhile
//! is a conflict for either and overwrites nothing.

use chrono::Utc;
use mapping::settings::document::{Change, diff};
use mapping::{Settings, SettingsError};
use state::{AuditStore, SettingsStore, VersionedSettings};

use super::audit;

use crate::core::EngineError;

/// A submitted settings document prepared against what is stored: what would change.
#[derive(Debug, Clone)]
pub struct SettingsChange {
    /// The document as it would be stored (system-owned values filled in, validated).
    pub prepared: Settings,
    /// The version it was compared with (`None`: nothing stored yet).
    pub base_version: Option<u64>,
    /// Every value that differs, in path order.
    pub changes: Vec<Change>,
}

/// The settings operations of an administrator.
#[derive(Debug)]
pub struct SettingsAdmin<'s, S> {
    store: &'s S,
}

impl<'s, S: SettingsStore + AuditStore> SettingsAdmin<'s, S> {
    /// The settings of the deployment whose state is `store`.
    pub fn new(store: &'s S) -> Self {
        SettingsAdmin { store }
    }

    /// The stored settings and their version.
    pub async fn current(&self) -> Result<Option<VersionedSettings>, EngineError> {
        Ok(self.store.load_settings().await?)
    }

    /// What storing `submitted` would change, against `base` (the stored settings read before).
    /// Each problem names its field ([`SettingsError::field_errors`]); nothing is stored.
    pub fn prepare(
        &self,
        submitted: Settings,
        base: Option<&VersionedSettings>,
    ) -> Result<SettingsChange, SettingsError> {
        let prepared = submitted.prepare_update(base.map(|b| &b.settings), Utc::now())?;
        let before = base
            .and_then(|b| serde_json::to_value(&b.settings).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let after = serde_json::to_value(&prepared).unwrap_or_default();
        Ok(SettingsChange {
            changes: diff(&before, &after),
            prepared,
            base_version: base.map(|b| b.version),
        })
    }

    /// Stores a prepared change if the settings are still at the version it was compared with:
    /// the new version, or [`state::StoreError::VersionConflict`] (nothing written). `actor`
    /// (a Salesforce user id, or [`audit::CLI_ACTOR`]) goes into the audit with the versions.
    pub async fn store(&self, change: &SettingsChange, actor: &str) -> Result<u64, EngineError> {
        let version = self
            .store
            .save_settings(&change.prepared, change.base_version, Utc::now())
            .await?;
        let action = match change.base_version {
            None => "first settings stored".to_owned(),
            Some(_) => {
                let paths: Vec<&str> = change.changes.iter().map(|c| c.path.as_str()).collect();
                audit::settings_action(&paths)
            }
        };
        audit::record(
            self.store,
            Some(&change.prepared),
            actor,
            action,
            Some((change.base_version, version)),
        )
        .await;
        Ok(version)
    }
}
