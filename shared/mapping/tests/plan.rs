//! The sync plan (PRODUCT.md §5) computed from a small campaign, and its dry-run report.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use mapping::activity::{Activity, ActivityDetail, ActivityKind};
use mapping::autocreate::{CmCampaignState, DiscoveredCampaign, Ineligible};
use mapping::decision::MemberState;
use mapping::matching::{PersonCandidate, PersonKind};
use mapping::people::{PersonEmailState, SubscriberState};
use mapping::plan::{
    CampaignLink, CampaignSyncInput, EmailDisplay, ExistingMember, ListChangesInput, SkipReason, StatisticsInput,
    SyncPlan, plan_campaign, plan_discovery, plan_list_changes,
};
use mapping::settings::{AddMissingMembers, Settings};
use mapping::statistics::CampaignStat;
use mapping::statuses::ExistingStatus;

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 5, hour, minute, 0)
        .single()
        .unwrap_or_default()
}

fn settings() -> Settings {
    Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC)
}

fn activity(kind: ActivityKind, email: &str, hour: u32, minute: u32) -> Activity {
    Activity {
        kind,
        email: email.into(),
        at: at(hour, minute),
        list_id: "list-a".into(),
        detail: match kind {
            ActivityKind::Bounced => ActivityDetail::Bounce {
                bounce_type: "Hard".into(),
                reason: "Hard Bounce - No such user".into(),
            },
            _ => ActivityDetail::None,
        },
    }
}

fn person(id: &str, kind: PersonKind, is_member: bool) -> PersonCandidate {
    PersonCandidate {
        id: id.into(),
        kind,
        last_modified: at(1, 0),
        is_member,
    }
}

struct Fixture {
    link: CampaignLink,
    activities: Vec<Activity>,
    people: BTreeMap<String, Vec<PersonCandidate>>,
    members: BTreeMap<String, ExistingMember>,
    statuses: Vec<ExistingStatus>,
    statistics: StatisticsInput,
    person_states: BTreeMap<String, PersonEmailState>,
    other_lists: BTreeMap<String, Vec<(String, SubscriberState)>>,
}

impl Fixture {
    fn new() -> Fixture {
        let activities = vec![
            activity(ActivityKind::Opened, "ann@example.com", 10, 0), // member: Sent -> Clicked
            activity(ActivityKind::Clicked, "ann@example.com", 10, 5),
            activity(ActivityKind::Opened, "bob@example.com", 10, 1), // not a member yet: added
            activity(ActivityKind::Opened, "nobody@example.com", 10, 2), // unmatched
            activity(ActivityKind::Opened, "twins@example.com", 10, 3), // two contacts, same date
            activity(ActivityKind::Unsubscribed, "cat@example.com", 11, 0), // still on another list
            activity(ActivityKind::Unsubscribed, "dan@example.com", 11, 0), // on no other list: opt out
            activity(ActivityKind::Bounced, "eve@example.com", 11, 5), // hard bounce
            activity(ActivityKind::Opened, "old@example.com", 9, 0),  // older than its Activity Date
        ];
        let people = BTreeMap::from([
            (
                "ann@example.com".to_owned(),
                vec![person("003ANN", PersonKind::Contact, true)],
            ),
            (
                "bob@example.com".to_owned(),
                vec![person("00QBOB", PersonKind::Lead, false)],
            ),
            (
                "twins@example.com".to_owned(),
                vec![
                    person("003TW1", PersonKind::Contact, false),
                    person("003TW2", PersonKind::Contact, false),
                ],
            ),
            (
                "cat@example.com".to_owned(),
                vec![person("003CAT", PersonKind::Contact, true)],
            ),
            (
                "dan@example.com".to_owned(),
                vec![person("003DAN", PersonKind::Contact, true)],
            ),
            (
                "eve@example.com".to_owned(),
                vec![person("00QEVE", PersonKind::Lead, true)],
            ),
            (
                "old@example.com".to_owned(),
                vec![person("003OLD", PersonKind::Contact, true)],
            ),
        ]);
        let member = |id: &str, person: &str, state: MemberState| {
            (
                person.to_owned(),
                ExistingMember {
                    member_id: id.into(),
                    person_id: person.into(),
                    state,
                },
            )
        };
        let members = BTreeMap::from([
            member("00vANN", "003ANN", MemberState::new_member("Sent")),
            member("00vCAT", "003CAT", MemberState::new_member("Sent")),
            member("00vDAN", "003DAN", MemberState::new_member("Sent")),
            member("00vEVE", "00QEVE", MemberState::new_member("Sent")),
            member(
                "00vOLD",
                "003OLD",
                MemberState {
                    status: "Clicked".into(),
                    activity_date: Some(at(9, 30)),
                    activity_kind: Some(ActivityKind::Clicked),
                    once_only_at: None,
                    detail: Default::default(),
                },
            ),
        ]);
        let statuses = vec![
            ExistingStatus {
                id: "01Y1".into(),
                label: "Sent".into(),
                has_responded: false,
                is_default: true,
                sort_order: 1,
            },
            ExistingStatus {
                id: "01Y2".into(),
                label: "Responded".into(),
                has_responded: true,
                is_default: false,
                sort_order: 2,
            },
        ];
        Fixture {
            link: CampaignLink {
                cm_campaign_id: "c1".into(),
                sf_campaign_id: "701A".into(),
                name: "March news".into(),
            },
            activities,
            people,
            members,
            statuses,
            statistics: StatisticsInput {
                summary: BTreeMap::from([(CampaignStat::Recipients, 9), (CampaignStat::Clicks, 1)]),
                last_written: BTreeMap::from([("NumberSent".to_owned(), 9)]),
                org_fields: None,
            },
            person_states: BTreeMap::new(),
            other_lists: BTreeMap::from([
                (
                    "cat@example.com".to_owned(),
                    vec![("list-b".to_owned(), SubscriberState::Active)],
                ),
                (
                    "dan@example.com".to_owned(),
                    vec![("list-b".to_owned(), SubscriberState::Unsubscribed)],
                ),
            ]),
        }
    }

