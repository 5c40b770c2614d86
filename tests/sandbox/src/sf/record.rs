//! A record held compactly: its fields in a vector sorted by name, each name shared by every
//! record that has the field. A million people and their members are held once each, at about a
//! third of what a `serde_json::Map` per record takes (a B-tree node of eleven slots, and a
//! `String` allocation for every field name of every record).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// A field name, shared.
pub type FieldName = Arc<str>;

/// The one copy of `name` every record shares.
fn intern(name: &str) -> FieldName {
    static NAMES: OnceLock<Mutex<HashSet<FieldName>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(shared) = names.get(name) {
        return Arc::clone(shared);
    }
    let shared: FieldName = Arc::from(name);
    names.insert(Arc::clone(&shared));
    shared
}

/// Field → value, ordered by field name as a `serde_json::Map` orders them.
#[derive(Clone, Default, PartialEq)]
pub struct Record {
    fields: Vec<(FieldName, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Record {
        Record::default()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.fields.binary_search_by(|(field, _)| field.as_ref().cmp(name))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|at| &self.fields[at].1)
    }

    /// Whether the record has `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name`; the value it had.
    pub fn insert(&mut self, name: impl AsRef<str>, value: Value) -> Option<Value> {
        let name = name.as_ref();
        match self.position(name) {
            Ok(at) => Some(std::mem::replace(&mut self.fields[at].1, value)),
            Err(at) => {
                self.fields.insert(at, (intern(name), value));
                None
            }
        }
    }

    /// The value of `name`, set to `value` first if it has none.
    pub fn or_insert(&mut self, name: &str, value: Value) -> &mut Value {
        let at = match self.position(name) {
            Ok(at) => at,
            Err(at) => {
                self.fields.insert(at, (intern(name), value));
                at
            }
        };
        &mut self.fields[at].1
    }

    /// Removes `name`; the value it had.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.position(name).ok().map(|at| self.fields.remove(at).1)
    }

    /// Keeps the fields `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.fields.retain_mut(|(name, value)| keep(name, value));
    }

    /// Fields and values, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(name, value)| (name.as_ref(), value))
    }

    /// Field names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(name, _)| name.as_ref())
    }

    /// Gives back the room a record grown field by field keeps (up to half of it): a stored
    /// record holds what it has.
    pub fn shrink_to_fit(&mut self) {
        self.fields.shrink_to_fit();
    }

    /// As a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl std::ops::Index<&str> for Record {
    type Output = Value;

    /// The value of a field, `null` when it has none (as indexing a JSON value reads).
    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

impl<'a> IntoIterator for &'a Record {
    type Item = (&'a str, &'a Value);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (FieldName, Value)>, fn(&'a (FieldName, Value)) -> (&'a str, &'a Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter().map(|(name, value)| (name.as_ref(), value))
    }
}

impl<K: AsRef<str>> FromIterator<(K, Value)> for Record {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(pairs: I) -> Record {
        let mut record = Record::new();
        for (name, value) in pairs {
            record.insert(name, value);
        }
        record
    }
}

impl From<Map<String, Value>> for Record {
    fn from(map: Map<String, Value>) -> Record {
        let mut fields: Vec<(FieldName, Value)> = map.into_iter().map(|(name, value)| (intern(&name), value)).collect();
        // A map's names are distinct; sorted already unless serde_json keeps insertion order.
        fields.sort_by(|(a, _), (b, _)| a.cmp(b));
        Record { fields }
    }
}

impl From<&Map<String, Value>> for Record {
    fn from(map: &Map<String, Value>) -> Record {
        Record::from(map.clone())
    }
}

impl From<Record> for Value {
    fn from(record: Record) -> Value {
        Value::Object(record.to_map())
    }
}

impl From<&Record> for Value {
    fn from(record: &Record) -> Value {
        Value::Object(record.to_map())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_record_orders_reads_and_writes_its_fields_as_a_json_map_does() {
        let mut record = Record::new();
        let mut map = Map::new();
        for (name, value) in [
            ("Status", "Sent"),
            ("Id", "00v1"),
            ("CampaignId", "7011"),
            ("Status", "Opened"),
        ] {
            assert_eq!(
                record.insert(name, json!(value)),
                map.insert(name.to_owned(), json!(value))
            );
        }
        assert_eq!(Value::from(&record), Value::Object(map.clone()));
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert_eq!(record.get("Status"), Some(&json!("Opened")));
        assert_eq!(record.or_insert("LeadId", json!("00Q1")), &json!("00Q1"));
        assert_eq!(record.or_insert("LeadId", json!("00Q2")), &json!("00Q1"));
        assert_eq!(record.remove("Id"), Some(json!("00v1")));
        assert!(!record.contains_key("Id"));
        record.retain(|name, _| name != "Status");
        assert_eq!(record.keys().collect::<Vec<_>>(), ["CampaignId", "LeadId"]);
        assert_eq!(Record::from(map.clone()).to_map(), map);
    }

    #[test]
    fn records_share_one_copy_of_each_field_name() {
        let a: Record = [("Email", json!("a@example.com"))].into_iter().collect();
        let b: Record = [("Email".to_owned(), json!("b@example.com"))].into_iter().collect();
        assert!(Arc::ptr_eq(&a.fields[0].0, &b.fields[0].0));
    }
}
