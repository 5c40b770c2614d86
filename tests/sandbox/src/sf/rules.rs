//! What Salesforce enforces on a write: field types and access, unique external ids, and the
//! rules of each object (campaign member statuses, members, people). The one file to edit when
//! Salesforce turns out to behave differently.

use serde_json::{Value, json};

use super::*;

/// Fields Salesforce computes on read; a condition on them needs the materialised view.
pub(super) fn is_derived(object: &str, field: &str) -> bool {
    let field = field.to_ascii_lowercase();
    match object {
        "CampaignMember" => {
            ["hasresponded", "email", "leadorcontactid", "hasoptedoutofemail"].contains(&field.as_str())
        }
        "Campaign" => field.starts_with("numberof"),
        _ => false,
    }
}

impl SfWorld {
    /// Converts and checks an incoming value for a field.
    pub(super) fn coerce(
        &self,
        object: &str,
        field: &str,
        field_type: FieldType,
        value: &Value,
    ) -> Result<Value, SfError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let bad = || {
            field_err(
                "JSON_PARSER_ERROR",
                format!(
                    "Cannot deserialize instance of {} from {value} for field {object}.{field}",
                    field_type.describe_name()
                ),
                field,
            )
        };
        match field_type {
            FieldType::Text | FieldType::Picklist | FieldType::Id => value.as_str().map(|s| json!(s)).ok_or_else(bad),
            FieldType::Double => match value {
                Value::Number(_) => Ok(value.clone()),
                Value::String(s) => s.parse::<f64>().map(|n| json!(n)).map_err(|_| bad()),
                _ => Err(bad()),
            },
            FieldType::Boolean => match value {
                Value::Bool(_) => Ok(value.clone()),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
                _ => Err(bad()),
            },
            FieldType::DateTime => value
                .as_str()
                .and_then(parse_datetime)
                .map(|t| json!(format_datetime(t)))
                .ok_or_else(bad),
            FieldType::Date => value
                .as_str()
                .filter(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
                .map(|s| json!(s))
                .ok_or_else(bad),
            FieldType::Reference(target) => {
                let id = value.as_str().ok_or_else(bad)?;
                if self.find(target, id).is_some() {
                    Ok(json!(id))
                } else {
                    Err(field_err(
                        "INVALID_CROSS_REFERENCE_KEY",
                        format!("invalid cross reference id: {id} is not a {target}"),
                        field,
                    ))
                }
            }
        }
    }

