//! An in-memory store with the same semantics as [`crate::dynamo::DynamoStore`], for fast
//! handler tests. The conformance suite proves the two agree.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use mapping::Settings;

use crate::records::{link_conflict, no_such_run};
use crate::{
    AuditEntry, AuditStore, BatchRecorded, CampaignProgress, CatalogRecord, CatalogStore, EventState, FailedRecord,
    Lease, LeaseStore, LinkOutcome, LinkRecord, LinkStore, PendingBatch, PreviewRecord, PreviewStore, RetryQueue,
    RunCheckpoint, RunCommit, RunFailure, RunRecord, RunStart, RunStatus, RunStore, SealedTokens, SettingsStore,
    StoreError, TokenStore, VersionedSettings, WatermarkStore, WebhookBacklogEntry, WebhookBatchRecord,
    WebhookEventRecord, WebhookEventStore,
};

#[derive(Debug, Default)]
struct Tables {
    settings: Option<VersionedSettings>,
    links: BTreeMap<String, LinkRecord>,
    sf_links: BTreeMap<String, String>,
    watermarks: BTreeMap<(String, String), DateTime<Utc>>,
    progress: BTreeMap<String, CampaignProgress>,
    schedule: BTreeMap<String, mapping::cadence::NextSync>,
    events: BTreeMap<String, WebhookEventRecord>,
    batches: BTreeMap<String, StoredBatch>,
    parked: BTreeMap<String, StoredBatch>,
    runs: BTreeMap<String, RunRecord>,
    checkpoints: BTreeMap<String, RunCheckpoint>,
    failures: BTreeMap<String, Vec<RunFailure>>,
    leases: BTreeMap<String, Lease>,
    retry: BTreeMap<(String, String), FailedRecord>,
    audit: Vec<AuditEntry>,
    previews: BTreeMap<String, PreviewRecord>,
    catalog: Option<CatalogRecord>,
    tokens: BTreeMap<String, SealedTokens>,
}

/// A pending webhook batch: its list and the keys of its events.
#[derive(Debug, Clone)]
struct StoredBatch {
    list_id: String,
    received_at: DateTime<Utc>,
    keys: Vec<String>,
    refused: Vec<String>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    operations: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations served so far (each trait method called: what the DynamoDB store would
    /// answer with one request or more).
    pub fn operations(&self) -> u64 {
        self.operations.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tables(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.operations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tables.lock().map_err(|_| StoreError::Backend {
            operation: "memory",
            message: "a test thread panicked while holding the store".into(),
            retryable: false,
        })
    }
}

impl SettingsStore for MemoryStore {
    async fn load_settings(&self) -> Result<Option<VersionedSettings>, StoreError> {
        Ok(self.tables()?.settings.clone())
    }

    async fn save_settings(
        &self,
        settings: &Settings,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tables = self.tables()?;
        let found = tables.settings.as_ref().map(|s| s.version);
        if found != expected_version {
            return Err(StoreError::VersionConflict {
                expected: expected_version,
                found,
            });
        }
        let version = found.unwrap_or(0) + 1;
        tables.settings = Some(VersionedSettings {
            settings: settings.clone(),
            version,
            updated_at: now,
        });
        Ok(version)
    }
}

impl LinkStore for MemoryStore {
    async fn put_link(&self, link: &LinkRecord) -> Result<LinkOutcome, StoreError> {
        let mut tables = self.tables()?;
        let by_cm = tables.links.get(&link.cm_campaign_id).map(|l| l.sf_campaign_id.clone());
        let by_sf = tables.sf_links.get(&link.sf_campaign_id).cloned();
        match (by_cm, by_sf) {
            (None, None) => {
                tables.links.insert(link.cm_campaign_id.clone(), link.clone());
                tables
                    .sf_links
                    .insert(link.sf_campaign_id.clone(), link.cm_campaign_id.clone());
                Ok(LinkOutcome::Created)
            }
            (Some(sf), Some(cm)) if sf == link.sf_campaign_id && cm == link.cm_campaign_id => {
                Ok(LinkOutcome::AlreadyLinked)
            }
            (by_cm, by_sf) => Err(link_conflict(link, by_cm, by_sf)),
        }
    }

    async fn link(&self, cm_campaign_id: &str) -> Result<Option<LinkRecord>, StoreError> {
        Ok(self.tables()?.links.get(cm_campaign_id).cloned())
    }

    async fn cm_campaign_for(&self, sf_campaign_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables()?.sf_links.get(sf_campaign_id).cloned())
    }

    async fn links(&self) -> Result<Vec<LinkRecord>, StoreError> {
        Ok(self.tables()?.links.values().cloned().collect())
    }

    async fn delete_link(&self, cm_campaign_id: &str) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if let Some(link) = tables.links.remove(cm_campaign_id) {
            tables.sf_links.remove(&link.sf_campaign_id);
        }
        Ok(())
    }
}

