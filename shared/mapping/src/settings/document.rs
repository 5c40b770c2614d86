//! Editing and comparing settings documents as JSON: `cm-sf-admin settings set KEY VALUE` and
//! `settings diff FILE`, and the console's field-by-field preview. The result is always
//! validated ([`super::Settings::from_json`]) before it is stored; these helpers only move
//! values around.

use serde_json::Value;

/// One segment of a settings path: `campaign_template.name_pattern`, `status_mapping[2].status`.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() {
            return Err(format!(
                "`{path}`: empty key (use e.g. campaign_template.name_pattern or status_mapping[2].status)"
            ));
        }
        segments.push(Segment::Key(key.to_owned()));
        while !rest.is_empty() {
            let Some(end) = rest.find(']') else {
                return Err(format!("`{path}`: unclosed `[`"));
            };
            let index = rest[1..end]
                .parse::<usize>()
                .map_err(|_| format!("`{path}`: `{}` is not an index", &rest[1..end]))?;
            segments.push(Segment::Index(index));
            rest = &rest[end + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("`{path}`: unexpected `{rest}`"));
            }
        }
    }
    Ok(segments)
}

/// The value `VALUE` on the command line means: JSON when it parses (`true`, `3`, `["a"]`,
/// `null`, `"quoted"`), otherwise the text itself.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Sets `path` in `document`. Objects along the way are created; an array index must exist
/// (or be one past the end, to append).
pub fn set_path(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segments = parse_path(path)?;
    let mut current = document;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match segment {
            Segment::Key(key) => {
                let Value::Object(map) = current else {
                    return Err(format!("`{path}`: `{key}` is not inside an object"));
                };
                if last {
                    map.insert(key.clone(), value);
                    return Ok(());
                }
                current = map.entry(key.clone()).or_insert_with(|| match segments[i + 1] {
                    Segment::Key(_) => Value::Object(Default::default()),
                    Segment::Index(_) => Value::Array(Vec::new()),
                });
            }
            Segment::Index(index) => {
                let Value::Array(items) = current else {
                    return Err(format!("`{path}`: [{index}] is not inside a list"));
                };
                if *index > items.len() {
                    return Err(format!(
                        "`{path}`: the list has {} entries; [{index}] is past its end",
                        items.len()
                    ));
                }
                if *index == items.len() {
                    items.push(Value::Null);
                }
                if last {
                    items[*index] = value;
                    return Ok(());
                }
                current = &mut items[*index];
            }
        }
    }
    Ok(())
}

/// One difference between two documents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Path of the value, e.g. `status_mapping[2].status`.
    pub path: String,
    /// Before (`None`: added).
    pub before: Option<Value>,
    /// After (`None`: removed).
    pub after: Option<Value>,
}

fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(item, &path, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{prefix}[{i}]"), out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.clone())),
    }
}

/// Every leaf that differs between `before` and `after`, in path order.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten(before, "", &mut a);
    flatten(after, "", &mut b);
    let a: std::collections::BTreeMap<String, Value> = a.into_iter().collect();
    let b: std::collections::BTreeMap<String, Value> = b.into_iter().collect();
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (x, y) = (a.get(path), b.get(path));
            (x != y).then(|| Change {
                path: path.clone(),
                before: x.cloned(),
                after: y.cloned(),
            })
        })
        .collect()
}

/// A change as one readable line: `~ path: before -> after`, `+ path: after`, `- path: before`.
pub fn describe(change: &Change) -> String {
    match (&change.before, &change.after) {
        (Some(before), Some(after)) => format!("~ {}: {before} -> {after}", change.path),
        (None, Some(after)) => format!("+ {}: {after}", change.path),
        (Some(before), None) => format!("- {}: {before}", change.path),
        (None, None) => format!("  {}", change.path),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_when_they_parse_and_text_otherwise() {
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("[\"a\"]"), json!(["a"]));
        assert_eq!(parse_value("any_list"), json!("any_list"));
        assert_eq!(parse_value("CM: {name}"), json!("CM: {name}"));
    }

    #[test]
    fn nested_keys_and_list_entries_are_set() {
        let mut doc = json!({"status_mapping": [{"status": "Sent"}, {"status": "Opened"}]});
        set_path(&mut doc, "campaign_template.name_pattern", json!("CM: {name}")).unwrap();
        set_path(&mut doc, "status_mapping[1].status", json!("Opened it")).unwrap();
        set_path(&mut doc, "cm_lists[0]", json!("abc")).unwrap();
        assert_eq!(
            doc,
            json!({
                "status_mapping": [{"status": "Sent"}, {"status": "Opened it"}],
                "campaign_template": {"name_pattern": "CM: {name}"},
                "cm_lists": ["abc"]
            })
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        let mut doc = json!({"status_mapping": [], "record_bounces": true});
        assert!(
            set_path(&mut doc, "status_mapping[3].status", json!(1))
                .unwrap_err()
                .contains("past its end")
        );
        assert!(
            set_path(&mut doc, "record_bounces.x", json!(1))
                .unwrap_err()
                .contains("not inside an object")
        );
        assert!(
            set_path(&mut doc, "a[x]", json!(1))
                .unwrap_err()
                .contains("not an index")
        );
        assert!(set_path(&mut doc, ".a", json!(1)).unwrap_err().contains("empty key"));
    }

    #[test]
    fn diff_lists_each_changed_added_and_removed_leaf() {
        let before = json!({"a": 1, "m": [{"s": "x"}, {"s": "y"}], "gone": true});
        let after = json!({"a": 2, "m": [{"s": "x"}, {"s": "z"}, {"s": "w"}], "new": "n"});
        let lines: Vec<String> = diff(&before, &after).iter().map(describe).collect();
        assert_eq!(
            lines,
            [
                "~ a: 1 -> 2",
                "- gone: true",
                "~ m[1].s: \"y\" -> \"z\"",
                "+ m[2].s: \"w\"",
                "+ new: \"n\""
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }
}
