//! The Salesforce half of the sandbox, in one folder: the org (records, the rules Salesforce
//! enforces on them, collections) in this module and `rules`, `storage` and `query`;
//! the objects' [`schema`]; the [`soql`] parser; Bulk API 2.0 ingest in [`bulk`]; and the REST
//! API over HTTP in [`http`] (OAuth, data, limits).

pub mod bulk;
pub mod http;
mod query;
pub mod record;
mod rules;
pub mod schema;
pub mod soql;
mod storage;

use rules::is_derived;
use storage::Indexes;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::scenario::SfOrg;
use crate::sf::schema::{Access, FieldType, ObjectSchema, schemas, stock_statuses};

/// Salesforce's default limit on the length of a SOQL statement.
pub const MAX_SOQL_CHARS: usize = 100_000;

pub use record::Record;

/// The org's scenario records, taken out of it as the stand-in holds them (each JSON map
/// converted as it goes, so the two forms of a million people are never held at once).
pub fn take_records(org: &mut SfOrg) -> BTreeMap<String, Vec<Record>> {
    std::mem::take(&mut org.records)
        .into_iter()
        .map(|(object, rows)| (object, rows.into_iter().map(Record::from).collect()))
        .collect()
}

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

/// One processed CSV row's outcome: `Ok((id, created))` or the error. Its values are the
/// upload's row of the same position (read again from `data` when results are asked for: a
/// million-row job keeps its CSV once, not a copy of every value).
///
/// Boxed: a million-row job keeps one outcome a row, mostly a short id.
pub type RowResult = Result<(Box<str>, bool), Box<SfError>>;

/// Records per object, as saved for an all-or-none rollback.
pub type Snapshot = BTreeMap<String, BTreeMap<String, Record>>;

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
    /// Open, UploadComplete, InProgress, JobComplete, Failed, Aborted.
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
    /// State reads left that still answer `InProgress`.
    pub in_progress_polls: u32,
    /// Why a `Failed` job failed.
    pub error_message: Option<String>,
    /// Rows processed and failed (kept when the rows are released).
    pub counts: (usize, usize),
    /// Whether its rows and outcomes were let go (see [`bulk::JOBS_WITH_ROWS`]).
    pub rows_released: bool,
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
    /// Authorization codes handed out by the console's sign-in, not yet exchanged.
    pub auth_codes: HashMap<String, http::AuthCode>,
    /// Access tokens of signed-in console users → (user Id, scopes granted).
    pub user_tokens: HashMap<String, (String, String)>,
    /// Bulk jobs.
    pub jobs: BTreeMap<String, BulkJob>,
    /// Look-ups by email, as a real org's indexes answer them.
    indexes: Indexes,
    next_id: u64,
}

impl SfWorld {
    /// Loads an org from the scenario.
    pub fn new(org: &SfOrg) -> Result<SfWorld, String> {
        SfWorld::from_org(org.clone())
    }

    /// [`SfWorld::new`], taking the org: its records move into the world rather than being
    /// copied (a million people are held once).
    pub fn from_org(mut org: SfOrg) -> Result<SfWorld, String> {
        let records = take_records(&mut org);
        SfWorld::from_records(org, records)
    }

    /// [`SfWorld::from_org`] with the org's records given apart, as the stand-in holds them.
    pub fn from_records(org: SfOrg, scenario_records: BTreeMap<String, Vec<Record>>) -> Result<SfWorld, String> {
        let schemas = schemas(&org.custom_fields);
        let mut world = SfWorld {
            api_used: org.api_used,
            // The org's settings; its records live in `records`, once.
            org,
            schemas,
            records: BTreeMap::new(),
            tokens: HashMap::new(),
            cursors: HashMap::new(),
            auth_codes: HashMap::new(),
            user_tokens: HashMap::new(),
            jobs: BTreeMap::new(),
            indexes: Indexes::default(),
            next_id: 1,
        };
        for name in world.schemas.keys() {
            world.records.insert(name.clone(), BTreeMap::new());
        }
        // Records load as-is (they are the org's existing data); Ids are kept or assigned.
        let now = Value::String(format_datetime(Utc::now()));
        for (object, rows) in scenario_records {
            let schema = world
                .schemas
                .get(&object)
                .cloned()
                .ok_or_else(|| format!("unknown object {object} in scenario"))?;
            let prefix = schema.prefix;
            for mut record in rows {
                let canonical = |key: &str| {
                    schema
                        .field(key)
                        .map(|f| f.name.as_str())
                        .ok_or_else(|| format!("unknown field {object}.{key}"))
                };
                if record.keys().any(|key| canonical(key) != Ok(key)) {
                    let mut renamed = Record::new();
                    for (key, value) in &record {
                        renamed.insert(canonical(key)?, value.clone());
                    }
                    record = renamed;
                }
                let id = match record.get("Id").and_then(Value::as_str) {
                    Some(id) => id.to_owned(),
                    None => {
                        let id = world.new_id(prefix);
                        record.insert("Id", Value::String(id.clone()));
                        id
                    }
                };
                record.or_insert("LastModifiedDate", now.clone());
                record.or_insert("CreatedDate", now.clone());
                world.default_booleans(&object, &mut record);
                record.shrink_to_fit();
                world.records.entry(object.clone()).or_default().insert(id, record);
            }
        }
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
        self.records.clone()
    }

    /// Puts a snapshot back.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.records = snapshot;
        self.indexes = Indexes::rebuild(&self.records);
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

    /// What the older API guides say of a member Status that is not one of its campaign's
    /// labels: the campaign's default status is used. Applied when the scenario asks for it
    /// (`unknown_status_gets_default`); otherwise the write is refused as a restricted picklist.
    /// `id`: the member's, for an update (its campaign is the stored member's).
    pub fn unknown_status_to_default(&self, object: &str, id: Option<&str>, record: &mut Record) {
        if !object.eq_ignore_ascii_case("CampaignMember") {
            return;
        }
        let Some(status) = record.get("Status").and_then(Value::as_str) else {
            return;
        };
        let campaign = record
            .get("CampaignId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let existing = self.find("CampaignMember", id?)?;
                existing.get("CampaignId").and_then(Value::as_str).map(str::to_owned)
            })
            .unwrap_or_default();
        let statuses = self.statuses_of(&campaign);
        if statuses
            .iter()
            .any(|s| s.get("Label").and_then(Value::as_str) == Some(status))
        {
            return;
        }
        if let Some(label) = statuses
            .iter()
            .find(|s| s.get("IsDefault") == Some(&Value::Bool(true)))
            .and_then(|s| s.get("Label").cloned())
        {
            record.insert("Status", label);
        }
    }

    fn find(&self, object: &str, id: &str) -> Option<&Record> {
        self.records.get(object).and_then(|r| r.get(id))
    }

    /// The object an Id belongs to, by prefix.
    fn object_of(&self, id: &str) -> Option<&'static str> {
        self.schemas.values().find(|s| id.starts_with(s.prefix)).map(|s| s.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::generate::{Shape, generate};
    use serde_json::json;

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
        change.insert("Email", json!("renamed@example.com"));
        sf.update("Contact", &id, &change).unwrap();
        assert!(by(&sf, &old).is_empty());
        assert_eq!(by(&sf, "renamed@example.com"), std::slice::from_ref(&id));
        assert_eq!(
            members_of(&sf, "renamed@example.com"),
            member_before,
            "members follow their person"
        );

        let mut new = Record::new();
        new.insert("LastName", json!("New"));
        new.insert("Email", json!("renamed@example.com"));
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