impl WatermarkStore for MemoryStore {
    async fn watermark(&self, scope: &str, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .tables()?
            .watermarks
            .get(&(scope.to_owned(), stream.to_owned()))
            .copied())
    }

    async fn watermarks(&self, scope: &str) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        Ok(self
            .tables()?
            .watermarks
            .iter()
            .filter(|((s, _), _)| s == scope)
            .map(|((_, stream), at)| (stream.clone(), *at))
            .collect())
    }

    async fn advance_watermark(&self, scope: &str, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tables = self.tables()?;
        let key = (scope.to_owned(), stream.to_owned());
        // Millisecond precision, as stored in DynamoDB.
        let to = crate::records::truncate_to_millis(to);
        match tables.watermarks.get(&key) {
            Some(current) if *current >= to => Ok(false),
            _ => {
                tables.watermarks.insert(key, to);
                Ok(true)
            }
        }
    }

    async fn campaign_progress(&self, cm_campaign_id: &str) -> Result<CampaignProgress, StoreError> {
        Ok(self.tables()?.progress.get(cm_campaign_id).cloned().unwrap_or_default())
    }

    async fn sync_schedule(&self) -> Result<BTreeMap<String, mapping::cadence::NextSync>, StoreError> {
        Ok(self.tables()?.schedule.clone())
    }

    async fn reset_watermarks(&self, scope: &str) -> Result<usize, StoreError> {
        let mut tables = self.tables()?;
        let before = tables.watermarks.len();
        tables.watermarks.retain(|(s, _), _| s != scope);
        tables.progress.remove(scope);
        tables.schedule.remove(scope);
        Ok(before - tables.watermarks.len())
    }
}

/// Inserts under `key` unless the key is taken (DynamoDB's `attribute_not_exists`); says which.
fn insert_new<V: Clone>(map: &mut BTreeMap<String, V>, key: &str, value: &V) -> bool {
    if map.contains_key(key) {
        return false;
    }
    map.insert(key.to_owned(), value.clone());
    true
}

/// Up to `limit` batches of one list (pending or parked), oldest first, with their events.
fn listed(tables: &Tables, batches: &BTreeMap<String, StoredBatch>, limit: usize) -> Vec<PendingBatch> {
    batches
        .iter()
        .take(limit)
        .map(|(batch, stored)| pending(tables, batch, stored))
        .collect()
}

impl WebhookEventStore for MemoryStore {
    async fn record_webhook_batch(&self, batch: &WebhookBatchRecord) -> Result<BatchRecorded, StoreError> {
        let mut tables = self.tables()?;
        let mut recorded = BatchRecorded::default();
        let mut keys = Vec::new();
        for event in &batch.events {
            match tables.events.get(&event.dedupe_key) {
                None => {
                    tables.events.insert(event.dedupe_key.clone(), event.clone());
                    recorded.new += 1;
                    keys.push(event.dedupe_key.clone());
                }
                Some(known) => {
                    recorded.duplicates += 1;
                    if !matches!(known.state, EventState::Applied { .. }) {
                        keys.push(event.dedupe_key.clone());
                    }
                }
            }
        }
        recorded.to_apply = keys.len();
        recorded.pending = !keys.is_empty() || !batch.refused.is_empty();
        if recorded.pending {
            tables.batches.insert(
                batch.batch.clone(),
                StoredBatch {
                    list_id: batch.list_id.clone(),
                    received_at: batch.received_at,
                    keys,
                    refused: batch.refused.clone(),
                },
            );
        }
        Ok(recorded)
    }

    async fn pending_webhook_batch(&self, batch: &str) -> Result<Option<PendingBatch>, StoreError> {
        let tables = self.tables()?;
        Ok(tables.batches.get(batch).map(|stored| pending(&tables, batch, stored)))
    }

