//! The Salesforce org: records, the rules Salesforce enforces on them, SOQL, collections and
//! Bulk API 2.0 ingest. HTTP lives in `sf_http.rs`; this is the data side.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::scenario::SfOrg;
use crate::sf_schema::{Access, FieldType, ObjectSchema, schemas, stock_statuses};
use crate::soql::{self, Condition, Literal, Op, Query};

/// Salesforce's default limit on the length of a SOQL statement.
pub const MAX_SOQL_CHARS: usize = 100_000;

/// A record: field → value, canonical field names, with `Id`.
pub type Record = Map<String, Value>;

/// A Salesforce error: `errorCode`/`statusCode`, message, fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SfError {
    /// The code.
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Fields concerned.
    pub fields: Vec<String>,
}

fn err(code: &'static str, message: impl Into<String>) -> SfError {
    SfError {
        code,
        message: message.into(),
        fields: Vec::new(),
    }
}

fn field_err(code: &'static str, message: impl Into<String>, field: &str) -> SfError {
    SfError {
        code,
        message: message.into(),
        fields: vec![field.to_owned()],
    }
}

/// Parses the date-time forms Salesforce accepts.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Salesforce's output form: `2026-03-05T10:00:00.000+0000`.
pub fn format_datetime(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true).replace('Z', "+0000")
}

/// One processed CSV row: its (column, value) pairs and `Ok((id, created))` or the error.
pub type RowResult = (Vec<(String, String)>, Result<(String, bool), SfError>);

/// Records per object and the member keys, as saved for an all-or-none rollback.
pub type Snapshot = (BTreeMap<String, BTreeMap<String, Record>>, HashSet<(String, String)>);

/// A Bulk API 2.0 ingest job.
#[derive(Debug, Clone)]
pub struct BulkJob {
    /// Job id.
    pub id: String,
    /// Object.
    pub object: String,
    /// insert, update, upsert, delete.
    pub operation: String,
    /// Upsert key.
    pub external_id_field: Option<String>,
    /// Open, UploadComplete, JobComplete, Failed, Aborted.
    pub state: String,
    /// The uploaded CSV.
    pub data: String,
    /// Delimiter.
    pub delimiter: u8,
    /// Created.
    pub created: DateTime<Utc>,
    /// Results: (row fields, Ok(id, created) | Err(error)).
    pub results: Vec<RowResult>,
    /// Header of the uploaded CSV.
    pub header: Vec<String>,
}

/// The org's state.
#[derive(Debug)]
pub struct SfWorld {
    /// Scenario settings of the org.
    pub org: SfOrg,
    /// Object schemas.
    pub schemas: BTreeMap<String, ObjectSchema>,
    /// Records per object, by Id.
    pub records: BTreeMap<String, BTreeMap<String, Record>>,
    /// API calls spent.
    pub api_used: u64,
    /// Access tokens → calls made with them.
    pub tokens: HashMap<String, u64>,
    /// Query cursors: id → remaining rows.
    pub cursors: HashMap<String, Vec<Value>>,
    /// Bulk jobs.
    pub jobs: BTreeMap<String, BulkJob>,
    /// (campaign, person) of every member: the uniqueness rule without a scan.
    member_keys: HashSet<(String, String)>,
    /// Look-ups by email, as a real org's indexes answer them.
    indexes: Indexes,
    next_id: u64,
}

/// The stand-in's indexes, kept in step with every write: Leads and Contacts by lowercase
/// Email, and members by person. Queries that ask for emails positively read only the records
/// these name (and still check the whole condition); everything else scans.
#[derive(Debug, Clone, Default)]
struct Indexes {
    people_by_email: HashMap<String, BTreeSet<(String, String)>>,
    members_by_person: HashMap<String, BTreeSet<String>>,
}

fn person_of(record: &Record) -> Option<&str> {
    record
        .get("ContactId")
        .and_then(Value::as_str)
        .or_else(|| record.get("LeadId").and_then(Value::as_str))
}

