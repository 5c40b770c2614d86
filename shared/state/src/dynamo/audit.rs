//! The audit of administrators' changes (one partition, time-ordered sort keys) and the
//! console's settings previews (one item each).

use super::*;

fn entry_from(item: &Item) -> Result<AuditEntry, StoreError> {
    let reader = Reader::new(item);
    let version = |name: &str| -> Result<Option<u64>, StoreError> {
        match item.get(name) {
            Some(_) => Ok(Some(u64::try_from(reader.number(name)?).unwrap_or(0))),
            None => Ok(None),
        }
    };
    Ok(AuditEntry {
        at: reader.time("at")?,
        actor: reader.string("actor")?,
        action: reader.string("action")?,
        version_before: version("version_before")?,
        version_after: version("version_after")?,
        expires_at: match item.get("expires_at") {
            Some(_) => Utc.timestamp_opt(reader.number("expires_at")?, 0).single(),
            None => None,
        },
    })
}

impl AuditStore for DynamoStore {
    async fn record_change(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        // Time first, so the newest sort last; a random tail keeps two changes of one
        // millisecond apart.
        let sk = format!("{}#{:08x}", rfc3339(entry.at), uuid::Uuid::new_v4().as_u128() as u32);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("AUDIT"))
            .item("sk", s(sk))
            .item("at", s(rfc3339(entry.at)))
            .item("actor", s(&entry.actor))
            .item("action", s(&entry.action));
        if let Some(version) = entry.version_before {
            request = request.item("version_before", n(version));
        }
        if let Some(version) = entry.version_after {
            request = request.item("version_after", n(version));
        }
        if let Some(expires) = entry.expires_at {
            request = request.item("expires_at", n(expires.timestamp()));
        }
        request.send().await.map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn recent_changes(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.query_partition("AUDIT", true, Some(limit))
            .await?
            .iter()
            .map(entry_from)
            .collect()
    }
}

impl PreviewStore for DynamoStore {
    async fn save_preview(&self, preview: &PreviewRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("PREVIEW#{}", preview.preview_id)))
            .item("sk", s("PREVIEW"))
            .item("doc", s(to_json(preview)?))
            .item("expires_at", n(preview.expires_at.timestamp()))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn preview(&self, preview_id: &str) -> Result<Option<PreviewRecord>, StoreError> {
        let Some(item) = self.get(&format!("PREVIEW#{preview_id}"), "PREVIEW").await? else {
            return Ok(None);
        };
        Ok(Some(Reader::new(&item).json("doc")?))
    }
}
