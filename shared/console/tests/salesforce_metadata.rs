//! The permission set and custom permission shipped in `infra/salesforce` are the ones the
//! console checks and names: an admin who assigns the shipped set gets in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use console::config::{DEFAULT_PERMISSION, DEFAULT_PERMISSION_SET};

const METADATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../infra/salesforce/force-app/main/default"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{METADATA}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next())
        .collect()
}

#[test]
fn the_shipped_permission_set_grants_the_custom_permission_the_console_requires() {
    let permission = read(&format!(
        "customPermissions/{DEFAULT_PERMISSION}.customPermission-meta.xml"
    ));
    assert!(permission.contains("<CustomPermission"), "{permission}");
    let set = read("permissionsets/CM_Sync_Console_Admin.permissionset-meta.xml");
    assert_eq!(between(&set, "<label>", "</label>"), [DEFAULT_PERMISSION_SET]);
    let granted: Vec<&str> = between(&set, "<customPermissions>", "</customPermissions>")
        .into_iter()
        .filter(|grant| grant.contains("<enabled>true</enabled>"))
        .flat_map(|grant| between(grant, "<name>", "</name>"))
        .collect();
    assert_eq!(granted, [DEFAULT_PERMISSION]);
}
