//! PRODUCT.md §3.3 worked example, every row, every mode.
//!
//! Member status "Sent", Activity Date empty; sync 1 finds Opened 10:00 and Clicked 10:05; sync 2
//! finds Opened 11:00.

use chrono::{DateTime, TimeZone, Utc};
use mapping::{ActivityKind, MemberState, Occurrence, Settings, StatusRefresh, decide_member};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 5, hour, minute, 0)
        .single()
        .unwrap_or_default()
}

fn settings(mode: StatusRefresh) -> Settings {
    let mut settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC);
    settings.status_refresh = mode;
    settings
}

fn run(mode: StatusRefresh) -> (MemberState, MemberState) {
    let settings = settings(mode);
    let start = MemberState::new_member("Sent");
    let sync1 = [
        Occurrence {
            kind: ActivityKind::Opened,
            at: at(10, 0),
        },
        Occurrence {
            kind: ActivityKind::Clicked,
            at: at(10, 5),
        },
    ];
    let sync2 = [Occurrence {
        kind: ActivityKind::Opened,
        at: at(11, 0),
    }];
    let after1 = decide_member(&start, &sync1, &settings).after;
    let after2 = decide_member(&after1, &sync2, &settings).after;
    (after1, after2)
}

fn check(mode: StatusRefresh, expected1: &str, expected2: &str) {
    let (after1, after2) = run(mode);
    assert_eq!(
        (after1.status.as_str(), after2.status.as_str()),
        (expected1, expected2),
        "{mode:?}"
    );
    // "The Activity Date is 10:05 after sync 1 and 11:00 after sync 2 in every mode."
    assert_eq!(after1.activity_date, Some(at(10, 5)), "{mode:?} sync 1 Activity Date");
    assert_eq!(after2.activity_date, Some(at(11, 0)), "{mode:?} sync 2 Activity Date");
    assert_eq!(after1.activity_kind, Some(ActivityKind::Clicked));
    assert_eq!(after2.activity_kind, Some(ActivityKind::Opened));
}

#[test]
fn never_keeps_sent() {
    check(StatusRefresh::Never, "Sent", "Sent");
}

#[test]
fn always_follows_the_latest_activity() {
    check(StatusRefresh::Always, "Clicked", "Opened");
}

#[test]
fn once_only_keeps_the_first_interaction() {
    check(StatusRefresh::OnceOnly, "Opened", "Opened");
    let (after1, after2) = run(StatusRefresh::OnceOnly);
    assert!(after1.once_only_used() && after2.once_only_used());
}

#[test]
fn forward_only_never_goes_back_down() {
    check(StatusRefresh::ForwardOnly, "Clicked", "Clicked");
}

#[test]
fn the_example_gives_the_same_result_in_one_sync_for_order_independent_modes() {
    // All three activities in one sync, in any order: `always` ends on the latest (Opened at
    // 11:00) and `forward_only` on the highest (Clicked), as after two syncs.
    let all = [
        Occurrence {
            kind: ActivityKind::Opened,
            at: at(11, 0),
        },
        Occurrence {
            kind: ActivityKind::Clicked,
            at: at(10, 5),
        },
        Occurrence {
            kind: ActivityKind::Opened,
            at: at(10, 0),
        },
    ];
    for (mode, expected) in [
        (StatusRefresh::Always, "Opened"),
        (StatusRefresh::ForwardOnly, "Clicked"),
    ] {
        let decision = decide_member(&MemberState::new_member("Sent"), &all, &settings(mode));
        assert_eq!(decision.after.status, expected, "{mode:?}");
        assert_eq!(decision.after, run(mode).1, "{mode:?}");
    }
}