impl Indexes {
    fn add(&mut self, object: &str, id: &str, record: &Record) {
        match object {
            "Lead" | "Contact" => {
                if let Some(email) = record.get("Email").and_then(Value::as_str) {
                    self.people_by_email
                        .entry(email.to_lowercase())
                        .or_default()
                        .insert((object.to_owned(), id.to_owned()));
                }
            }
            "CampaignMember" => {
                if let Some(person) = person_of(record) {
                    self.members_by_person
                        .entry(person.to_owned())
                        .or_default()
                        .insert(id.to_owned());
                }
            }
            _ => {}
        }
    }

    fn remove(&mut self, object: &str, id: &str, record: &Record) {
        match object {
            "Lead" | "Contact" => {
                if let Some(email) = record.get("Email").and_then(Value::as_str)
                    && let Some(ids) = self.people_by_email.get_mut(&email.to_lowercase())
                {
                    ids.remove(&(object.to_owned(), id.to_owned()));
                }
            }
            "CampaignMember" => {
                if let Some(person) = person_of(record)
                    && let Some(ids) = self.members_by_person.get_mut(person)
                {
                    ids.remove(id);
                }
            }
            _ => {}
        }
    }

    fn rebuild(records: &BTreeMap<String, BTreeMap<String, Record>>) -> Indexes {
        let mut indexes = Indexes::default();
        for (object, all) in records {
            for (id, record) in all {
                indexes.add(object, id, record);
            }
        }
        indexes
    }
}

/// The (campaign, person) key of a member record.
fn member_key(record: &Record) -> Option<(String, String)> {
    let campaign = record.get("CampaignId").and_then(Value::as_str)?;
    let person = record
        .get("ContactId")
        .and_then(Value::as_str)
        .or_else(|| record.get("LeadId").and_then(Value::as_str))?;
    Some((campaign.to_owned(), person.to_owned()))
}

