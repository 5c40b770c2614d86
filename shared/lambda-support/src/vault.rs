//! OAuth tokens saved back to their Secrets Manager secret after a refresh: CM rotates its
//! refresh token with every refresh (and Salesforce does with refresh-token rotation on), so a
//! container that kept the new one to itself would leave every later cold start a refresh token
//! that no longer works. The secret keeps its other fields; only the token fields change.

use campaign_monitor::OAuthTokens;
use serde_json::Value;

/// A secret holding OAuth tokens, read back and written whole (`PutSecretValue`).
#[derive(Debug, Clone)]
pub struct SecretVault {
    client: aws_sdk_secretsmanager::Client,
    id: String,
}

impl SecretVault {
    /// The secret `id`.
    pub fn new(client: aws_sdk_secretsmanager::Client, id: &str) -> SecretVault {
        SecretVault {
            client,
            id: id.to_owned(),
        }
    }

    async fn read(&self) -> Result<Value, String> {
        let text = super::secret(&self.client, &self.id).await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|_| format!("secret {} is not a JSON object", self.id))
    }

    /// Sets `fields` in the secret, keeping the rest.
    async fn write(&self, fields: &[(&str, &str)]) -> Result<(), String> {
        let mut doc = self.read().await?;
        let Some(object) = doc.as_object_mut() else {
            return Err(format!("secret {} is not a JSON object", self.id));
        };
        for (name, value) in fields {
            object.insert((*name).to_owned(), Value::String((*value).to_owned()));
        }
        self.client
            .put_secret_value()
            .secret_id(&self.id)
            .secret_string(doc.to_string())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "secret {}: {}",
                    self.id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        tracing::info!(secret = %self.id, "refreshed OAuth tokens saved");
        Ok(())
    }

    fn field(doc: &Value, name: &str) -> Option<String> {
        doc[name].as_str().filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

impl campaign_monitor::TokenVault for SecretVault {
    fn load(&self) -> campaign_monitor::VaultFuture<'_, Option<OAuthTokens>> {
        Box::pin(async move {
            let doc = self.read().await?;
            Ok(
                match (Self::field(&doc, "access_token"), Self::field(&doc, "refresh_token")) {
                    (Some(access_token), Some(refresh_token)) => Some(OAuthTokens {
                        access_token,
                        refresh_token,
                        expires_in: 0,
                    }),
                    _ => None,
                },
            )
        })
    }

    fn save<'a>(&'a self, tokens: &'a OAuthTokens) -> campaign_monitor::VaultFuture<'a, ()> {
        Box::pin(async move {
            self.write(&[
                ("access_token", tokens.access_token.as_str()),
                ("refresh_token", tokens.refresh_token.as_str()),
            ])
            .await
        })
    }
}

impl salesforce::RefreshTokenVault for SecretVault {
    fn load(&self) -> salesforce::VaultFuture<'_, Option<String>> {
        Box::pin(async move { Ok(Self::field(&self.read().await?, "refresh_token")) })
    }

    fn save<'a>(&'a self, refresh_token: &'a str) -> salesforce::VaultFuture<'a, ()> {
        Box::pin(async move { self.write(&[("refresh_token", refresh_token)]).await })
    }
}