    async fn pending_webhook_batches(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PendingBatch>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .batches
            .iter()
            .filter(|(batch, _)| after.is_none_or(|after| batch.as_str() > after))
            .take(limit)
            .map(|(batch, stored)| pending(&tables, batch, stored))
            .collect())
    }

    async fn save_webhook_events(&self, events: &[WebhookEventRecord]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        for event in events {
            tables.events.insert(event.dedupe_key.clone(), event.clone());
        }
        Ok(())
    }

    async fn finish_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        self.tables()?.batches.remove(batch);
        Ok(())
    }

    async fn park_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if let Some(stored) = tables.batches.remove(batch) {
            tables.parked.insert(batch.to_owned(), stored);
        }
        Ok(())
    }

    async fn parked_webhook_batches(&self, limit: usize) -> Result<Vec<PendingBatch>, StoreError> {
        let tables = self.tables()?;
        Ok(listed(&tables, &tables.parked, limit))
    }

    async fn webhook_backlog(&self, limit: usize) -> Result<Vec<WebhookBacklogEntry>, StoreError> {
        let tables = self.tables()?;
        let entry = |(batch, stored): (&String, &StoredBatch), parked: bool| WebhookBacklogEntry {
            batch: batch.clone(),
            list_id: stored.list_id.clone(),
            received_at: stored.received_at,
            events: stored.keys.len(),
            parked,
        };
        let mut backlog: Vec<WebhookBacklogEntry> =
            tables.batches.iter().take(limit).map(|b| entry(b, false)).collect();
        backlog.extend(tables.parked.iter().take(limit).map(|b| entry(b, true)));
        backlog.sort_by(|a, b| a.batch.cmp(&b.batch));
        Ok(backlog)
    }

    async fn unpark_webhook_batch(&self, batch: &str) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if let Some(stored) = tables.parked.remove(batch) {
            tables.batches.insert(batch.to_owned(), stored);
        }
        Ok(())
    }

    async fn webhook_event(&self, dedupe_key: &str) -> Result<Option<WebhookEventRecord>, StoreError> {
        Ok(self.tables()?.events.get(dedupe_key).cloned())
    }
}

fn pending(tables: &Tables, batch: &str, stored: &StoredBatch) -> PendingBatch {
    PendingBatch {
        batch: batch.to_owned(),
        list_id: stored.list_id.clone(),
        received_at: stored.received_at,
        events: stored
            .keys
            .iter()
            .filter_map(|key| tables.events.get(key).cloned())
            .collect(),
        refused: stored.refused.clone(),
    }
}

impl PreviewStore for MemoryStore {
    async fn save_preview(&self, preview: &PreviewRecord) -> Result<(), StoreError> {
        self.tables()?
            .previews
            .insert(preview.preview_id.clone(), preview.clone());
        Ok(())
    }

    async fn preview(&self, preview_id: &str) -> Result<Option<PreviewRecord>, StoreError> {
        Ok(self.tables()?.previews.get(preview_id).cloned())
    }
}

impl CatalogStore for MemoryStore {
    async fn save_catalog(&self, catalog: &CatalogRecord) -> Result<(), StoreError> {
        self.tables()?.catalog = Some(catalog.clone());
        Ok(())
    }

    async fn catalog(&self) -> Result<Option<CatalogRecord>, StoreError> {
        Ok(self.tables()?.catalog.clone())
    }

    async fn catalog_refreshed_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.tables()?.catalog.as_ref().map(|c| c.refreshed_at))
    }
}

impl TokenStore for MemoryStore {
    async fn sealed_tokens(&self, credential: &str) -> Result<Option<SealedTokens>, StoreError> {
        Ok(self.tables()?.tokens.get(credential).cloned())
    }

    async fn save_sealed_tokens(&self, tokens: &SealedTokens) -> Result<bool, StoreError> {
        let mut tables = self.tables()?;
        let stored = tables.tokens.get(&tokens.credential).map_or(0, |t| t.version);
        if stored + 1 != tokens.version {
            return Ok(false);
        }
        tables.tokens.insert(tokens.credential.clone(), tokens.clone());
        Ok(true)
    }
}

impl AuditStore for MemoryStore {
    async fn record_change(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.tables()?.audit.push(entry.clone());
        Ok(())
    }

    async fn recent_changes(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let tables = self.tables()?;
        let mut entries = tables.audit.clone();
        // Newest first; entries of one instant keep the order they were made in, reversed.
        entries.reverse();
        entries.sort_by_key(|e| std::cmp::Reverse(e.at));
        entries.truncate(limit);
        Ok(entries)
    }
}

impl RunStore for MemoryStore {
    async fn start_run(&self, run: &RunRecord) -> Result<RunStart, StoreError> {
        let tables = &mut self.tables()?;
        Ok(if insert_new(&mut tables.runs, &run.run_id, run) {
            RunStart::New
        } else {
            RunStart::Continued
        })
    }

