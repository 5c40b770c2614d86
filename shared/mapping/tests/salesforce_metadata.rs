//! The Salesforce metadata in `infra/salesforce` (what an admin deploys with
//! `sf project deploy start`) is well-formed and names exactly the fields the default settings
//! use, and the engagement detail fields they may turn on, with the types the sync needs; the
//! permission set grants each of them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mapping::people::PERSON_FIELDS_WRITTEN;
use mapping::settings::{RequiredField, Settings};

const METADATA_NS: &str = "http://soap.sforce.com/2006/04/metadata";

fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/salesforce/force-app/main/default")
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            xml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name((METADATA_NS, name)))
        .and_then(|c| c.text())
}

/// A custom field as the metadata declares it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DeclaredField {
    object: String,
    field: String,
    metadata_type: String,
    unique_external_id: bool,
}

fn declared_fields() -> BTreeSet<DeclaredField> {
    let objects = source_dir().join("objects");
    let mut files = Vec::new();
    xml_files(&objects, &mut files);
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let document = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let root = document.root_element();
            assert!(root.has_tag_name((METADATA_NS, "CustomField")), "{}", path.display());
            let full_name = child_text(root, "fullName").unwrap();
            let file_name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(
                file_name,
                format!("{full_name}.field-meta.xml"),
                "file named after its field"
            );
            let object = path.parent().unwrap().parent().unwrap().file_name().unwrap();
            let flag = |name| child_text(root, name) == Some("true");
            DeclaredField {
                object: object.to_str().unwrap().to_owned(),
                field: full_name.to_owned(),
                metadata_type: child_text(root, "type").unwrap().to_owned(),
                unique_external_id: flag("externalId") && flag("unique"),
            }
        })
        .collect()
}

fn expected(fields: &[RequiredField]) -> BTreeSet<DeclaredField> {
    fields
        .iter()
        .filter(|f| f.field.ends_with("__c"))
        .map(|f| DeclaredField {
            object: f.object.to_owned(),
            field: f.field.clone(),
            metadata_type: f.kind.metadata_type().to_owned(),
            unique_external_id: f.unique_external_id,
        })
        .collect()
}

/// The default settings with every engagement detail field on: what the shipped metadata must
/// hold (a deployment turns detail fields on without deploying anything else).
fn shipped_settings() -> Settings {
    let mut settings = Settings::new(vec!["a".repeat(32)], chrono_tz::Australia::Sydney);
    settings.member_detail_fields = mapping::settings::MemberDetailFields::every_shipped();
    settings
}

#[test]
fn every_metadata_file_is_well_formed_salesforce_metadata() {
    let mut files = Vec::new();
    xml_files(&source_dir(), &mut files);
    assert!(files.len() >= 17, "fields and the permission set: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            "{}",
            path.display()
        );
        let document = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(document.root_element().tag_name().namespace(), Some(METADATA_NS));
    }
}

#[test]
fn the_custom_fields_are_exactly_those_the_default_settings_and_the_detail_fields_name() {
    let settings = shipped_settings();
    assert_eq!(declared_fields(), expected(&settings.required_fields()));
}

#[test]
fn a_renamed_setting_no_longer_matches_the_metadata() {
    // The comparison above is not vacuous: a settings document naming another field differs.
    let mut settings = shipped_settings();
    settings.member_fields.activity_date = "Other_Date__c".to_owned();
    assert_ne!(declared_fields(), expected(&settings.required_fields()));
}

#[test]
fn the_permission_set_grants_every_field_the_sync_writes_and_nothing_else() {
    let path = source_dir().join("permissionsets/CM_SF_Sync_Integration.permissionset-meta.xml");
    let text = std::fs::read_to_string(&path).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let root = document.root_element();
    let description = child_text(root, "description").unwrap();
    assert!(
        description.len() <= 255,
        "Salesforce limits a permission set description to 255 characters"
    );

    let granted: BTreeSet<String> = root
        .children()
        .filter(|c| c.has_tag_name((METADATA_NS, "fieldPermissions")))
        .map(|permission| {
            assert_eq!(child_text(permission, "readable"), Some("true"));
            assert_eq!(child_text(permission, "editable"), Some("true"));
            child_text(permission, "field").unwrap().to_owned()
        })
        .collect();
    let mut needed: BTreeSet<String> = shipped_settings()
        .required_fields()
        .iter()
        .map(|f| format!("{}.{}", f.object, f.field))
        .collect();
    for object in ["Lead", "Contact"] {
        needed.extend(PERSON_FIELDS_WRITTEN.iter().map(|f| format!("{object}.{f}")));
    }
    assert_eq!(granted, needed);

    let objects: BTreeSet<(String, bool)> = root
        .children()
        .filter(|c| c.has_tag_name((METADATA_NS, "objectPermissions")))
        .map(|permission| {
            assert_eq!(child_text(permission, "allowRead"), Some("true"));
            assert_eq!(child_text(permission, "allowEdit"), Some("true"));
            assert_eq!(
                child_text(permission, "allowDelete"),
                Some("false"),
                "the sync never deletes"
            );
            (
                child_text(permission, "object").unwrap().to_owned(),
                child_text(permission, "allowCreate") == Some("true"),
            )
        })
        .collect();
    let expected_objects: BTreeSet<(String, bool)> = [("Campaign", true), ("Contact", false), ("Lead", false)]
        .map(|(o, c)| (o.to_owned(), c))
        .into();
    assert_eq!(objects, expected_objects);
}
