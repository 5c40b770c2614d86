//! The catalog of CM campaigns: parts of at most [`PART_BYTES`] each under a partition of their
//! own generation, then one head item naming the generation. Parts are written before the
//! head, so a reader never finds a head whose parts are missing; an older generation's parts
//! expire with their TTL.

use super::*;

/// The most JSON one part holds: well under DynamoDB's 400 KB item limit.
pub const PART_BYTES: usize = 300_000;

const HEAD: &str = "CATALOG";

fn parts_key(generation: i64) -> String {
    format!("CATALOG#{generation}")
}

/// The campaigns cut into parts of at most [`PART_BYTES`] of JSON (a campaign is never split).
fn parts(campaigns: &[mapping::autocreate::DiscoveredCampaign]) -> Result<Vec<String>, StoreError> {
    let mut parts = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut bytes = 2;
    for campaign in campaigns {
        let json = to_json(campaign)?;
        if !current.is_empty() && bytes + json.len() + 1 > PART_BYTES {
            parts.push(format!("[{}]", current.join(",")));
            current.clear();
            bytes = 2;
        }
        bytes += json.len() + 1;
        current.push(json);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(format!("[{}]", current.join(",")));
    }
    Ok(parts)
}

impl CatalogStore for DynamoStore {
    async fn save_catalog(&self, catalog: &CatalogRecord) -> Result<(), StoreError> {
        let generation = catalog.refreshed_at.timestamp_millis();
        let expires = (catalog.refreshed_at + ChronoDuration::days(CatalogRecord::KEPT_DAYS)).timestamp();
        let parts = parts(&catalog.campaigns)?;
        let mut requests = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let put = PutRequest::builder()
                .item("pk", s(parts_key(generation)))
                .item("sk", s(format!("PART#{index:05}")))
                .item("doc", s(part))
                .item("expires_at", n(expires))
                .build()
                .map_err(build_error)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(requests).await?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(HEAD))
            .item("sk", s(HEAD))
            .item("refreshed_at", s(rfc3339(catalog.refreshed_at)))
            .item("generation", n(generation))
            .item("parts", n(parts.len()))
            .item("expires_at", n(expires))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn catalog(&self) -> Result<Option<CatalogRecord>, StoreError> {
        let Some(head) = self.get(HEAD, HEAD).await? else {
            return Ok(None);
        };
        let reader = Reader::new(&head);
        let refreshed_at = reader.time("refreshed_at")?;
        let generation = reader.number("generation")?;
        let expected = usize::try_from(reader.number("parts")?).unwrap_or(0);
        let items = self.query_partition(&parts_key(generation), false, None).await?;
        if items.len() != expected {
            return Err(reader.corrupt(format!("{expected} catalog parts named, {} found", items.len())));
        }
        let mut campaigns = Vec::new();
        for item in &items {
            let part: Vec<mapping::autocreate::DiscoveredCampaign> = Reader::new(item).json("doc")?;
            campaigns.extend(part);
        }
        Ok(Some(CatalogRecord {
            refreshed_at,
            campaigns,
        }))
    }

    async fn catalog_refreshed_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.get(HEAD, HEAD).await? {
            Some(head) => Ok(Some(Reader::new(&head).time("refreshed_at")?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};

    #[test]
    fn a_big_catalog_is_cut_into_parts_under_the_item_limit_and_reads_back_whole() {
        let campaigns: Vec<DiscoveredCampaign> = (0..5_000)
            .map(|i| DiscoveredCampaign {
                cm_campaign_id: format!("{i:032x}"),
                cm_client_id: "c".repeat(32),
                name: format!("Newsletter {i} {}", "x".repeat(60)),
                subject: "Subject".into(),
                state: CmCampaignState::Sent,
                sent_at: Some(Utc::now()),
                created_at: None,
            })
            .collect();
        let parts = parts(&campaigns).unwrap();
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= PART_BYTES));
        let back: Vec<DiscoveredCampaign> = parts
            .iter()
            .flat_map(|p| serde_json::from_str::<Vec<DiscoveredCampaign>>(p).unwrap())
            .collect();
        assert_eq!(back, campaigns);
        assert_eq!(super::parts(&[]).unwrap(), vec!["[]".to_owned()]);
    }
}