    fn input(&self) -> CampaignSyncInput<'_> {
        CampaignSyncInput {
            link: &self.link,
            activities: &self.activities,
            people: &self.people,
            members: &self.members,
            statuses: &self.statuses,
            statistics: Some(&self.statistics),
            person_states: &self.person_states,
            other_lists: &self.other_lists,
        }
    }
}

fn skip_reasons(plan: &mapping::CampaignPlan, email: &str) -> Vec<SkipReason> {
    plan.skips
        .iter()
        .filter(|s| s.subject == email)
        .map(|s| s.reason.clone())
        .collect()
}

#[test]
fn a_campaign_plan_holds_every_change_and_skip_with_its_reason() {
    let fixture = Fixture::new();
    let plan = plan_campaign(&fixture.input(), &settings());

    // Statuses: every mapped label missing from the stock pair is created.
    let created: Vec<&str> = plan.statuses.create.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        created,
        ["Bounced", "Opened", "Clicked", "Unsubscribed", "Marked as Spam"]
    );

    // Member updates: Ann to Clicked; Cat/Dan to Unsubscribed; Eve to Bounced.
    let updates: BTreeMap<&str, &str> = plan
        .member_updates
        .iter()
        .map(|u| (u.email.as_str(), u.after.status.as_str()))
        .collect();
    assert_eq!(
        updates,
        BTreeMap::from([
            ("ann@example.com", "Clicked"),
            ("cat@example.com", "Unsubscribed"),
            ("dan@example.com", "Unsubscribed"),
            ("eve@example.com", "Bounced")
        ])
    );

    // Bob is matched but not a member: added, already in his decided state.
    assert_eq!(plan.members_to_add.len(), 1);
    assert_eq!(plan.members_to_add[0].person_id, "00QBOB");
    assert_eq!(plan.members_to_add[0].state.status, "Opened");
    assert_eq!(plan.members_to_add[0].state.activity_date, Some(at(10, 1)));

    // Skips: unmatched, ambiguous, guard refused, opt-out kept (Cat is still on list-b).
    assert_eq!(skip_reasons(&plan, "nobody@example.com"), [SkipReason::UnmatchedEmail]);
    assert_eq!(
        skip_reasons(&plan, "twins@example.com"),
        [SkipReason::AmbiguousMatch {
            candidates: vec!["003TW1".into(), "003TW2".into()]
        }]
    );
    assert_eq!(
        skip_reasons(&plan, "old@example.com"),
        [SkipReason::GuardRefused {
            activity_date: Some(at(9, 30))
        }]
    );
    assert!(matches!(
        skip_reasons(&plan, "cat@example.com").as_slice(),
        [SkipReason::OptOutKept { .. }]
    ));

    // People: Dan opted out, Eve's bounce recorded.
    let people: BTreeMap<&str, (bool, bool)> = plan
        .person_updates
        .iter()
        .map(|p| (p.email.as_str(), (p.opt_out, p.bounce.is_some())))
        .collect();
    assert_eq!(
        people,
        BTreeMap::from([("dan@example.com", (true, false)), ("eve@example.com", (false, true))])
    );

    // Statistics: NumberSent unchanged, clicks new.
    let stats: Vec<(&str, i64)> = plan
        .statistics
        .writes
        .iter()
        .map(|w| (w.field.as_str(), w.value))
        .collect();
    assert_eq!(stats, [("CM_Clicks__c", 1)]);
}

