//! Property tests of the member decision (PRODUCT.md §3.3).

use chrono::{DateTime, Duration, TimeZone, Utc};
use mapping::settings::StatusRank;
use mapping::{ActivityKind, MemberState, Occurrence, Settings, StatusRefresh, decide_member};
use proptest::prelude::*;
use proptest::sample::Index;

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 5, 10, 0, 0).single().unwrap_or_default()
}

fn settings(mode: StatusRefresh) -> Settings {
    let mut settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], chrono_tz::UTC);
    settings.status_refresh = mode;
    settings
}

fn kind() -> impl Strategy<Value = ActivityKind> {
    prop::sample::select(ActivityKind::ALL.to_vec())
}

/// Activities within a few minutes, so equal timestamps are common.
fn occurrence() -> impl Strategy<Value = Occurrence> {
    (kind(), 0i64..8).prop_map(|(kind, minute)| Occurrence {
        kind,
        at: base_time() + Duration::minutes(minute),
    })
}

fn activities() -> impl Strategy<Value = Vec<Occurrence>> {
    prop::collection::vec(occurrence(), 0..14)
}

/// Statuses the mapping does not name and that are not the campaign's default: set by hand.
const HAND_SET: [&str; 2] = ["Responded - Called", "Registered"];

/// Any starting member: a mapped, stock or hand-made status; any Activity Date and kind; the
/// once-only update unused, or used at or before the Activity Date (as the sync leaves it).
fn member() -> impl Strategy<Value = MemberState> {
    (
        prop::sample::select(vec![
            "Sent",
            "Opened",
            "Clicked",
            "Bounced",
            "Responded",
            HAND_SET[0],
            HAND_SET[1],
        ]),
        prop::option::of(-2i64..10),
        prop::option::of(kind()),
        prop::option::of(0i64..3),
    )
        .prop_map(|(status, minute, kind, used_before)| {
            let activity_date = minute.map(|m| base_time() + Duration::minutes(m));
            MemberState {
                status: status.to_owned(),
                activity_date,
                activity_kind: minute.and(kind),
                once_only_at: activity_date
                    .zip(used_before)
                    .map(|(date, back)| date - Duration::minutes(back)),
                detail: Default::default(),
            }
        })
}

fn mode() -> impl Strategy<Value = StatusRefresh> {
    prop::sample::select(vec![
        StatusRefresh::Never,
        StatusRefresh::Always,
        StatusRefresh::OnceOnly,
        StatusRefresh::ForwardOnly,
    ])
}

/// Splits activities into consecutive syncs the way polling delivers them: in time order, cut at
/// arbitrary points (activities of one minute may straddle a cut), each sync's batch in any order.
fn split_into_syncs(mut all: Vec<Occurrence>, cuts: &[Index], shuffles: &[Vec<Index>]) -> Vec<Vec<Occurrence>> {
    all.sort_by_key(|o| o.at);
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(all.len() + 1)).collect();
    points.push(0);
    points.push(all.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .zip(shuffles.iter().cycle())
        .map(|(w, swaps)| {
            let mut batch = all[w[0]..w[1]].to_vec();
            for (i, swap) in swaps.iter().enumerate() {
                if !batch.is_empty() {
                    let j = swap.index(batch.len());
                    let i = i % batch.len();
                    batch.swap(i, j);
                }
            }
            batch
        })
        .collect()
}