/// Fields Salesforce computes on read; a condition on them needs the materialised view.
fn is_derived(object: &str, field: &str) -> bool {
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
    /// Loads an org from the scenario.
    pub fn new(org: &SfOrg) -> Result<SfWorld, String> {
        let schemas = schemas(&org.custom_fields);
        let mut world = SfWorld {
            org: org.clone(),
            schemas,
            records: BTreeMap::new(),
            api_used: org.api_used,
            tokens: HashMap::new(),
            cursors: HashMap::new(),
            jobs: BTreeMap::new(),
            indexes: Indexes::default(),
            member_keys: HashSet::new(),
            next_id: 1,
        };
        for name in world.schemas.keys() {
            world.records.insert(name.clone(), BTreeMap::new());
        }
        // Records load as-is (they are the org's existing data); Ids are kept or assigned.
        for (object, rows) in &org.records {
            let schema = world
                .schemas
                .get(object)
                .cloned()
                .ok_or_else(|| format!("unknown object {object} in scenario"))?;
            let prefix = schema.prefix;
            for row in rows {
                let mut record = Record::new();
                for (key, value) in row {
                    let canonical = schema
                        .field(key)
                        .map(|f| f.name.clone())
                        .ok_or_else(|| format!("unknown field {object}.{key}"))?;
                    record.insert(canonical, value.clone());
                }
                let id = match record.get("Id").and_then(Value::as_str) {
                    Some(id) => id.to_owned(),
                    None => {
                        let id = world.new_id(prefix);
                        record.insert("Id".into(), Value::String(id.clone()));
                        id
                    }
                };
                let now = Value::String(format_datetime(Utc::now()));
                record.entry("LastModifiedDate").or_insert(now.clone());
                record.entry("CreatedDate").or_insert(now);
                world.default_booleans(object, &mut record);
                world.records.entry(object.clone()).or_default().insert(id, record);
            }
        }
        world.member_keys = world
            .records
            .get("CampaignMember")
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(member_key)
            .collect();
        // Campaigns in the scenario without statuses get the stock pair, as in a real org.
        let campaign_ids: Vec<String> = world
            .records
            .get("Campaign")
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        for campaign in campaign_ids {
            if world.statuses_of(&campaign).is_empty() {
                world.add_stock_statuses(&campaign);
            }
        }
        world.indexes = Indexes::rebuild(&world.records);
        Ok(world)
    }

    /// The records as they are now, for an all-or-none rollback.
    pub fn snapshot(&self) -> Snapshot {
        (self.records.clone(), self.member_keys.clone())
    }

    /// Puts a snapshot back.
    pub fn restore(&mut self, snapshot: Snapshot) {
        (self.records, self.member_keys) = snapshot;
        self.indexes = Indexes::rebuild(&self.records);
    }

    /// Salesforce checkboxes are never null: absent booleans are stored as false.
    fn default_booleans(&self, object: &str, record: &mut Record) {
        if let Some(schema) = self.schemas.get(object) {
            for field in schema.fields.values().filter(|f| f.field_type == FieldType::Boolean) {
                if record.get(&field.name).is_none_or(Value::is_null) {
                    record.insert(field.name.clone(), json!(false));
                }
            }
        }
    }

    /// A new 18-character Id with the object's prefix, never one a scenario record already has.
    fn new_id(&mut self, prefix: &str) -> String {
        loop {
            let id = format!("{prefix}9SB{:012}", self.next_id);
            self.next_id += 1;
            let taken = self.records.values().any(|records| records.contains_key(&id));
            if !taken {
                return id;
            }
        }
    }

    fn schema(&self, object: &str) -> Result<&ObjectSchema, SfError> {
        self.schemas
            .values()
            .find(|s| s.name.eq_ignore_ascii_case(object))
            .ok_or_else(|| {
                err(
                    "NOT_FOUND",
                    format!("The requested resource does not exist: sObject type '{object}' is not supported."),
                )
            })
    }

    /// The statuses of a campaign.
    pub fn statuses_of(&self, campaign_id: &str) -> Vec<&Record> {
        self.records
            .get("CampaignMemberStatus")
            .map(|all| {
                all.values()
                    .filter(|s| s.get("CampaignId").and_then(Value::as_str) == Some(campaign_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn add_stock_statuses(&mut self, campaign_id: &str) {
        let (sent, responded) = stock_statuses(&self.org.language);
        for (label, responded_flag, default, order) in [(sent, false, true, 1), (responded, true, false, 2)] {
            let id = self.new_id("01Y");
            let mut record = Record::new();
            record.insert("Id".into(), json!(id));
            record.insert("CampaignId".into(), json!(campaign_id));
            record.insert("Label".into(), json!(label));
            record.insert("HasResponded".into(), json!(responded_flag));
            record.insert("IsDefault".into(), json!(default));
            record.insert("SortOrder".into(), json!(order));
            self.records
                .entry("CampaignMemberStatus".into())
                .or_default()
                .insert(id, record);
        }
    }

    fn find(&self, object: &str, id: &str) -> Option<&Record> {
        self.records.get(object).and_then(|r| r.get(id))
    }

    /// The object an Id belongs to, by prefix.
    fn object_of(&self, id: &str) -> Option<&'static str> {
        self.schemas.values().find(|s| id.starts_with(s.prefix)).map(|s| s.name)
    }

    /// Converts and checks an incoming value for a field.
    fn coerce(&self, object: &str, field: &str, field_type: FieldType, value: &Value) -> Result<Value, SfError> {
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
    fn check_fields(&self, object: &str, fields: &Record, creating: bool) -> Result<Record, SfError> {
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

    fn check_unique_external_ids(&self, object: &str, record: &Record, except: Option<&str>) -> Result<(), SfError> {
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
    fn check_rules(&self, object: &str, merged: &Record, id: Option<&str>) -> Result<(), SfError> {
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
                if id.is_none() && member_key(merged).is_some_and(|key| self.member_keys.contains(&key)) {
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
                    if other.get("Label").and_then(Value::as_str) == Some(label) {
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
                record.insert("Status".into(), default.get("Label").cloned().unwrap_or(Value::Null));
            }
        }
        self.check_rules(object, &record, None)?;
        let prefix = self.schema(object)?.prefix;
        let id = self.new_id(prefix);
        let now = json!(format_datetime(Utc::now()));
        record.insert("Id".into(), json!(id));
        record.insert("CreatedDate".into(), now.clone());
        record.insert("LastModifiedDate".into(), now.clone());
        record.insert("SystemModstamp".into(), now);
        self.default_booleans(object, &mut record);
        if object == "CampaignMemberStatus" && record.get("IsDefault") == Some(&json!(true)) {
            let campaign = record
                .get("CampaignId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.clear_default(&campaign);
        }
        if object == "CampaignMember"
            && let Some(key) = member_key(&record)
        {
            self.member_keys.insert(key);
        }
        self.indexes.add(object, &id, &record);
        self.records
            .entry(object.to_owned())
            .or_default()
            .insert(id.clone(), record);
        if object == "Campaign" {
            self.add_stock_statuses(&id);
        }
        Ok(id)
    }

    fn clear_default(&mut self, campaign: &str) {
        if let Some(all) = self.records.get_mut("CampaignMemberStatus") {
            for status in all.values_mut() {
                if status.get("CampaignId").and_then(Value::as_str) == Some(campaign) {
                    status.insert("IsDefault".into(), json!(false));
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
            merged.insert(key.clone(), value.clone());
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
        merged.insert("LastModifiedDate".into(), now.clone());
        merged.insert("SystemModstamp".into(), now);
        if let Some(old) = self.find(object, id).cloned() {
            self.indexes.remove(object, id, &old);
        }
        self.indexes.add(object, id, &merged);
        self.records
            .entry(object.to_owned())
            .or_default()
            .insert(id.to_owned(), merged);
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
        if let Some(key) = member_key(&existing).filter(|_| object == "CampaignMember") {
            self.member_keys.remove(&key);
        }
        self.indexes.remove(object, id, &existing);
        if let Some(all) = self.records.get_mut(object) {
            all.remove(id);
        }
        Ok(())
    }

    /// A record with its derived, read-only fields filled in (what reads return).
    /// The Ids a query can be answered from without a scan: a condition that asks for Email
    /// only positively, on Leads, Contacts or members. `None`: scan.
    fn indexed(&self, object: &str, query: &Query) -> Option<BTreeSet<String>> {
        let condition = query.condition.as_ref()?;
        let mut wanted = HashSet::new();
        if !positive_text_values(condition, "Email", &mut wanted) || wanted.is_empty() {
            return None;
        }
        let people = wanted
            .iter()
            .filter_map(|e| self.indexes.people_by_email.get(e))
            .flatten();
        match object {
            "Lead" | "Contact" => Some(
                people
                    .filter(|(kind, _)| kind == object)
                    .map(|(_, id)| id.clone())
                    .collect(),
            ),
            "CampaignMember" => Some(
                people
                    .filter_map(|(_, id)| self.indexes.members_by_person.get(id))
                    .flatten()
                    .cloned()
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The named fields of a record as [`SfWorld::view`] would show them, derived ones
    /// included, without building the whole view.
    fn probe(&self, object: &str, record: &Record, fields: &[&str]) -> Record {
        let mut probe = Record::new();
        let person = || {
            record
                .get("ContactId")
                .and_then(Value::as_str)
                .map(|id| ("Contact", id))
                .or_else(|| record.get("LeadId").and_then(Value::as_str).map(|id| ("Lead", id)))
        };
        for field in fields {
            let lower = field.to_ascii_lowercase();
            let value = match (object, lower.as_str()) {
                ("CampaignMember", "email" | "hasoptedoutofemail") => {
                    person().and_then(|(kind, id)| self.find(kind, id)).and_then(|p| {
                        p.get(if lower == "email" {
                            "Email"
                        } else {
                            "HasOptedOutOfEmail"
                        })
                        .cloned()
                    })
                }
                ("CampaignMember", "leadorcontactid") => person().map(|(_, id)| json!(id)),
                _ if is_derived(object, field) => self.view(object, record).get(*field).cloned(),
                _ => record
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v.clone()),
            };
            if let Some(value) = value {
                probe.insert((*field).to_owned(), value);
            }
        }
        probe
    }

    pub fn view(&self, object: &str, record: &Record) -> Record {
        let mut view = record.clone();
        // Salesforce checkboxes are never null: an absent boolean reads as false.
        if let Some(schema) = self.schemas.get(object) {
            for field in schema.fields.values().filter(|f| f.field_type == FieldType::Boolean) {
                view.entry(field.name.clone()).or_insert(json!(false));
            }
        }
        let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
        match object {
            "CampaignMember" => {
                let campaign = record.get("CampaignId").and_then(Value::as_str).unwrap_or_default();
                let status = record.get("Status").and_then(Value::as_str);
                let responded = self.statuses_of(campaign).iter().any(|s| {
                    s.get("Label").and_then(Value::as_str) == status && s.get("HasResponded") == Some(&json!(true))
                });
                view.insert("HasResponded".into(), json!(responded));
                let person = record
                    .get("ContactId")
                    .and_then(Value::as_str)
                    .map(|id| ("Contact", id))
                    .or_else(|| record.get("LeadId").and_then(Value::as_str).map(|id| ("Lead", id)));
                if let Some((kind, person_id)) = person {
                    view.insert("LeadOrContactId".into(), json!(person_id));
                    if let Some(p) = self.find(kind, person_id) {
                        view.insert("Email".into(), p.get("Email").cloned().unwrap_or(Value::Null));
                        view.insert(
                            "HasOptedOutOfEmail".into(),
                            p.get("HasOptedOutOfEmail").cloned().unwrap_or(json!(false)),
                        );
                    }
                }
            }
            "Campaign" => {
                let members: Vec<Record> = self
                    .records
                    .get("CampaignMember")
                    .map(|all| {
                        all.values()
                            .filter(|m| m.get("CampaignId").and_then(Value::as_str) == Some(id))
                            .map(|m| self.view("CampaignMember", m))
                            .collect()
                    })
                    .unwrap_or_default();
                let count = |pred: &dyn Fn(&Record) -> bool| json!(members.iter().filter(|m| pred(m)).count() as f64);
                view.insert(
                    "NumberOfLeads".into(),
                    count(&|m| {
                        m.get("LeadId").is_some_and(|v| !v.is_null()) && m.get("ContactId").is_none_or(Value::is_null)
                    }),
                );
                view.insert(
                    "NumberOfContacts".into(),
                    count(&|m| m.get("ContactId").is_some_and(|v| !v.is_null())),
                );
                view.insert(
                    "NumberOfResponses".into(),
                    count(&|m| m.get("HasResponded") == Some(&json!(true))),
                );
            }
            _ => {}
        }
        view
    }

    fn resolve(&self, record: &Record, path: &str) -> Value {
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or_default();
        let Some(second) = parts.next() else {
            return record
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(first))
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null);
        };
        // Parent relationship: `Campaign.Name` via `CampaignId`.
        let Some(parent_id) = record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&format!("{first}Id")))
            .and_then(|(_, v)| v.as_str())
        else {
            return Value::Null;
        };
        let Some(parent_object) = self.object_of(parent_id) else {
            return Value::Null;
        };
        match self.find(parent_object, parent_id) {
            Some(parent) => {
                let parent = self.view(parent_object, parent);
                let rest: Vec<&str> = std::iter::once(second).chain(parts).collect();
                self.resolve(&parent, &rest.join("."))
            }
            None => Value::Null,
        }
    }

    fn check_path(&self, object: &str, path: &str) -> Result<(), SfError> {
        let schema = self.schema(object)?;
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or_default();
        match parts.next() {
            None => schema.field(first).map(|_| ()).ok_or_else(|| {
                err("INVALID_FIELD", format!("No such column '{first}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", schema.name))
            }),
            Some(rest_first) => {
                let reference = schema.field(&format!("{first}Id")).and_then(|f| match f.field_type {
                    FieldType::Reference(target) => Some(target),
                    _ => None,
                });
                let Some(target) = reference else {
                    return Err(err("INVALID_FIELD", format!("Didn't understand relationship '{first}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name.")));
                };
                let rest: Vec<&str> = std::iter::once(rest_first).chain(parts).collect();
                self.check_path(target, &rest.join("."))
            }
        }
    }

    fn matches(&self, record: &Record, condition: &Condition, sets: &InSets) -> bool {
        match condition {
            Condition::And(a, b) => self.matches(record, a, sets) && self.matches(record, b, sets),
            Condition::Or(a, b) => self.matches(record, a, sets) || self.matches(record, b, sets),
            Condition::Not(a) => !self.matches(record, a, sets),
            Condition::Compare(field, op, literal) => {
                let value = self.resolve(record, field);
                let ordering = soql::compare(&value, literal);
                match op {
                    Op::Eq => ordering == Some(std::cmp::Ordering::Equal),
                    Op::Ne => ordering != Some(std::cmp::Ordering::Equal),
                    Op::Lt => ordering == Some(std::cmp::Ordering::Less),
                    Op::Le => matches!(ordering, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
                    Op::Gt => ordering == Some(std::cmp::Ordering::Greater),
                    Op::Ge => matches!(ordering, Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
                }
            }
            Condition::In(field, values, negated) => {
                let value = self.resolve(record, field);
                let found = match (sets.get(&std::ptr::from_ref(condition)), &value) {
                    (Some(set), Value::String(text)) => set.contains(&text.to_lowercase()),
                    // A list of texts holds no null.
                    (Some(_), Value::Null) => false,
                    _ => values
                        .iter()
                        .any(|v| soql::compare(&value, v) == Some(std::cmp::Ordering::Equal)),
                };
                found != *negated
            }
            Condition::Like(field, pattern) => self
                .resolve(record, field)
                .as_str()
                .is_some_and(|v| soql::like(v, pattern)),
        }
    }

    fn condition_paths<'a>(condition: &'a Condition, out: &mut Vec<&'a str>) {
        match condition {
            Condition::And(a, b) | Condition::Or(a, b) => {
                Self::condition_paths(a, out);
                Self::condition_paths(b, out);
            }
            Condition::Not(a) => Self::condition_paths(a, out),
            Condition::Compare(f, _, _) | Condition::In(f, _, _) | Condition::Like(f, _) => out.push(f),
        }
    }

    /// Runs a query; returns every matching row shaped as the REST API returns it. Statements
    /// over 100,000 characters are refused, as Salesforce does.
    pub fn query(&self, soql_text: &str, version: &str) -> Result<Vec<Value>, SfError> {
        if soql_text.chars().count() > MAX_SOQL_CHARS {
            return Err(err(
                "MALFORMED_QUERY",
                format!("SOQL statements cannot exceed {MAX_SOQL_CHARS} characters"),
            ));
        }
        let query: Query = soql::parse(soql_text).map_err(|e| err("MALFORMED_QUERY", e.0))?;
        let schema = self.schema(&query.object)?;
        let object = schema.name;
        let mut paths: Vec<&str> = query.fields.iter().map(String::as_str).collect();
        if let Some(condition) = &query.condition {
            Self::condition_paths(condition, &mut paths);
        }
        paths.extend(query.order_by.iter().map(|(f, _)| f.as_str()));
        for path in paths {
            self.check_path(object, path)?;
        }
        if let Some(Condition::In(_, values, _)) = &query.condition
            && values
                .iter()
                .any(|v| matches!(v, Literal::Text(t) if t.chars().count() > 4000))
        {
            return Err(err(
                "MALFORMED_QUERY",
                "String literal too long (4000 characters at most)",
            ));
        }
        let mut sets = InSets::new();
        if let Some(condition) = &query.condition {
            prepare_in_sets(condition, &mut sets);
        }
        let mut condition_paths = Vec::new();
        if let Some(condition) = &query.condition {
            Self::condition_paths(condition, &mut condition_paths);
        }
        // Filter on the stored record when the condition names no derived field: only the
        // matches are materialised. When it names derived fields but no relationship path, a
        // probe holding just the condition's fields stands in for the whole view (a real org
        // uses indexes; building a full view of every member per query would make the
        // stand-in, not the product, the slow part of a benchmark).
        let needs_view = condition_paths.iter().any(|p| is_derived(object, p));
        let probe_fields: Option<Vec<&str>> =
            (needs_view && condition_paths.iter().all(|p| !p.contains('.'))).then(|| condition_paths.clone());
        let mut rows: Vec<Record> = self
            .records
            .get(object)
            .map(|all| {
                let candidates: Box<dyn Iterator<Item = &Record>> = match self.indexed(object, &query) {
                    Some(ids) => Box::new(ids.into_iter().filter_map(|id| all.get(&id))),
                    None => Box::new(all.values()),
                };
                candidates
                    .filter_map(|r| {
                        if let Some(fields) = &probe_fields {
                            let probe = self.probe(object, r, fields);
                            return query
                                .condition
                                .as_ref()
                                .is_none_or(|c| self.matches(&probe, c, &sets))
                                .then(|| self.view(object, r));
                        }
                        if needs_view {
                            let view = self.view(object, r);
                            query
                                .condition
                                .as_ref()
                                .is_none_or(|c| self.matches(&view, c, &sets))
                                .then_some(view)
                        } else {
                            query
                                .condition
                                .as_ref()
                                .is_none_or(|c| self.matches(r, c, &sets))
                                .then(|| self.view(object, r))
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !query.order_by.is_empty() {
            rows.sort_by(|a, b| {
                for (field, ascending) in &query.order_by {
                    let (x, y) = (self.resolve(a, field), self.resolve(b, field));
                    let ordering = compare_values(&x, &y);
                    let ordering = if *ascending { ordering } else { ordering.reverse() };
                    if ordering != std::cmp::Ordering::Equal {
                        return ordering;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        if let Some(limit) = query.limit {
            rows.truncate(limit);
        }
        Ok(rows
            .iter()
            .map(|row| self.shape(object, row, &query.fields, version))
            .collect())
    }

    fn shape(&self, object: &str, row: &Record, fields: &[String], version: &str) -> Value {
        let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
        let mut out = Map::new();
        out.insert(
            "attributes".into(),
            json!({"type": object, "url": format!("/services/data/v{version}/sobjects/{object}/{id}")}),
        );
        let schema = self.schemas.get(object);
        for path in fields {
            let mut parts = path.splitn(2, '.');
            let first = parts.next().unwrap_or_default();
            match parts.next() {
                None => {
                    let name = schema
                        .and_then(|s| s.field(first))
                        .map(|f| f.name.clone())
                        .unwrap_or_else(|| first.to_owned());
                    out.insert(name.clone(), row.get(&name).cloned().unwrap_or(Value::Null));
                }
                Some(rest) => {
                    let parent_id = row.get(&format!("{first}Id")).and_then(Value::as_str);
                    let parent = parent_id.and_then(|pid| {
                        self.object_of(pid)
                            .and_then(|o| self.find(o, pid).map(|p| (o, self.view(o, p))))
                    });
                    let entry = out.entry(first.to_owned()).or_insert(Value::Null);
                    if let Some((parent_object, parent)) = parent {
                        let shaped = self.shape(parent_object, &parent, &[rest.to_owned()], version);
                        match entry {
                            Value::Object(existing) => {
                                if let Value::Object(more) = shaped {
                                    existing.extend(more);
                                }
                            }
                            _ => *entry = shaped,
                        }
                    }
                }
            }
        }
        Value::Object(out)
    }
}

/// Lower-cased text values of each `IN` list, keyed by the condition node.
type InSets = HashMap<*const Condition, HashSet<String>>;

/// The addresses a condition asks for in `field`, when it only ever asks for it positively
/// (`field IN (...)` or `field = '...'`, under AND/OR, never NOT); `None` otherwise.
fn positive_text_values(condition: &Condition, field: &str, out: &mut HashSet<String>) -> bool {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => {
            positive_text_values(a, field, out) && positive_text_values(b, field, out)
        }
        Condition::Not(inner) => !condition_names(inner, field),
        Condition::In(f, values, negated) if f.eq_ignore_ascii_case(field) => {
            if *negated {
                return false;
            }
            for value in values {
                let Literal::Text(text) = value else {
                    return false;
                };
                out.insert(text.to_lowercase());
            }
            true
        }
        Condition::Compare(f, Op::Eq, Literal::Text(t)) if f.eq_ignore_ascii_case(field) => {
            out.insert(t.to_lowercase());
            true
        }
        Condition::Compare(f, _, _) | Condition::Like(f, _) => !f.eq_ignore_ascii_case(field),
        Condition::In(..) => true,
    }
}

fn condition_names(condition: &Condition, field: &str) -> bool {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => condition_names(a, field) || condition_names(b, field),
        Condition::Not(inner) => condition_names(inner, field),
        Condition::Compare(f, _, _) | Condition::In(f, _, _) | Condition::Like(f, _) => f.eq_ignore_ascii_case(field),
    }
}

fn prepare_in_sets(condition: &Condition, sets: &mut InSets) {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => {
            prepare_in_sets(a, sets);
            prepare_in_sets(b, sets);
        }
        Condition::Not(a) => prepare_in_sets(a, sets),
        Condition::In(_, values, _) if values.iter().all(|v| matches!(v, Literal::Text(_))) => {
            let set = values
                .iter()
                .filter_map(|v| {
                    if let Literal::Text(t) = v {
                        Some(t.to_lowercase())
                    } else {
                        None
                    }
                })
                .collect();
            sets.insert(std::ptr::from_ref(condition), set);
        }
        _ => {}
    }
}

fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(std::cmp::Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::generate::{Shape, generate};

    fn ids(rows: &[Value]) -> Vec<String> {
        rows.iter().map(|r| r["Id"].as_str().unwrap().to_owned()).collect()
    }

    /// The email indexes answer exactly what a scan would, after creates, updates and deletes.
    #[test]
    fn indexed_email_queries_follow_every_write() {
        let scenario = generate(&Shape {
            recipients: 50,
            activities: 0,
            in_salesforce: 1.0,
            ..Shape::default()
        });
        let mut sf = SfWorld::new(&scenario.sf).unwrap();
        let contact = sf.records["Contact"].values().next().unwrap().clone();
        let id = contact["Id"].as_str().unwrap().to_owned();
        let old = contact["Email"].as_str().unwrap().to_owned();
        let by = |sf: &SfWorld, email: &str| {
            ids(&sf
                .query(
                    &format!("SELECT Id FROM Contact WHERE Email IN ('{}')", email.to_uppercase()),
                    "66.0",
                )
                .unwrap())
        };
        let members_of = |sf: &SfWorld, email: &str| {
            ids(&sf
                .query(
                    &format!("SELECT Id FROM CampaignMember WHERE Email IN ('{email}')"),
                    "66.0",
                )
                .unwrap())
        };
        assert_eq!(
            by(&sf, &old),
            std::slice::from_ref(&id),
            "case-insensitive, as Salesforce"
        );
        let member_before = members_of(&sf, &old);

        let mut change = Record::new();
        change.insert("Email".into(), json!("renamed@example.com"));
        sf.update("Contact", &id, &change).unwrap();
        assert!(by(&sf, &old).is_empty());
        assert_eq!(by(&sf, "renamed@example.com"), std::slice::from_ref(&id));
        assert_eq!(
            members_of(&sf, "renamed@example.com"),
            member_before,
            "members follow their person"
        );

        let mut new = Record::new();
        new.insert("LastName".into(), json!("New"));
        new.insert("Email".into(), json!("renamed@example.com"));
        let second = sf.create("Contact", &new).unwrap();
        let mut both = vec![id.clone(), second.clone()];
        both.sort();
        assert_eq!(by(&sf, "renamed@example.com"), both);
        sf.delete("Contact", &second).unwrap();
        assert_eq!(by(&sf, "renamed@example.com"), [id]);
        // Not-IN and other shapes still scan, and agree.
        let all = sf.query("SELECT Id FROM Contact", "66.0").unwrap().len();
        let not_in = sf
            .query(
                "SELECT Id FROM Contact WHERE NOT Email IN ('renamed@example.com')",
                "66.0",
            )
            .unwrap()
            .len();
        assert_eq!(not_in, all - 1);
    }
}