#[test]
fn the_same_activity_planned_again_after_applying_writes_nothing() {
    let mut fixture = Fixture::new();
    let first = plan_campaign(&fixture.input(), &settings());
    // Apply the first plan to the fixture, as a sync would.
    for update in &first.member_updates {
        if let Some(member) = fixture.members.values_mut().find(|m| m.member_id == update.member_id) {
            member.state = update.after.clone();
        }
    }
    for add in &first.members_to_add {
        fixture.members.insert(
            add.person_id.clone(),
            ExistingMember {
                member_id: format!("00v{}", add.person_id),
                person_id: add.person_id.clone(),
                state: add.state.clone(),
            },
        );
        if let Some(candidates) = fixture
            .people
            .values_mut()
            .find(|c| c.iter().any(|p| p.id == add.person_id))
        {
            candidates.iter_mut().for_each(|p| p.is_member = true);
        }
    }
    for create in &first.statuses.create {
        fixture.statuses.push(ExistingStatus {
            id: format!("01Y{}", create.label),
            label: create.label.clone(),
            has_responded: create.has_responded,
            is_default: false,
            sort_order: create.sort_order,
        });
    }
    for person in &first.person_updates {
        fixture.person_states.insert(
            person.person_id.clone(),
            PersonEmailState {
                has_opted_out: person.opt_out,
                bounced_at: person.bounce.as_ref().map(|(at, _)| *at),
            },
        );
    }
    for write in &first.statistics.writes {
        fixture.statistics.last_written.insert(write.field.clone(), write.value);
    }

    let second = plan_campaign(&fixture.input(), &settings());
    assert_eq!(second.write_count(), 0, "{second:#?}");
}

#[test]
fn with_status_creation_off_members_needing_a_missing_status_are_skipped() {
    let fixture = Fixture::new();
    let mut s = settings();
    s.auto_create_missing_statuses = false;
    let plan = plan_campaign(&fixture.input(), &s);
    assert!(plan.statuses.create.is_empty());
    assert_eq!(
        skip_reasons(&plan, "ann@example.com"),
        [SkipReason::StatusMissing {
            label: "Clicked".into()
        }]
    );
    assert!(plan.member_updates.iter().all(|u| u.after.status == "Sent"));
}

#[test]
fn with_adding_off_non_members_are_reported() {
    let fixture = Fixture::new();
    let mut s = settings();
    s.add_missing_members = AddMissingMembers::Never;
    let plan = plan_campaign(&fixture.input(), &s);
    assert!(plan.members_to_add.is_empty());
    assert_eq!(skip_reasons(&plan, "bob@example.com"), [SkipReason::NotAMember]);
}

