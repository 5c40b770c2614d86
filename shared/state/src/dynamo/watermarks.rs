//! Watermarks, campaign progress and the sync schedule.

use super::*;

impl WatermarkStore for DynamoStore {
    async fn campaign_progress(&self, cm_campaign_id: &str) -> Result<CampaignProgress, StoreError> {
        let key = format!("PROGRESS#{cm_campaign_id}");
        let Some(item) = self.get(&key, "PROGRESS").await? else {
            return Ok(CampaignProgress::default());
        };
        let doc = Reader::new(&item).string("doc")?;
        serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt {
            key,
            reason: e.to_string(),
        })
    }

    async fn watermark(&self, scope: &str, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.get(&format!("WATERMARK#{scope}"), stream)
            .await?
            .map(|item| Reader::new(&item).millis("at_ms"))
            .transpose()
    }

    async fn watermarks(&self, scope: &str) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        self.query_partition(&format!("WATERMARK#{scope}"), false, None)
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                Ok((reader.string("sk")?, reader.millis("at_ms")?))
            })
            .collect()
    }

    async fn advance_watermark(&self, scope: &str, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("WATERMARK#{scope}")))
            .item("sk", s(stream))
            .item("at_ms", n(to.timestamp_millis()))
            .item("updated_at", s(rfc3339(Utc::now())))
            .condition_expression("attribute_not_exists(pk) OR at_ms < :to")
            .expression_attribute_values(":to", n(to.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(backend("PutItem", error)),
        }
    }

    async fn sync_schedule(&self) -> Result<BTreeMap<String, mapping::cadence::NextSync>, StoreError> {
        self.query_partition("SCHEDULE", false, None)
            .await?
            .iter()
            .map(|item| {
                let reader = Reader::new(item);
                let key = reader.string("sk")?;
                let next = serde_json::from_str(&reader.string("doc")?).map_err(|e| StoreError::Corrupt {
                    key: format!("SCHEDULE/{key}"),
                    reason: e.to_string(),
                })?;
                Ok((key, next))
            })
            .collect()
    }

    async fn reset_watermarks(&self, scope: &str) -> Result<usize, StoreError> {
        let pk = format!("WATERMARK#{scope}");
        let mut requests = Vec::new();
        for item in self.query_partition(&pk, false, None).await? {
            let delete = DeleteRequest::builder()
                .key("pk", s(&pk))
                .key("sk", s(Reader::new(&item).string("sk")?))
                .build()
                .map_err(build_error)?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let count = requests.len();
        // What the last sync saw goes with the watermarks: the next sync reads and writes afresh.
        let progress = DeleteRequest::builder()
            .key("pk", s(format!("PROGRESS#{scope}")))
            .key("sk", s("PROGRESS"))
            .build()
            .map_err(build_error)?;
        requests.push(WriteRequest::builder().delete_request(progress).build());
        let schedule = DeleteRequest::builder()
            .key("pk", s("SCHEDULE"))
            .key("sk", s(scope))
            .build()
            .map_err(build_error)?;
        requests.push(WriteRequest::builder().delete_request(schedule).build());
        self.batch_write(requests).await?;
        Ok(count)
    }
}
