//! The org's records and the writes on them: create, update, upsert and delete, each checked by
//! [`rules`](super::rules) and kept in step with the indexes the queries use.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::*;

/// The stand-in's indexes, kept in step with every write: Leads and Contacts by lowercase
/// Email, and members by person. Queries that ask for emails positively read only the records
/// these name (and still check the whole condition); everything else scans. An entry names one
/// record or a few: a `Vec`, not a set (a `BTreeSet` of one takes a 500-byte node, a gigabyte
/// over a million people). Members by person is a B-tree: it grows during a sync, and a hash
/// table doubling past a million members would hold both tables at once.
#[derive(Debug, Clone, Default)]
pub(super) struct Indexes {
    pub(super) people_by_email: HashMap<String, Vec<(&'static str, String)>>,
    pub(super) members_by_person: BTreeMap<String, Vec<String>>,
}

pub(super) fn person_of(record: &Record) -> Option<&str> {
    record
        .get("ContactId")
        .and_then(Value::as_str)
        .or_else(|| record.get("LeadId").and_then(Value::as_str))
}

/// The index's name of a person object.
fn person_object(object: &str) -> Option<&'static str> {
    match object {
        "Lead" => Some("Lead"),
        "Contact" => Some("Contact"),
        _ => None,
    }
}

impl Indexes {
    fn add(&mut self, object: &str, id: &str, record: &Record) {
        if let Some(kind) = person_object(object) {
            if let Some(email) = record.get("Email").and_then(Value::as_str) {
                let ids = self.people_by_email.entry(email.to_lowercase()).or_default();
                if !ids.iter().any(|(k, i)| *k == kind && i == id) {
                    ids.push((kind, id.to_owned()));
                }
            }
        } else if object == "CampaignMember"
            && let Some(person) = person_of(record)
        {
            let ids = self.members_by_person.entry(person.to_owned()).or_default();
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
    }

    fn remove(&mut self, object: &str, id: &str, record: &Record) {
        if let Some(kind) = person_object(object) {
            if let Some(email) = record.get("Email").and_then(Value::as_str) {
                let email = email.to_lowercase();
                if let Some(ids) = self.people_by_email.get_mut(&email) {
                    ids.retain(|(k, i)| !(*k == kind && i == id));
                    if ids.is_empty() {
                        self.people_by_email.remove(&email);
                    }
                }
            }
        } else if object == "CampaignMember"
            && let Some(person) = person_of(record)
            && let Some(ids) = self.members_by_person.get_mut(person)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.members_by_person.remove(person);
            }
        }
    }

    pub(super) fn rebuild(records: &BTreeMap<String, BTreeMap<String, Record>>) -> Indexes {
        let mut indexes = Indexes::default();
        for (object, all) in records {
            for (id, record) in all {
                indexes.add(object, id, record);
            }
        }
        indexes
    }
}

impl SfWorld {
    /// Whether `person` is a member of `campaign` already.
    pub(super) fn is_member(&self, campaign: &str, person: &str) -> bool {
        self.indexes.members_by_person.get(person).is_some_and(|ids| {
            ids.iter().any(|id| {
                self.find("CampaignMember", id)
                    .and_then(|m| m.get("CampaignId"))
                    .and_then(Value::as_str)
                    == Some(campaign)
            })
        })
    }

    /// Salesforce checkboxes are never null: absent booleans are stored as false. Derived ones
    /// (a member's `HasResponded`, `HasOptedOutOfEmail`) are not stored: reads work them out.
    pub(super) fn default_booleans(&self, object: &str, record: &mut Record) {
        if let Some(schema) = self.schemas.get(object) {
            for field in schema
                .fields
                .values()
                .filter(|f| f.field_type == FieldType::Boolean && !super::is_derived(object, &f.name))
            {
                if record.get(&field.name).is_none_or(Value::is_null) {
                    record.insert(field.name.clone(), json!(false));
                }
            }
        }
    }

    /// A new 18-character Id with the object's prefix, never one a scenario record already has.
    pub(super) fn new_id(&mut self, prefix: &str) -> String {
        loop {
            let id = format!("{prefix}9SB{:012}", self.next_id);
            self.next_id += 1;
            let taken = self.records.values().any(|records| records.contains_key(&id));
            if !taken {
                return id;
            }
        }
    }

    pub(super) fn add_stock_statuses(&mut self, campaign_id: &str) {
        let (sent, responded) = stock_statuses(&self.org.language);
        for (label, responded_flag, default, order) in [(sent, false, true, 1), (responded, true, false, 2)] {
            let id = self.new_id("01Y");
            let mut record = Record::new();
            record.insert("Id", json!(id));
            record.insert("CampaignId", json!(campaign_id));
            record.insert("Label", json!(label));
            record.insert("HasResponded", json!(responded_flag));
            record.insert("IsDefault", json!(default));
            record.insert("SortOrder", json!(order));
            self.records
                .entry("CampaignMemberStatus".into())
                .or_default()
                .insert(id, record);
        }
    }