#[test]
fn engaged_adds_only_recipients_who_interacted_and_counts_the_others() {
    let mut fixture = Fixture::new();
    fixture
        .activities
        .push(activity(ActivityKind::Sent, "sam@example.com", 9, 0));
    fixture.people.insert(
        "sam@example.com".to_owned(),
        vec![person("003SAM", PersonKind::Contact, false)],
    );
    let added = |choice: AddMissingMembers| {
        let mut s = settings();
        s.add_missing_members = choice;
        let plan = plan_campaign(&fixture.input(), &s);
        let mut ids: Vec<String> = plan.members_to_add.iter().map(|m| m.person_id.clone()).collect();
        ids.sort();
        (ids, plan.recipients_not_added, plan)
    };
    let (all, _, _) = added(AddMissingMembers::AllRecipients);
    assert_eq!(all, ["003SAM", "00QBOB"]);
    let (engaged, not_added, plan) = added(AddMissingMembers::Engaged);
    assert_eq!((engaged, not_added), (vec!["00QBOB".to_owned()], 1));
    assert!(
        skip_reasons(&plan, "sam@example.com").is_empty(),
        "counted, not reported one by one"
    );
    assert_eq!(
        plan.member_updates.len(),
        added(AddMissingMembers::AllRecipients).2.member_updates.len(),
        "existing members are updated either way"
    );
    let report = SyncPlan {
        campaigns: vec![plan],
        ..SyncPlan::default()
    }
    .report(EmailDisplay::Redacted);
    assert!(report.contains("recipients not added (no engagement"), "{report}");
    let (never, _, _) = added(AddMissingMembers::Never);
    assert!(never.is_empty());
}

