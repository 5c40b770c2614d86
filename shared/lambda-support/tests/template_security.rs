//! What `infra/template.yaml` grants and protects, read from the template itself: the alarm
//! topic's key lets CloudWatch publish, the public intake has reserved concurrency and writes
//! webhook items only, each function has a role of its own with no wildcard action or resource
//! (`*` resources only where AWS requires them, each explained in infra/README.md), and every
//! DynamoDB operation the state store calls is granted to the functions that use the whole store
//! (a missing one fails only in AWS: the emulator does not check IAM).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_norway::Value as Yaml;

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DynamoDB store's source: every file of `shared/state/src/dynamo/`.
/// The DynamoDB store's source the functions run: every file but the erasure (`forget`, the
/// admin CLI's alone, whose `Scan` no function is granted).
fn dynamo_source() -> String {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../state/src/dynamo");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter(|path| !path.ends_with("erasure.rs"))
        .collect();
    assert!(
        std::fs::read_to_string(folder.join("erasure.rs"))
            .unwrap()
            .contains(".scan()"),
        "the erasure scans (and is left out on purpose)"
    );
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

fn template() -> Yaml {
    serde_norway::from_str(&read("../../infra/template.yaml")).unwrap()
}

fn resource<'a>(template: &'a Yaml, name: &str) -> &'a Yaml {
    let found = &template["Resources"][name];
    assert!(!found.is_null(), "{name} is not in the template");
    found
}

fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(one) => vec![one.clone()],
        Yaml::Sequence(many) => many.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// `!Ref Name` → `Name`.
fn reference(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `!GetAtt Name.Arn` → `Name`.
fn get_att_arn(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => tagged
            .value
            .as_str()
            .and_then(|v| v.strip_suffix(".Arn"))
            .map(str::to_owned),
        _ => None,
    }
}

/// Every function's execution-role statements, by the function's logical id. Each function has
/// a role of the template's own (not one SAM generates, which would carry the managed
/// AWSLambdaBasicExecutionRole and its log actions on `*`).
fn function_statements(template: &Yaml) -> Vec<(String, Yaml)> {
    let mut found = Vec::new();
    for (name, function) in template["Resources"].as_mapping().unwrap() {
        if function["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap().to_owned();
        assert!(
            function["Properties"]["Policies"].is_null(),
            "{name}: policies belong on its role"
        );
        let role_name = get_att_arn(&function["Properties"]["Role"])
            .unwrap_or_else(|| panic!("{name}: no Role of the template's own"));
        let role = resource(template, &role_name);
        assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"), "{role_name}");
        assert!(
            role["Properties"]["ManagedPolicyArns"].is_null(),
            "{role_name}: managed policies grant more than the function calls"
        );
        for policy in role["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                found.push((name.clone(), statement.clone()));
            }
        }
    }
    assert_eq!(
        found.iter().map(|(f, _)| f).collect::<BTreeSet<_>>().len(),
        5,
        "every function has its statements"
    );
    found
}