    /// Creates a record.
    pub fn create(&mut self, object: &str, fields: &Record) -> Result<String, SfError> {
        let object = self.schema(object)?.name;
        let mut record = self.check_fields(object, fields, true)?;
        if object == "CampaignMember" && record.get("Status").is_none_or(Value::is_null) {
            let campaign = record
                .get("CampaignId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(default) = self
                .statuses_of(&campaign)
                .into_iter()
                .find(|s| s.get("IsDefault") == Some(&json!(true)))
            {
                record.insert("Status", default.get("Label").cloned().unwrap_or(Value::Null));
            }
        }
        self.check_rules(object, &record, None)?;
        let prefix = self.schema(object)?.prefix;
        let id = self.new_id(prefix);
        let now = json!(format_datetime(Utc::now()));
        record.insert("Id", json!(id));
        record.insert("CreatedDate", now.clone());
        record.insert("LastModifiedDate", now.clone());
        record.insert("SystemModstamp", now);
        self.default_booleans(object, &mut record);
        if object == "CampaignMemberStatus" && record.get("IsDefault") == Some(&json!(true)) {
            let campaign = record
                .get("CampaignId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.clear_default(&campaign);
        }
        self.indexes.add(object, &id, &record);
        record.shrink_to_fit();
        self.records
            .entry(object.to_owned())
            .or_default()
            .insert(id.clone(), record);
        if object == "Campaign" {
            self.add_stock_statuses(&id);
        }
        Ok(id)
    }

    pub(super) fn clear_default(&mut self, campaign: &str) {
        if let Some(all) = self.records.get_mut("CampaignMemberStatus") {
            for status in all.values_mut() {
                if status.get("CampaignId").and_then(Value::as_str) == Some(campaign) {
                    status.insert("IsDefault", json!(false));
                }
            }
        }
    }

    /// Updates a record.
    pub fn update(&mut self, object: &str, id: &str, fields: &Record) -> Result<(), SfError> {
        let object = self.schema(object)?.name;
        let Some(existing) = self.find(object, id).cloned() else {
            return Err(err(
                "ENTITY_IS_DELETED",
                format!("entity is deleted or does not exist: {id}"),
            ));
        };
        let changes = self.check_fields(object, fields, false)?;
        let mut merged = existing;
        for (key, value) in &changes {
            merged.insert(key, value.clone());
        }
        self.check_rules(object, &merged, Some(id))?;
        if object == "CampaignMemberStatus" && changes.get("IsDefault") == Some(&json!(true)) {
            let campaign = merged
                .get("CampaignId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.clear_default(&campaign);
        }
        let now = json!(format_datetime(Utc::now()));
        merged.insert("LastModifiedDate", now.clone());
        merged.insert("SystemModstamp", now);
        merged.shrink_to_fit();
        let all = self.records.entry(object.to_owned()).or_default();
        if let Some(old) = all.insert(id.to_owned(), merged) {
            self.indexes.remove(object, id, &old);
        }
        if let Some(new) = all.get(id) {
            self.indexes.add(object, id, new);
        }
        Ok(())
    }

    /// Upserts on an external id field; returns (id, created).
    pub fn upsert(&mut self, object: &str, key_field: &str, fields: &Record) -> Result<(String, bool), SfError> {
        let schema = self.schema(object)?;
        let object = schema.name;
        let Some(field) = schema.field(key_field).filter(|f| f.external_id || f.name == "Id") else {
            return Err(err(
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {key_field}"),
            ));
        };
        let key_name = field.name.clone();
        let Some(key_value) = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key_name))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
        else {
            return Err(field_err(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{key_name}]"),
                &key_name,
            ));
        };
        let matches: Vec<String> = self
            .records
            .get(object)
            .map(|all| {
                all.iter()
                    .filter(|(_, r)| {
                        r.get(&key_name)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(&key_value))
                    })
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        match matches.as_slice() {
            [] => self.create(object, fields).map(|id| (id, true)),
            [id] => {
                let mut changes = fields.clone();
                changes.retain(|k, _| !k.eq_ignore_ascii_case(&key_name));
                self.update(object, id, &changes).map(|()| (id.clone(), false))
            }
            _ => Err(err(
                "DUPLICATE_EXTERNAL_ID",
                format!("{key_name}: more than one record found for external id field: {key_value}"),
            )),
        }
    }

    /// Deletes a record.
    pub fn delete(&mut self, object: &str, id: &str) -> Result<(), SfError> {
        let object = self.schema(object)?.name;
        let Some(existing) = self.find(object, id).cloned() else {
            return Err(err(
                "ENTITY_IS_DELETED",
                format!("entity is deleted or does not exist: {id}"),
            ));
        };
        if object == "CampaignMemberStatus" {
            if existing.get("IsDefault") == Some(&json!(true)) {
                return Err(err(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "The default member status cannot be deleted",
                ));
            }
            let campaign = existing.get("CampaignId").and_then(Value::as_str).unwrap_or_default();
            let label = existing.get("Label").and_then(Value::as_str).unwrap_or_default();
            let in_use = self.records.get("CampaignMember").is_some_and(|all| {
                all.values().any(|m| {
                    m.get("CampaignId").and_then(Value::as_str) == Some(campaign)
                        && m.get("Status").and_then(Value::as_str) == Some(label)
                })
            });
            if in_use {
                return Err(err(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "A member status in use by campaign members cannot be deleted",
                ));
            }
        }
        self.indexes.remove(object, id, &existing);
        if let Some(all) = self.records.get_mut(object) {
            all.remove(id);
        }
        Ok(())
    }
}
