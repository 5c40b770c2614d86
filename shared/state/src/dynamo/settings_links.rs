//! The settings document and the campaign links.

use super::*;

impl SettingsStore for DynamoStore {
    async fn load_settings(&self) -> Result<Option<VersionedSettings>, StoreError> {
        let Some(item) = self.get("SETTINGS", "CURRENT").await? else {
            return Ok(None);
        };
        let reader = Reader::new(&item);
        let doc = reader.string("doc")?;
        let settings = Settings::from_json(&doc).map_err(|e| reader.corrupt(e.to_string()))?;
        Ok(Some(VersionedSettings {
            settings,
            version: u64::try_from(reader.number("version")?).map_err(|e| reader.corrupt(e.to_string()))?,
            updated_at: reader.time("updated_at")?,
        }))
    }

    async fn save_settings(
        &self,
        settings: &Settings,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let version = expected_version.unwrap_or(0) + 1;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("SETTINGS"))
            .item("sk", s("CURRENT"))
            .item("doc", s(settings.to_json()))
            .item("version", n(version))
            .item("updated_at", s(rfc3339(now)));
        request = match expected_version {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected)),
        };
        match request.send().await {
            Ok(_) => Ok(version),
            Err(error) if is_condition_failure(&error) => {
                let found = self.load_settings().await.ok().flatten().map(|s| s.version);
                Err(StoreError::VersionConflict {
                    expected: expected_version,
                    found,
                })
            }
            Err(error) => Err(backend("PutItem", error)),
        }
    }
}

fn origin_name(origin: LinkOrigin) -> String {
    serde_json::to_value(origin)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn link_from(item: &Item) -> Result<LinkRecord, StoreError> {
    let reader = Reader::new(item);
    let origin = reader.string("origin")?;
    Ok(LinkRecord {
        cm_campaign_id: reader.string("sk")?,
        sf_campaign_id: reader.string("sf_campaign_id")?,
        origin: serde_json::from_value(serde_json::Value::String(origin.clone()))
            .map_err(|_| reader.corrupt(format!("unknown origin `{origin}`")))?,
        linked_at: reader.time("linked_at")?,
    })
}

impl LinkStore for DynamoStore {
    async fn put_link(&self, link: &LinkRecord) -> Result<LinkOutcome, StoreError> {
        let forward = Put::builder()
            .table_name(&self.table)
            .item("pk", s("LINKS"))
            .item("sk", s(&link.cm_campaign_id))
            .item("sf_campaign_id", s(&link.sf_campaign_id))
            .item("origin", s(origin_name(link.origin)))
            .item("linked_at", s(rfc3339(link.linked_at)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let reverse = Put::builder()
            .table_name(&self.table)
            .item("pk", s("SFLINKS"))
            .item("sk", s(&link.sf_campaign_id))
            .item("cm_campaign_id", s(&link.cm_campaign_id))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(forward).build())
            .transact_items(TransactWriteItem::builder().put(reverse).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(LinkOutcome::Created),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                let by_cm = self.link(&link.cm_campaign_id).await?.map(|l| l.sf_campaign_id);
                let by_sf = self.cm_campaign_for(&link.sf_campaign_id).await?;
                if by_cm.as_deref() == Some(link.sf_campaign_id.as_str())
                    && by_sf.as_deref() == Some(link.cm_campaign_id.as_str())
                {
                    Ok(LinkOutcome::AlreadyLinked)
                } else if by_cm.is_none() && by_sf.is_none() {
                    // Cancelled for another reason (a concurrent transaction): let the caller retry.
                    Err(backend("TransactWriteItems", error))
                } else {
                    Err(link_conflict(link, by_cm, by_sf))
                }
            }
            Err(error) => Err(backend("TransactWriteItems", error)),
        }
    }

    async fn link(&self, cm_campaign_id: &str) -> Result<Option<LinkRecord>, StoreError> {
        self.get("LINKS", cm_campaign_id)
            .await?
            .as_ref()
            .map(link_from)
            .transpose()
    }

    async fn cm_campaign_for(&self, sf_campaign_id: &str) -> Result<Option<String>, StoreError> {
        self.get("SFLINKS", sf_campaign_id)
            .await?
            .map(|item| Reader::new(&item).string("cm_campaign_id"))
            .transpose()
    }

    async fn links(&self) -> Result<Vec<LinkRecord>, StoreError> {
        self.query_partition("LINKS", false, None)
            .await?
            .iter()
            .map(link_from)
            .collect()
    }

    async fn delete_link(&self, cm_campaign_id: &str) -> Result<(), StoreError> {
        let Some(link) = self.link(cm_campaign_id).await? else {
            return Ok(());
        };
        let delete = |pk: &str, sk: &str| {
            Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .build()
                .map_err(build_error)
        };
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .delete(delete("LINKS", cm_campaign_id)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .delete(delete("SFLINKS", &link.sf_campaign_id)?)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend("TransactWriteItems", e))?;
        Ok(())
    }
}