/// Every statement of every policy document in the template (roles, key, topic and queue
/// policies), by the logical id of the resource that holds it.
fn all_statements(template: &Yaml) -> Vec<(String, Yaml)> {
    fn walk(owner: &str, value: &Yaml, found: &mut Vec<(String, Yaml)>) {
        match value {
            Yaml::Mapping(map) => {
                if let Some(statements) = map.get("Statement").and_then(Yaml::as_sequence) {
                    found.extend(statements.iter().map(|s| (owner.to_owned(), s.clone())));
                }
                for (_, inner) in map {
                    walk(owner, inner, found);
                }
            }
            Yaml::Sequence(items) => items.iter().for_each(|inner| walk(owner, inner, found)),
            Yaml::Tagged(tagged) => walk(owner, &tagged.value, found),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        walk(name.as_str().unwrap(), resource, &mut found);
    }
    found
}

#[test]
fn the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() {
    let template = template();
    let topic = resource(&template, "AlarmTopic");
    let key_name = reference(&topic["Properties"]["KmsMasterKeyId"])
        .expect("the topic's key is the template's own (the AWS-managed alias/aws/sns key cannot let CloudWatch in)");
    let key = resource(&template, &key_name);
    assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"));
    assert_eq!(key["Properties"]["EnableKeyRotation"].as_bool(), Some(true));
    let statements = key["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
        .expect("a statement for CloudWatch");
    let actions: BTreeSet<String> = strings(&cloudwatch["Action"]).into_iter().collect();
    assert!(actions.contains("kms:Decrypt"), "{actions:?}");
    assert!(actions.contains("kms:GenerateDataKey*"), "{actions:?}");
}

#[test]
fn the_public_intake_has_reserved_concurrency() {
    let template = template();
    let intake = resource(&template, "WebhookIntakeFunction");
    let reserved = reference(&intake["Properties"]["ReservedConcurrentExecutions"]).expect("a parameter");
    let parameter = &template["Parameters"][reserved.as_str()];
    let default = parameter["Default"].as_u64().expect("a number by default");
    assert!((1..=50).contains(&default), "{reserved}: {default}");
}

#[test]
fn a_wildcard_resource_appears_only_where_aws_requires_it_and_infra_readme_says_why() {
    let template = template();
    let readme = read("../../infra/README.md");
    let section = readme
        .split("### Resource `*`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("infra/README.md lists the statements with resource `*` under \"### Resource `*`\"");
    let mut wildcards = BTreeSet::new();
    for (owner, statement) in all_statements(&template) {
        if strings(&statement["Resource"]).iter().any(|r| r == "*") {
            let sid = statement["Sid"].as_str().unwrap_or("(no Sid)").to_owned();
            assert!(
                section.contains(&format!("`{owner}` / `{sid}`")),
                "{owner} / {sid} has resource `*` and infra/README.md does not say why"
            );
            wildcards.insert((owner, sid));
        }
    }
    assert!(!wildcards.is_empty(), "the scan finds the key policy's `*`");
}

#[test]
fn the_internet_facing_intake_writes_webhook_items_only() {
    let template = template();
    let source = dynamo_source();
    // The partitions the intake touches, as the store names them.
    assert!(source.contains(r#"const PENDING_BATCHES: &str = "WEBHOOK_PENDING";"#));
    assert!(source.contains(r#"s(format!("WEBHOOK#{dedupe_key}"))"#));
    assert!(source.contains(r#"self.get("SETTINGS", "CURRENT")"#));
    for (actions, keys, writes) in dynamodb_statements(&template, "WebhookIntakeFunction") {
        let allowed: BTreeSet<String> = if writes {
            ["WEBHOOK#*", "WEBHOOK_PENDING"].map(str::to_owned).into()
        } else {
            ["SETTINGS", "WEBHOOK#*"].map(str::to_owned).into()
        };
        assert_eq!(keys, allowed, "{actions:?}");
    }
}

/// A function's DynamoDB statements: their actions, the partitions they are held to (none is
/// a failure), and whether they write.
fn dynamodb_statements(template: &Yaml, function: &str) -> Vec<(Vec<String>, BTreeSet<String>, bool)> {
    let mut found = Vec::new();
    for (_, statement) in function_statements(template)
        .into_iter()
        .filter(|(name, _)| name == function)
    {
        let actions = strings(&statement["Action"]);
        if !actions.iter().any(|a| a.starts_with("dynamodb:")) {
            continue;
        }
        let keys: BTreeSet<String> =
            strings(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
                .into_iter()
                .collect();
        assert!(!keys.is_empty(), "{function}: {actions:?} is not limited to partitions");
        let writes = actions.iter().any(|a| {
            [
                "dynamodb:PutItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ]
            .contains(&a.as_str())
        });
        found.push((actions, keys, writes));
    }
    found
}

/// The console's statements' DynamoDB partitions, by whether they write.
fn console_partitions(template: &Yaml) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut reads, mut writes) = (BTreeSet::new(), BTreeSet::new());
    for (actions, keys, writing) in dynamodb_statements(template, "AdminConsoleFunction") {
        if writing {
            assert!(
                !actions
                    .iter()
                    .any(|a| ["dynamodb:GetItem", "dynamodb:Query"].contains(&a.as_str())),
                "reads and writes in separate statements: {actions:?}"
            );
            writes.extend(keys);
        } else {
            reads.extend(keys);
        }
    }
    (reads, writes)
}

/// What is wrong with the console's role: writes outside an admin's changes, a secret not its
/// own, a wildcard action.
fn console_role_problems(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let (reads, writes) = console_partitions(template);
    let allowed_writes: BTreeSet<String> = [
        "SETTINGS",
        "AUDIT",
        "LINKS",
        "SFLINKS",
        "SCHEDULE",
        "WATERMARK#*",
        "PROGRESS#*",
        "RETRY#*",
        "PREVIEW#*",
        "LEASE#*",
    ]
    .map(str::to_owned)
    .into();
    if writes != allowed_writes {
        problems.push(format!(
            "writes {writes:?}, not only an admin's changes {allowed_writes:?}"
        ));
    }
    if reads
        .iter()
        .any(|r| r == "*" || r.starts_with("WEBHOOK#") || r.starts_with("TOKENS"))
        || !reads.is_superset(&writes)
    {
        problems.push(format!("reads {reads:?}"));
    }
    let statements: Vec<Yaml> = function_statements(template)
        .into_iter()
        .filter(|(name, _)| name == "AdminConsoleFunction")
        .map(|(_, statement)| statement)
        .collect();
    for statement in &statements {
        let actions = strings(&statement["Action"]);
        if actions.iter().any(|a| a.contains('*')) || strings(&statement["Resource"]).iter().any(|r| r == "*") {
            problems.push(format!("a wildcard in {actions:?}"));
        }
        if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
            let resource = format!("{:?}", statement["Resource"]);
            // Its own secret, and the deployment's keys (the pepper its person search keys
            // addresses with); never the shared tokens' items (see `reads`).
            let own = resource.contains("${ConsoleSecretName}-??????") || resource.contains(r#"String("KeysSecret")"#);
            if actions != ["secretsmanager:GetSecretValue"] || !own {
                problems.push(format!("secrets: {actions:?} on {resource}"));
            }
            for other in ["CmSecretName", "SfSecretName", "WebhookSecretName"] {
                if resource.contains(other) {
                    problems.push(format!("reads the {other} secret"));
                }
            }
        }
        if actions
            .iter()
            .any(|a| a.starts_with("sqs:") || a.starts_with("lambda:"))
        {
            problems.push(format!("{actions:?}"));
        }
    }
    problems
}

#[test]
fn the_console_writes_only_what_an_admin_changes_and_reads_only_its_own_secret() {
    let template = template();
    let source = dynamo_source();
    // The partitions the console's changes write, as the store names them.
    for written in [
        r#"self.get("SETTINGS", "CURRENT")"#,
        r#".item("pk", s("AUDIT"))"#,
        r#".item("pk", s("LINKS"))"#,
        r#".item("pk", s("SFLINKS"))"#,
        r#"let pk = format!("WATERMARK#{scope}");"#,
        r#".key("pk", s(format!("PROGRESS#{scope}")))"#,
        r#".key("pk", s("SCHEDULE"))"#,
        r#".item("pk", s(format!("RETRY#{}", record.scope)))"#,
        r#".item("pk", s(format!("PREVIEW#{}", preview.preview_id)))"#,
        r#".item("pk", s(format!("LEASE#{scope}")))"#,
    ] {
        assert!(source.contains(written), "the store no longer writes {written}");
    }
    assert_eq!(console_role_problems(&template), Vec::<String>::new());
    let console = resource(&template, "AdminConsoleFunction");
    let reserved = reference(&console["Properties"]["ReservedConcurrentExecutions"]).expect("a parameter");
    let default = template["Parameters"][reserved.as_str()]["Default"]
        .as_u64()
        .expect("a number");
    assert!((1..=20).contains(&default), "{reserved}: {default}");
    assert_eq!(
        console["Properties"]["FunctionUrlConfig"]["AuthType"].as_str(),
        Some("NONE"),
        "admins reach it from a browser; sign-in is Salesforce's"
    );
}

#[test]
fn the_console_role_check_fails_on_a_wildcard_another_secret_or_a_write_outside_its_items() {
    let text = read("../../infra/template.yaml");
    let write_keys = "                Resource: !GetAtt StateTable.Arn\n                Condition:\n                  ForAllValues:StringLike:\n                    dynamodb:LeadingKeys:\n                      - SETTINGS\n                      - AUDIT\n                      - LINKS\n                      - SFLINKS\n                      - SCHEDULE\n                      - WATERMARK#*\n                      - PROGRESS#*\n                      - RETRY#*\n";
    let mutations = [
        (write_keys.to_owned(), write_keys.replace("- AUDIT\n", "- AUDIT\n                      - WEBHOOK#*\n")),
        (
            "secret:${ConsoleSecretName}-??????".to_owned(),
            "secret:${CmSecretName}-??????".to_owned(),
        ),
        (
            "              - Sid: WriteAdminChanges\n                Effect: Allow\n                Action:\n                  - dynamodb:PutItem\n".to_owned(),
            "              - Sid: WriteAdminChanges\n                Effect: Allow\n                Action:\n                  - dynamodb:*\n".to_owned(),
        ),
    ];
    for (from, to) in mutations {
        assert_eq!(
            text.matches(&from).count(),
            1,
            "the console's role moved; update this test: {from}"
        );
        let broken: Yaml = serde_norway::from_str(&text.replacen(&from, &to, 1)).unwrap();
        assert!(!console_role_problems(&broken).is_empty(), "not caught: {to}");
    }
}

/// Each `Event` constructor and the detail-type of what it builds.
fn constructors() -> Vec<(&'static str, &'static str)> {
    use events::Event;
    let found = vec![
        ("campaign_discovered", "campaign-discovered.v1"),
        (
            "campaign_linked",
            Event::campaign_linked("c", "s", events::LinkOrigin::Manual).detail_type(),
        ),
        (
            "sync_requested",
            Event::sync_requested("r", None, false, "a").detail_type(),
        ),
        ("sync_continuation", Event::sync_continuation("r", "c", 1).detail_type()),
        (
            "settings_preview_requested",
            Event::settings_preview_requested("p").detail_type(),
        ),
        (
            "catalog_refresh_requested",
            Event::catalog_refresh_requested("r", "a").detail_type(),
        ),
        ("backfill_requested", "backfill-requested.v1"),
        (
            "webhook_batch_received",
            Event::webhook_batch_received("b", "l", 1, chrono::Utc::now()).detail_type(),
        ),
    ];
    let types: BTreeSet<&str> = found.iter().map(|(_, t)| *t).collect();
    assert_eq!(
        types,
        Event::DETAIL_TYPES.into_iter().collect(),
        "one constructor per kind"
    );
    found
}

/// The detail-types the code under `folders` (or files) publishes, by the constructors it calls.
fn published_by(paths: &[&str]) -> BTreeSet<String> {
    let mut text = String::new();
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .map(|p| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p))
        .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).unwrap();
        }
    }
    assert!(!text.is_empty(), "{paths:?}");
    constructors()
        .into_iter()
        .filter(|(name, _)| text.contains(&format!("Event::{name}(")))
        .map(|(_, detail_type)| detail_type.to_owned())
        .collect()
}

/// The `PutEvents` statement of a function: (sources, detail-types) its condition allows.
fn put_events_condition(template: &Yaml, function: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let statements: Vec<Yaml> = function_statements(template)
        .into_iter()
        .filter(|(name, statement)| {
            name == function && strings(&statement["Action"]).iter().any(|a| a == "events:PutEvents")
        })
        .map(|(_, statement)| statement)
        .collect();
    assert_eq!(statements.len(), 1, "{function}: one PutEvents statement");
    let condition = &statements[0]["Condition"]["StringEquals"];
    (
        strings(&condition["events:source"]).into_iter().collect(),
        strings(&condition["events:detail-type"]).into_iter().collect(),
    )
}

#[test]
fn the_public_functions_may_publish_only_the_events_their_code_publishes() {
    let template = template();
    for (function, code) in [
        (
            "WebhookIntakeFunction",
            &["../../functions/webhook-intake/src", "../engine/src/webhook/intake.rs"][..],
        ),
        ("AdminConsoleFunction", &["../console/src", "../engine/src/admin"][..]),
    ] {
        let (sources, detail_types) = put_events_condition(&template, function);
        assert_eq!(sources, BTreeSet::from([events::SOURCE.to_owned()]), "{function}");
        assert_eq!(
            detail_types,
            published_by(code),
            "{function}: the condition and the code differ"
        );
        for never in ["campaign-discovered.v1", "sync-continuation.v1"] {
            assert!(!detail_types.contains(never), "{function} may publish {never}");
        }
    }
    assert_eq!(
        published_by(&["../../functions/webhook-intake/src", "../engine/src/webhook/intake.rs"]),
        BTreeSet::from(["webhook-batch-received.v1".to_owned()])
    );
}

#[test]
fn no_function_policy_grants_a_wildcard_action_or_resource() {
    let template = template();
    for (function, statement) in function_statements(&template) {
        for action in strings(&statement["Action"]) {
            assert!(!action.contains('*'), "{function}: action {action}");
        }
        assert!(
            !strings(&statement["Resource"]).iter().any(|r| r == "*"),
            "{function}: resource * in {statement:?}"
        );
    }
}

/// The DynamoDB operations `shared/state/src/dynamo/` calls, as IAM actions (a transaction's
/// items need the actions of their kinds, all in this list already).
fn dynamodb_actions_the_store_calls() -> BTreeSet<String> {
    let source = dynamo_source();
    let operations = [
        ("get_item", "GetItem"),
        ("batch_get_item", "BatchGetItem"),
        ("put_item", "PutItem"),
        ("update_item", "UpdateItem"),
        ("delete_item", "DeleteItem"),
        ("query", "Query"),
        ("scan", "Scan"),
        ("batch_write_item", "BatchWriteItem"),
    ];
    let mut used: BTreeSet<String> = operations
        .iter()
        .filter(|(call, _)| source.contains(&format!(".{call}()")))
        .map(|(_, action)| format!("dynamodb:{action}"))
        .collect();
    if source.contains(".transact_write_items()") {
        used.insert("dynamodb:ConditionCheckItem".into());
    }
    // Table set-up is the admin's (`cm-sf-admin`), never a function's.
    assert!(source.contains(".create_table()"), "the scan reads the right file");
    used
}

#[test]
fn every_dynamodb_operation_the_store_calls_is_granted_to_the_functions_that_use_the_store() {
    let template = template();
    let used = dynamodb_actions_the_store_calls();
    assert!(used.contains("dynamodb:BatchGetItem"), "{used:?}");
    assert!(!used.contains("dynamodb:Scan"), "no function scans the table: {used:?}");
    for function in [
        "ScheduledSyncFunction",
        "WebhookConsumerFunction",
        "CampaignAutocreateFunction",
    ] {
        let granted: BTreeSet<String> = function_statements(&template)
            .into_iter()
            .filter(|(name, _)| name == function)
            .flat_map(|(_, statement)| strings(&statement["Action"]))
            .collect();
        let missing: Vec<&String> = used.difference(&granted).collect();
        assert!(missing.is_empty(), "{function} may not call {missing:?}");
    }
    // The intake records a delivery: known events read in batches, its pending batch put, new
    // events batch-written.
    let intake: BTreeSet<String> = function_statements(&template)
        .into_iter()
        .filter(|(name, _)| name == "WebhookIntakeFunction")
        .flat_map(|(_, statement)| strings(&statement["Action"]))
        .collect();
    for action in [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:BatchWriteItem",
    ] {
        assert!(intake.contains(action), "the intake may not call {action}");
    }
    for action in ["dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"] {
        assert!(!intake.contains(action), "the intake never calls {action}");
    }
}

/// Every alarm of the template and the metric it watches: what an operator is told of.
#[test]
fn every_alarm_and_its_metric() {
    let template = template();
    let Yaml::Mapping(resources) = &template["Resources"] else {
        panic!("no Resources")
    };
    let mut alarms: Vec<(String, String)> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|(name, r)| {
            (
                name.as_str().unwrap().to_owned(),
                r["Properties"]["MetricName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    alarms.sort();
    let expected: Vec<(&str, &str)> = vec![
        ("AdminConsoleErrorsAlarm", "Errors"),
        ("CampaignAutocreateErrorsAlarm", "Errors"),
        ("CampaignAutocreateThrottlesAlarm", "Throttles"),
        ("FailedInvocationsAlarm", "ApproximateNumberOfMessagesVisible"),
        ("ListBackstopFailedAlarm", "ListBackstopFailed"),
        ("RunAbandonedAlarm", "RunAbandoned"),
        ("ScheduledRunSkippedAlarm", "ScheduledRunSkipped"),
        ("ScheduledSyncErrorsAlarm", "Errors"),
        ("ScheduledSyncThrottlesAlarm", "Throttles"),
        ("SyncRunsWithFailuresAlarm", "SyncRunsWithFailures"),
        ("TokenSaveFailedAlarm", "TokenSaveFailed"),
        ("UndeliveredEventsAlarm", "ApproximateNumberOfMessagesVisible"),
        ("WebhookConsumerErrorsAlarm", "Errors"),
        ("WebhookConsumerThrottlesAlarm", "Throttles"),
        ("WebhookEventsFailedAlarm", "WebhookEventsFailed"),
        ("WebhookEventsParkedAlarm", "WebhookEventsParked"),
        ("WebhookEventsUnconfirmedAlarm", "WebhookEventsUnconfirmed"),
        ("WebhookIntakeErrorsAlarm", "Errors"),
        ("WebhookIntakeThrottlesAlarm", "Throttles"),
        ("WebhookSweepFailedAlarm", "WebhookSweepFailed"),
    ];
    let alarms: Vec<(&str, &str)> = alarms.iter().map(|(a, m)| (a.as_str(), m.as_str())).collect();
    assert_eq!(alarms, expected);
}

/// Every `alarm` the engine logs (its `ALARM_*` constants) has a metric filter on that field and
/// an alarm on the metric.
#[test]
fn every_alarm_the_engine_logs_is_counted_and_alarmed() {
    let template = template();
    let Yaml::Mapping(resources) = &template["Resources"] else {
        panic!("no Resources")
    };
    let engine = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../engine/src");
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut logged = BTreeSet::new();
    let mut stack = vec![engine, own];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    if let Some(rest) = line.trim().strip_prefix("pub const ALARM_")
                        && let Some(name) = rest.split('"').nth(1)
                    {
                        logged.insert(name.to_owned());
                    }
                }
            }
        }
    }
    assert!(logged.len() >= 6, "the scan finds the engine's alarms: {logged:?}");
    assert!(logged.contains("TokenSaveFailed"), "and the token keeper's: {logged:?}");
    for name in &logged {
        let pattern = format!("{{ $.fields.alarm = \"{name}\" }}");
        let filter = resources
            .values()
            .find(|r| {
                r["Type"].as_str() == Some("AWS::Logs::MetricFilter")
                    && r["Properties"]["FilterPattern"].as_str() == Some(pattern.as_str())
            })
            .unwrap_or_else(|| panic!("no metric filter counts alarm {name}"));
        let metric = filter["Properties"]["MetricTransformations"][0]["MetricName"]
            .as_str()
            .unwrap();
        assert!(
            resources
                .values()
                .any(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                    && r["Properties"]["MetricName"].as_str() == Some(metric)),
            "no alarm on {metric}"
        );
    }
}