    /// Checks the fields of a create or update and returns them canonicalised.
    pub(super) fn check_fields(&self, object: &str, fields: &Record, creating: bool) -> Result<Record, SfError> {
        let schema = self.schema(object)?;
        let mut clean = Record::new();
        for (key, value) in fields {
            if key == "attributes" || (!creating && key.eq_ignore_ascii_case("id")) {
                continue;
            }
            let Some(field) = schema.field(key) else {
                return Err(field_err(
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", schema.name),
                    key,
                ));
            };
            let writable = match field.access {
                Access::ReadWrite => true,
                Access::CreateOnly => creating,
                Access::ReadOnly => false,
            };
            if !writable {
                return Err(field_err(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        field.name
                    ),
                    &field.name,
                ));
            }
            clean.insert(
                field.name.clone(),
                self.coerce(schema.name, &field.name, field.field_type, value)?,
            );
        }
        if creating {
            for field in schema.fields.values().filter(|f| f.required) {
                if clean.get(&field.name).is_none_or(Value::is_null) {
                    return Err(field_err(
                        "REQUIRED_FIELD_MISSING",
                        format!("Required fields are missing: [{}]", field.name),
                        &field.name,
                    ));
                }
            }
        }
        Ok(clean)
    }

    pub(super) fn check_unique_external_ids(
        &self,
        object: &str,
        record: &Record,
        except: Option<&str>,
    ) -> Result<(), SfError> {
        let schema = self.schema(object)?;
        for field in schema.fields.values().filter(|f| f.external_id) {
            let Some(value) = record.get(&field.name).and_then(Value::as_str) else {
                continue;
            };
            if let Some((id, _)) = self.records.get(schema.name).and_then(|all| {
                all.iter().find(|(id, r)| {
                    Some(id.as_str()) != except
                        && r.get(&field.name)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(value))
                })
            }) {
                return Err(field_err(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {id}",
                        field.name
                    ),
                    &field.name,
                ));
            }
        }
        Ok(())
    }

    /// Object rules Salesforce enforces beyond field access.
    pub(super) fn check_rules(&self, object: &str, merged: &Record, id: Option<&str>) -> Result<(), SfError> {
        self.check_unique_external_ids(object, merged, id)?;
        match object {
            "CampaignMember" => {
                let campaign = merged.get("CampaignId").and_then(Value::as_str).unwrap_or_default();
                let lead = merged.get("LeadId").and_then(Value::as_str);
                let contact = merged.get("ContactId").and_then(Value::as_str);
                if lead.is_none() && contact.is_none() {
                    return Err(err(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [LeadId or ContactId]",
                    ));
                }
                if id.is_none() && self.is_member(campaign, contact.or(lead).unwrap_or_default()) {
                    return Err(err("DUPLICATE_VALUE", "Already a campaign member."));
                }
                if let Some(status) = merged.get("Status").and_then(Value::as_str)
                    && !self
                        .statuses_of(campaign)
                        .iter()
                        .any(|s| s.get("Label").and_then(Value::as_str) == Some(status))
                {
                    return Err(field_err(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("Status: bad value for restricted picklist field: {status}"),
                        "Status",
                    ));
                }
            }
            "CampaignMemberStatus" => {
                let campaign = merged.get("CampaignId").and_then(Value::as_str).unwrap_or_default();
                let label = merged.get("Label").and_then(Value::as_str).unwrap_or_default();
                let sort = merged.get("SortOrder").and_then(Value::as_f64);
                for other in self.statuses_of(campaign) {
                    if other.get("Id").and_then(Value::as_str) == id {
                        continue;
                    }
                    // Salesforce compares text ignoring case: `clicked` duplicates `Clicked`.
                    if other
                        .get("Label")
                        .and_then(Value::as_str)
                        .is_some_and(|other| other.to_lowercase() == label.to_lowercase())
                    {
                        return Err(field_err(
                            "DUPLICATE_VALUE",
                            format!(
                                "duplicate value found: Label duplicates value on record with id: {}",
                                other.get("Id").and_then(Value::as_str).unwrap_or_default()
                            ),
                            "Label",
                        ));
                    }
                    if sort.is_some() && other.get("SortOrder").and_then(Value::as_f64) == sort {
                        return Err(field_err(
                            "DUPLICATE_VALUE",
                            "duplicate value found: SortOrder duplicates value on another status of the campaign",
                            "SortOrder",
                        ));
                    }
                }
                if label.chars().count() > 765 {
                    return Err(field_err("STRING_TOO_LONG", "Label: data value too large", "Label"));
                }
                // A campaign keeps at least one responded status.
                if merged.get("HasResponded") == Some(&json!(false)) {
                    let others_responded = self.statuses_of(campaign).iter().any(|s| {
                        s.get("Id").and_then(Value::as_str) != id && s.get("HasResponded") == Some(&json!(true))
                    });
                    if id.is_some() && !others_responded {
                        return Err(err(
                            "FIELD_INTEGRITY_EXCEPTION",
                            "A campaign must have at least one responded member status",
                        ));
                    }
                }
                // A campaign keeps a default status: the default cannot be switched off directly.
                if let Some(id) = id {
                    let was_default =
                        self.find("CampaignMemberStatus", id).and_then(|s| s.get("IsDefault")) == Some(&json!(true));
                    if was_default && merged.get("IsDefault") == Some(&json!(false)) {
                        return Err(err(
                            "FIELD_INTEGRITY_EXCEPTION",
                            "A campaign must have a default member status; make another status the default instead",
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
