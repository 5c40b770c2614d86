//! The shared OAuth tokens: one item per credential, saved only over the version read.

use super::*;

const TOKENS: &str = "TOKENS";

impl TokenStore for DynamoStore {
    async fn sealed_tokens(&self, credential: &str) -> Result<Option<SealedTokens>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(TOKENS))
            .key("sk", s(credential))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let read = Reader::new(&item);
        Ok(Some(SealedTokens {
            credential: credential.to_owned(),
            version: u64::try_from(read.number("version")?).unwrap_or_default(),
            sealed: read.string("sealed")?,
            seed: read.string("seed")?,
            saved_at: read.time("saved_at")?,
        }))
    }

    async fn save_sealed_tokens(&self, tokens: &SealedTokens) -> Result<bool, StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(TOKENS))
            .item("sk", s(&tokens.credential))
            .item("version", n(tokens.version))
            .item("sealed", s(&tokens.sealed))
            .item("seed", s(&tokens.seed))
            .item("saved_at", s(rfc3339(tokens.saved_at)));
        let request = if tokens.version <= 1 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request
                .condition_expression("version = :read")
                .expression_attribute_values(":read", n(tokens.version - 1))
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(backend("PutItem", error)),
        }
    }
}