#[test]
fn add_missing_members_reads_the_choice_by_name_and_the_boolean_of_earlier_settings() {
    let with = |value: &str| {
        Settings::from_json(&format!(
            r#"{{"cm_clients": ["0123456789abcdef0123456789abcdef"], "cm_timezone": "UTC", "add_missing_members": {value}}}"#
        ))
    };
    assert_eq!(
        with("true").unwrap().add_missing_members,
        AddMissingMembers::AllRecipients
    );
    assert_eq!(with("false").unwrap().add_missing_members, AddMissingMembers::Never);
    assert_eq!(
        with(r#""engaged""#).unwrap().add_missing_members,
        AddMissingMembers::Engaged
    );
    assert_eq!(
        with(r#""never""#).unwrap().add_missing_members,
        AddMissingMembers::Never
    );
    let error = with(r#""some""#).unwrap_err().to_string();
    assert!(
        error.contains("add_missing_members") || error.contains("all_recipients, engaged or never"),
        "{error}"
    );
}

#[test]
fn the_report_is_short_readable_and_redacts_emails() {
    let fixture = Fixture::new();
    let plan = SyncPlan {
        campaigns: vec![plan_campaign(&fixture.input(), &settings())],
        ..SyncPlan::default()
    };
    let report = plan.report(EmailDisplay::Redacted);
    assert!(report.contains("Campaign \"March news\" (CM c1 → SF 701A)"), "{report}");
    assert!(
        report.contains("members to add: 1 (Opened 1); about 2 KB of Salesforce data storage"),
        "{report}"
    );
    assert!(report.contains("status + \"Clicked\" (responded)"), "{report}");
    assert!(report.contains("addresses need attention"), "{report}");
    assert!(!report.contains("nobody@example.com"), "{report}");
    assert!(
        plan.report(EmailDisplay::Full)
            .contains("nobody@example.com: unmatched email")
    );

    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap_or_default();
    assert_eq!(json["campaigns"][0]["members_to_add"][0]["person_id"], "00QBOB");
    let skips = json["campaigns"][0]["skips"].as_array().cloned().unwrap_or_default();
    assert!(
        skips
            .iter()
            .any(|s| s["subject"] == "nobody@example.com" && s["reason"]["kind"] == "unmatched_email")
    );
    assert!(!plan.writes_nothing());
}

#[test]
fn discovery_plans_only_new_unlinked_campaigns() {
    let mut s = settings();
    s.auto_create_campaigns = true;
    s.auto_create_enabled_at = Some(at(12, 0));
    let client = s.cm_clients[0].clone();
    let campaign = |id: &str, client: &str, sent: DateTime<Utc>| DiscoveredCampaign {
        cm_campaign_id: id.into(),
        cm_client_id: client.into(),
        name: format!("Campaign {}", &id[..3]),
        subject: "Hello".into(),
        state: CmCampaignState::Sent,
        created_at: None,
        sent_at: Some(sent),
    };
    let (old, new, linked) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
    let discovered = [
        campaign(&old, &client, at(11, 0)),
        campaign(&new, &client, at(13, 0)),
        campaign(&linked, &client, at(13, 0)),
        // What discovery never gives: another client's campaign, an id not of CM's form (a
        // forged `campaign-discovered` event). Neither gets an SF Campaign.
        campaign(&"d".repeat(32), &"e".repeat(32), at(13, 0)),
        campaign("../../sobjects/User", &client, at(13, 0)),
    ];
    let links = BTreeMap::from([(linked.clone(), "701L".to_owned())]);
    let (create, not_created) = plan_discovery(&discovered, &links, &s);
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].sf_campaign.name, "Campaign bbb");
    assert_eq!(create[0].sf_campaign.cm_campaign_id, new);
    let whys: Vec<&Ineligible> = not_created.iter().map(|n| &n.why).collect();
    assert!(matches!(whys[0], Ineligible::CreatedBeforeEnabled { .. }), "{whys:?}");
    assert_eq!(whys[1..], [&Ineligible::NotConfigured, &Ineligible::NotConfigured]);

    let plan = SyncPlan {
        campaigns_to_create: create,
        campaigns_not_created: not_created,
        campaigns: vec![],
    };
    let report = plan.report(EmailDisplay::Redacted);
    assert!(report.contains("+ \"Campaign bbb\""), "{report}");
    assert!(report.contains("use backfill"), "{report}");
}

#[test]
fn a_lists_own_unsubscribes_and_bounces_reach_every_owner_of_the_address_by_the_campaign_rules() {
    let person = |id: &str, kind| PersonCandidate {
        id: id.into(),
        kind,
        last_modified: at(1, 0),
        is_member: false,
    };
    let people = BTreeMap::from([
        (
            "twin@x.com".to_owned(),
            vec![person("003A", PersonKind::Contact), person("00QA", PersonKind::Lead)],
        ),
        ("done@x.com".to_owned(), vec![person("003B", PersonKind::Contact)]),
        ("busy@x.com".to_owned(), vec![person("003C", PersonKind::Contact)]),
    ]);
    let person_states = BTreeMap::from([(
        "003B".to_owned(),
        PersonEmailState {
            has_opted_out: true,
            ..PersonEmailState::default()
        },
    )]);
    // busy@ is still subscribed to another configured list: `all_lists` keeps it opted in.
    let other_lists = BTreeMap::from([(
        "busy@x.com".to_owned(),
        vec![("list-b".to_owned(), SubscriberState::Active)],
    )]);
    let activities = [
        activity(ActivityKind::Unsubscribed, "twin@x.com", 10, 0),
        activity(ActivityKind::Unsubscribed, "done@x.com", 10, 1),
        activity(ActivityKind::Unsubscribed, "busy@x.com", 10, 2),
        activity(ActivityKind::Unsubscribed, "nobody@x.com", 10, 3),
        activity(ActivityKind::Bounced, "done@x.com", 10, 4),
    ];
    let plan = plan_list_changes(
        &ListChangesInput {
            activities: &activities,
            people: &people,
            person_states: &person_states,
            other_lists: &other_lists,
        },
        &settings(),
    );
    let updates: Vec<(&str, bool, bool)> = plan
        .person_updates
        .iter()
        .map(|u| (u.person_id.as_str(), u.opt_out, u.bounce.is_some()))
        .collect();
    assert_eq!(
        updates,
        [("003B", false, true), ("003A", true, false), ("00QA", true, false)],
        "both owners of twin@ opted out; done@ only gets its bounce"
    );
    let skipped: Vec<(&str, &SkipReason)> = plan.skips.iter().map(|s| (s.subject.as_str(), &s.reason)).collect();
    assert!(
        matches!(
            skipped[..],
            [
                ("busy@x.com", SkipReason::OptOutKept { .. }),
                ("nobody@x.com", SkipReason::UnmatchedEmail)
            ]
        ),
        "{skipped:?}"
    );
}