fn apply_syncs(start: &MemberState, syncs: &[Vec<Occurrence>], settings: &Settings) -> Vec<MemberState> {
    let mut states = vec![start.clone()];
    for batch in syncs {
        let next = decide_member(states.last().unwrap_or(start), batch, settings).after;
        states.push(next);
    }
    states
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `always` and `forward_only`: the outcome does not depend on the order of the activities.
    #[test]
    fn order_does_not_matter(
        mode in prop::sample::select(vec![StatusRefresh::Always, StatusRefresh::ForwardOnly]),
        start in member(),
        acts in activities().prop_shuffle().prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle())),
    ) {
        let settings = settings(mode);
        let (one_order, other_order) = acts;
        prop_assert_eq!(
            decide_member(&start, &one_order, &settings).after,
            decide_member(&start, &other_order, &settings).after
        );
    }

    /// Every mode: the outcome is the same whether the activities arrive in one sync or split
    /// over several consecutive ones, activities of one minute straddling a cut included (for
    /// `once_only`: an open and a click at the same moment give Clicked either way).
    #[test]
    fn sync_boundaries_do_not_matter(
        mode in mode(),
        start in member(),
        acts in activities(),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        shuffles in prop::collection::vec(prop::collection::vec(any::<Index>(), 0..6), 1..4),
    ) {
        let settings = settings(mode);
        let one_sync = decide_member(&start, &acts, &settings).after;
        let syncs = split_into_syncs(acts, &cuts, &shuffles);
        let states = apply_syncs(&start, &syncs, &settings);
        prop_assert_eq!(states.last(), Some(&one_sync));
    }

    /// In every mode, an activity dated before the Activity Date, or at it with a kind ranked no
    /// higher than the kept kind (or with no kept kind: a hand-set date), changes nothing.
    #[test]
    fn old_activity_never_changes_the_member(
        mode in mode(),
        start in member(),
        kind in kind(),
        back in 0i64..5,
    ) {
        let settings = settings(mode);
        let rank = StatusRank::default();
        let Some(date) = start.activity_date else { return Ok(()) };
        let at = date - Duration::minutes(back);
        let ranks_higher = start.activity_kind.is_some_and(|kept| rank.of(kind) > rank.of(kept));
        prop_assume!(back > 0 || !ranks_higher);
        let decision = decide_member(&start, &[Occurrence { kind, at }], &settings);
        prop_assert!(!decision.needs_write(), "{:?}", decision);
    }

    /// `once_only` uses its single update once, over any number of syncs: after it, the Status
    /// only changes to refine that choice (a higher-ranked interaction at the same moment).
    #[test]
    fn once_only_uses_its_update_once(
        start in member().prop_map(|m| MemberState { once_only_at: None, ..m }),
        acts in activities(),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        shuffles in prop::collection::vec(prop::collection::vec(any::<Index>(), 0..6), 1..4),
    ) {
        let settings = settings(StatusRefresh::OnceOnly);
        let syncs = split_into_syncs(acts, &cuts, &shuffles);
        let states = apply_syncs(&start, &syncs, &settings);
        for pair in states.windows(2) {
            if let Some(moment) = pair[0].once_only_at {
                prop_assert_eq!(pair[1].once_only_at, Some(moment), "the moment never moves: {:?}", states);
                if pair[0].status != pair[1].status {
                    prop_assert!(
                        settings.rank_of_label(&pair[1].status) > settings.rank_of_label(&pair[0].status),
                        "only a higher-ranked refinement: {:?}", states
                    );
                }
            }
        }
    }

    /// Every mode: a member whose Status the mapping does not name (set by hand) keeps it when
    /// the only activity is Sent (a first sync of a newly linked campaign).
    #[test]
    fn sent_never_replaces_a_hand_set_status(
        mode in mode(),
        start in member().prop_filter("hand-set", |m| HAND_SET.contains(&m.status.as_str())),
        minutes in prop::collection::vec(0i64..8, 0..3),
    ) {
        let sent: Vec<Occurrence> = minutes
            .into_iter()
            .map(|m| Occurrence { kind: ActivityKind::Sent, at: base_time() + Duration::minutes(m) })
            .collect();
        let decision = decide_member(&start, &sent, &settings(mode));
        prop_assert_eq!(&decision.after.status, &start.status);
    }

    /// `forward_only` keeps a hand-set Status under any activity, in any number of syncs.
    #[test]
    fn forward_only_keeps_a_hand_set_status(
        start in member().prop_filter("hand-set", |m| HAND_SET.contains(&m.status.as_str())),
        acts in activities(),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        shuffles in prop::collection::vec(prop::collection::vec(any::<Index>(), 0..6), 1..4),
    ) {
        let settings = settings(StatusRefresh::ForwardOnly);
        let states = apply_syncs(&start, &split_into_syncs(acts, &cuts, &shuffles), &settings);
        prop_assert!(states.iter().all(|state| state.status == start.status), "{:?}", states);
    }

    /// `never` never changes the Status; the Activity Date still only moves forward.
    #[test]
    fn never_never_changes_the_status(start in member(), acts in activities()) {
        let decision = decide_member(&start, &acts, &settings(StatusRefresh::Never));
        prop_assert_eq!(&decision.after.status, &start.status);
        prop_assert!(decision.after.activity_date >= start.activity_date);
    }

    /// In every mode the Activity Date never moves backwards, and a replay is a no-op.
    #[test]
    fn activity_date_only_advances_and_replays_are_idempotent(mode in mode(), start in member(), acts in activities()) {
        let settings = settings(mode);
        let first = decide_member(&start, &acts, &settings);
        prop_assert!(first.after.activity_date >= start.activity_date);
        let replay = decide_member(&first.after, &acts, &settings);
        prop_assert!(!replay.needs_write());
    }

    /// `forward_only` only climbs: the Status's rank never falls.
    #[test]
    fn forward_only_only_climbs(start in member(), acts in activities()) {
        let settings = settings(StatusRefresh::ForwardOnly);
        let decision = decide_member(&start, &acts, &settings);
        prop_assert!(settings.rank_of_label(&decision.after.status) >= settings.rank_of_label(&start.status));
    }
}