    async fn finish_run(
        &self,
        run_id: &str,
        ended_at: DateTime<Utc>,
        status: RunStatus,
        counts: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        tables.checkpoints.remove(run_id);
        let run = tables.runs.get_mut(run_id).ok_or_else(|| no_such_run(run_id))?;
        run.ended_at = Some(ended_at);
        run.status = status;
        run.counts = counts.clone();
        Ok(())
    }

    async fn hand_over_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        checkpoint: &RunCheckpoint,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        let run = tables.runs.get_mut(run_id).ok_or_else(|| no_such_run(run_id))?;
        run.ended_at = Some(at);
        run.status = RunStatus::Continued;
        run.counts = checkpoint.counts.clone();
        tables.checkpoints.insert(run_id.to_owned(), checkpoint.clone());
        Ok(())
    }

    async fn resume_run(&self, run_id: &str, at: DateTime<Utc>) -> Result<Option<RunCheckpoint>, StoreError> {
        let mut tables = self.tables()?;
        let run = tables.runs.get_mut(run_id).ok_or_else(|| no_such_run(run_id))?;
        run.ended_at = None;
        run.status = RunStatus::Running;
        run.resumed_at = Some(at);
        Ok(tables.checkpoints.get(run_id).cloned())
    }

    async fn add_run_failures(&self, run_id: &str, failures: &[RunFailure]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        tables
            .failures
            .entry(run_id.to_owned())
            .or_default()
            .extend(failures.iter().cloned());
        if let Some(run) = tables.runs.get_mut(run_id) {
            run.failure_count += failures.len() as u64;
        }
        Ok(())
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self
            .tables()?
            .runs
            .values()
            .filter(|run| matches!(run.status, RunStatus::Running | RunStatus::Continued))
            .cloned()
            .collect())
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self.tables()?.runs.values().rev().take(limit).cloned().collect())
    }

    async fn run(&self, run_id: &str) -> Result<Option<(RunRecord, Vec<RunFailure>)>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .runs
            .get(run_id)
            .map(|run| (run.clone(), tables.failures.get(run_id).cloned().unwrap_or_default())))
    }
}

impl LeaseStore for MemoryStore {
    async fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let mut tables = self.tables()?;
        let until = crate::records::truncate_to_millis(until);
        match tables.leases.get(scope) {
            Some(held) if held.owner != owner && held.until >= now => Ok(None),
            _ => {
                let lease = Lease {
                    scope: scope.to_owned(),
                    owner: owner.to_owned(),
                    until,
                };
                tables.leases.insert(scope.to_owned(), lease.clone());
                Ok(Some(lease))
            }
        }
    }

    async fn release_lease(&self, scope: &str, owner: &str) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if tables.leases.get(scope).is_some_and(|held| held.owner == owner) {
            tables.leases.remove(scope);
        }
        Ok(())
    }

    async fn commit_under_lease(&self, lease: &Lease, commit: &RunCommit) -> Result<bool, StoreError> {
        let now = commit.ended_at;
        let mut tables = self.tables()?;
        let held = tables.leases.get(&lease.scope);
        if !held.is_some_and(|held| held.owner == lease.owner && held.until >= now) {
            return Ok(false);
        }
        tables.checkpoints.remove(&commit.run_id);
        let Some(run) = tables.runs.get_mut(&commit.run_id) else {
            return Err(StoreError::Corrupt {
                key: format!("RUNS/{}", commit.run_id),
                reason: "no such run".into(),
            });
        };
        run.ended_at = Some(commit.ended_at);
        run.status = commit.status;
        run.counts = commit.counts.clone();
        for (stream, at) in &commit.watermarks {
            tables.watermarks.insert(
                (commit.scope.clone(), stream.clone()),
                crate::records::truncate_to_millis(*at),
            );
        }
        if let Some(progress) = &commit.progress {
            tables.progress.insert(commit.scope.clone(), progress.clone());
        }
        if let Some(next) = commit.next_sync {
            tables.schedule.insert(commit.scope.clone(), next);
        }
        Ok(true)
    }
}

impl RetryQueue for MemoryStore {
    async fn enqueue_failed(&self, records: &[FailedRecord]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        for record in records {
            tables
                .retry
                .insert((record.scope.clone(), record.key.clone()), record.clone());
        }
        Ok(())
    }

    async fn failed_records(&self, scope: &str, limit: usize) -> Result<Vec<FailedRecord>, StoreError> {
        Ok(self
            .tables()?
            .retry
            .values()
            .filter(|r| r.scope == scope)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn remove_failed(&self, scope: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        for key in keys {
            tables.retry.remove(&(scope.to_owned(), key.clone()));
        }
        Ok(())
    }
}
