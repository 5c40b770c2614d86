//! Erasure of one person (`cm-sf-admin forget`): every item that holds their address, their
//! person key (under either pepper) or the dedupe key of one of their webhook events is removed
//! or rewritten, found by a scan of the whole table (a rare, operator-run task).

use super::*;

/// What an erasure changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erasure {
    /// Items scanned (each pass).
    pub scanned: usize,
    /// Items removed (the person's webhook events and queued records, anything keyed by them).
    pub removed: usize,
    /// Items kept with the person's values replaced by [`FORGOTTEN`] (run failures, batches
    /// listing their events).
    pub rewritten: usize,
}

/// What replaces a forgotten value.
pub const FORGOTTEN: &str = "forgotten";

/// The values that identify one person in the table.
#[derive(Debug, Clone)]
pub struct PersonNeedles {
    /// The normalised address (matched case-insensitively).
    pub address: String,
    /// Their person keys and the dedupe keys of their events.
    pub keys: Vec<String>,
}

impl PersonNeedles {
    /// The needles of `email`: the address normalised, its person keys under the current and
    /// the previous pepper. `None`: not an address.
    pub fn of(email: &str) -> Option<PersonNeedles> {
        let address = mapping::email::normalize_email(email);
        mapping::email::is_plausible_email(&address).then(|| PersonNeedles {
            keys: mapping::email::person_keys(&address),
            address,
        })
    }

    fn found_in(&self, text: &str) -> bool {
        text.to_lowercase().contains(&self.address) || self.keys.iter().any(|key| text.contains(key.as_str()))
    }

    /// `text` with every needle replaced.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for key in &self.keys {
            out = out.replace(key.as_str(), FORGOTTEN);
        }
        // The address case-insensitively (ASCII lower-casing keeps byte offsets).
        loop {
            let lower = out.to_ascii_lowercase();
            let Some(at) = lower.find(&self.address) else { break };
            out.replace_range(at..at + self.address.len(), FORGOTTEN);
        }
        out
    }
}

fn holds(value: &AttributeValue, needles: &PersonNeedles) -> bool {
    match value {
        AttributeValue::S(text) => needles.found_in(text),
        AttributeValue::L(items) => items.iter().any(|v| holds(v, needles)),
        AttributeValue::M(map) => map.values().any(|v| holds(v, needles)),
        AttributeValue::Ss(items) => items.iter().any(|v| needles.found_in(v)),
        _ => false,
    }
}

fn scrubbed(value: &AttributeValue, needles: &PersonNeedles) -> AttributeValue {
    match value {
        AttributeValue::S(text) => AttributeValue::S(needles.scrub(text)),
        AttributeValue::L(items) => AttributeValue::L(items.iter().map(|v| scrubbed(v, needles)).collect()),
        AttributeValue::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), scrubbed(v, needles))).collect())
        }
        AttributeValue::Ss(items) => AttributeValue::Ss(items.iter().map(|v| needles.scrub(v)).collect()),
        other => other.clone(),
    }
}

/// Items that exist for one person only: removed whole when they hold the person.
fn is_personal(pk: &str) -> bool {
    pk.starts_with("WEBHOOK#") || pk.starts_with("RETRY#")
}

impl DynamoStore {
    /// Every item of the table, page by page, handed to `each`.
    async fn scan_all(&self, mut each: impl FnMut(Item)) -> Result<usize, StoreError> {
        let mut start: Option<Item> = None;
        let mut scanned = 0;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Scan", e))?;
            for item in page.items.unwrap_or_default() {
                scanned += 1;
                each(item);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(scanned),
            }
        }
    }

    /// Removes or rewrites every item holding the person `needles` name. Two passes: the first
    /// finds the dedupe keys of the person's webhook events (their items hold the address), the
    /// second erases everything holding the address, a key or one of those dedupe keys.
    pub async fn forget(&self, needles: &PersonNeedles) -> Result<Erasure, StoreError> {
        let mut needles = needles.clone();
        let mut erasure = Erasure::default();
        let mut events = Vec::new();
        erasure.scanned += self
            .scan_all(|item| {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                if let Some(dedupe) = pk.strip_prefix("WEBHOOK#")
                    && item.values().any(|v| holds(v, &needles))
                {
                    events.push(dedupe.to_owned());
                }
            })
            .await?;
        needles.keys.extend(events);
        let mut matched = Vec::new();
        erasure.scanned += self
            .scan_all(|item| {
                if item.values().any(|v| holds(v, &needles)) {
                    matched.push(item);
                }
            })
            .await?;
        for item in matched {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let (pk, sk) = (text("pk"), text("sk"));
            if is_personal(&pk) || needles.found_in(&pk) || needles.found_in(&sk) {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .send()
                    .await
                    .map_err(|e| backend("DeleteItem", e))?;
                erasure.removed += 1;
            } else {
                let rewritten: Item = item
                    .iter()
                    .map(|(name, value)| {
                        let keep = name == "pk" || name == "sk";
                        (
                            name.clone(),
                            if keep { value.clone() } else { scrubbed(value, &needles) },
                        )
                    })
                    .collect();
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(rewritten))
                    .send()
                    .await
                    .map_err(|e| backend("PutItem", e))?;
                erasure.rewritten += 1;
            }
        }
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_scrubbed_of_every_spelling_and_key() {
        let needles = PersonNeedles {
            address: "jo@example.com".into(),
            keys: vec!["p-abc".into()],
        };
        assert_eq!(
            needles.scrub(r#"{"email":"Jo@Example.COM","person":"p-abc","other":"sam@example.com"}"#),
            r#"{"email":"forgotten","person":"forgotten","other":"sam@example.com"}"#
        );
        assert!(needles.found_in("JO@EXAMPLE.COM") && !needles.found_in("sam@example.com"));
    }
}
