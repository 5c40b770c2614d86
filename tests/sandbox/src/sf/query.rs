//! SOQL over the org's records: the indexes a query can use, relationship paths, conditions,
//! and the rows shaped as the REST API returns them.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::*;
use crate::sf::soql::{self, Condition, Literal, Op, Query};

/// Lower-cased text values of each `IN` list, keyed by the condition node.
type InSets = HashMap<*const Condition, HashSet<String>>;

/// The addresses a condition asks for in `field`, when it only ever asks for it positively
/// (`field IN (...)` or `field = '...'`, under AND/OR, never NOT); `None` otherwise.
pub(super) fn positive_text_values(condition: &Condition, field: &str, out: &mut HashSet<String>) -> bool {
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

pub(super) fn condition_names(condition: &Condition, field: &str) -> bool {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => condition_names(a, field) || condition_names(b, field),
        Condition::Not(inner) => condition_names(inner, field),
        Condition::Compare(f, _, _) | Condition::In(f, _, _) | Condition::Like(f, _) => f.eq_ignore_ascii_case(field),
    }
}

pub(super) fn prepare_in_sets(condition: &Condition, sets: &mut InSets) {
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

pub(super) fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
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

impl SfWorld {
    /// A record with its derived, read-only fields filled in (what reads return).
    /// The Ids a query can be answered from without a scan: a condition that asks for Email
    /// only positively, on Leads, Contacts or members. `None`: scan.
    pub(super) fn indexed(&self, object: &str, query: &Query) -> Option<BTreeSet<String>> {
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
                    .filter(|(kind, _)| *kind == object)
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
    pub(super) fn probe(&self, object: &str, record: &Record, fields: &[&str]) -> Record {
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
                _ if is_derived(object, field) => self.view(object, record).get(field).cloned(),
                _ => record
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v.clone()),
            };
            if let Some(value) = value {
                probe.insert(field, value);
            }
        }
        probe
    }

    pub fn view(&self, object: &str, record: &Record) -> Record {
        self.view_with(object, record, true)
    }

    /// [`SfWorld::view`], with a Campaign's member roll-ups only if `rollups` (they read every
    /// member: a query that selects none of them must not pay for them).
    pub(super) fn view_with(&self, object: &str, record: &Record, rollups: bool) -> Record {
        let mut view = record.clone();
        // Salesforce checkboxes are never null: an absent boolean reads as false.
        if let Some(schema) = self.schemas.get(object) {
            for field in schema.fields.values().filter(|f| f.field_type == FieldType::Boolean) {
                view.or_insert(&field.name, json!(false));
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
                view.insert("HasResponded", json!(responded));
                let person = record
                    .get("ContactId")
                    .and_then(Value::as_str)
                    .map(|id| ("Contact", id))
                    .or_else(|| record.get("LeadId").and_then(Value::as_str).map(|id| ("Lead", id)));
                if let Some((kind, person_id)) = person {
                    view.insert("LeadOrContactId", json!(person_id));
                    if let Some(p) = self.find(kind, person_id) {
                        view.insert("Email", p.get("Email").cloned().unwrap_or(Value::Null));
                        view.insert(
                            "HasOptedOutOfEmail",
                            p.get("HasOptedOutOfEmail").cloned().unwrap_or(json!(false)),
                        );
                    }
                }
            }
            "Campaign" if rollups => {
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
                    "NumberOfLeads",
                    count(&|m| {
                        m.get("LeadId").is_some_and(|v| !v.is_null()) && m.get("ContactId").is_none_or(Value::is_null)
                    }),
                );
                view.insert(
                    "NumberOfContacts",
                    count(&|m| m.get("ContactId").is_some_and(|v| !v.is_null())),
                );
                view.insert(
                    "NumberOfResponses",
                    count(&|m| m.get("HasResponded") == Some(&json!(true))),
                );
            }
            _ => {}
        }
        view
    }

    pub(super) fn resolve(&self, record: &Record, path: &str) -> Value {
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

    pub(super) fn check_path(&self, object: &str, path: &str) -> Result<(), SfError> {
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

    pub(super) fn matches(&self, record: &Record, condition: &Condition, sets: &InSets) -> bool {
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

    pub(super) fn condition_paths<'a>(condition: &'a Condition, out: &mut Vec<&'a str>) {
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
        let rollups = query
            .fields
            .iter()
            .chain(query.order_by.iter().map(|(f, _)| f))
            .any(|f| is_derived(object, f))
            || needs_view;
        let candidates: Box<dyn Iterator<Item = &Record>> = match self.records.get(object) {
            Some(all) => match self.indexed(object, &query) {
                Some(ids) => Box::new(ids.into_iter().filter_map(move |id| all.get(&id))),
                None => Box::new(all.values()),
            },
            None => Box::new(std::iter::empty()),
        };
        let views = candidates.filter_map(|r| {
            if let Some(fields) = &probe_fields {
                let probe = self.probe(object, r, fields);
                return query
                    .condition
                    .as_ref()
                    .is_none_or(|c| self.matches(&probe, c, &sets))
                    .then(|| self.view_with(object, r, rollups));
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
                    .then(|| self.view_with(object, r, rollups))
            }
        });
        let limit = query.limit.unwrap_or(usize::MAX);
        if query.order_by.is_empty() {
            // Each match shaped as it is found: a query of half a million members never holds
            // every full view at once beside the answer.
            return Ok(views
                .take(limit)
                .map(|row| self.shape(object, &row, &query.fields, version))
                .collect());
        }
        let mut rows: Vec<Record> = views.collect();
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
        rows.truncate(limit);
        Ok(rows
            .iter()
            .map(|row| self.shape(object, row, &query.fields, version))
            .collect())
    }

    pub(super) fn shape(&self, object: &str, row: &Record, fields: &[String], version: &str) -> Value {
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
                        self.object_of(pid).and_then(|o| {
                            self.find(o, pid)
                                .map(|p| (o, self.view_with(o, p, is_derived(o, rest))))
                        })
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
