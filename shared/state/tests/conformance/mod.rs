//! One conformance suite for every store implementation: each case is a generic async function,
//! and `conformance_suite!` turns the list into `#[tokio::test]`s for one implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mapping::Settings;
use mapping::autocreate::LinkOrigin;
use state::{
    AuditEntry, EventState, FailedRecord, LinkOutcome, LinkRecord, PendingBatch, PreviewRecord, RunCheckpoint,
    RunCommit, RunFailure, RunRecord, RunStart, RunStatus, Store, StoreError, WebhookBatchRecord, WebhookEventRecord,
    new_run_id,
};

pub fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).single().unwrap() + Duration::minutes(minute)
}

fn settings() -> Settings {
    Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], mapping::Tz::UTC)
}

fn link(cm: &str, sf: &str) -> LinkRecord {
    LinkRecord {
        cm_campaign_id: cm.into(),
        sf_campaign_id: sf.into(),
        origin: LinkOrigin::AutoCreated,
        linked_at: at(0),
    }
}

pub async fn settings_are_versioned<S: Store>(store: Arc<S>) {
    assert!(store.load_settings().await.unwrap().is_none());
    assert_eq!(store.save_settings(&settings(), None, at(0)).await.unwrap(), 1);
    let loaded = store.load_settings().await.unwrap().unwrap();
    assert_eq!(
        (loaded.settings, loaded.version, loaded.updated_at),
        (settings(), 1, at(0))
    );

    // A second "first save" and a stale version are both refused, naming what is stored.
    let conflict = store.save_settings(&settings(), None, at(1)).await.unwrap_err();
    assert!(
        matches!(
            conflict,
            StoreError::VersionConflict {
                expected: None,
                found: Some(1)
            }
        ),
        "{conflict:?}"
    );
    let mut changed = settings();
    changed.record_bounces = false;
    assert_eq!(store.save_settings(&changed, Some(1), at(2)).await.unwrap(), 2);
    let stale = store.save_settings(&settings(), Some(1), at(3)).await.unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::VersionConflict {
                expected: Some(1),
                found: Some(2)
            }
        ),
        "{stale:?}"
    );
    assert!(!store.load_settings().await.unwrap().unwrap().settings.record_bounces);
}

pub async fn concurrent_settings_writers_one_wins<S: Store + 'static>(store: Arc<S>) {
    store.save_settings(&settings(), None, at(0)).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = settings();
                mine.cm_lists = vec![format!("{i:032x}")];
                store.save_settings(&mine, Some(1), at(i)).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => {
                assert_eq!(version, 2);
                wins += 1;
            }
            Err(StoreError::VersionConflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

pub async fn links_are_one_to_one<S: Store + 'static>(store: Arc<S>) {
    assert_eq!(
        store.put_link(&link("cm1", "701A")).await.unwrap(),
        LinkOutcome::Created
    );
    assert_eq!(
        store.put_link(&link("cm1", "701A")).await.unwrap(),
        LinkOutcome::AlreadyLinked
    );
    let other_sf = store.put_link(&link("cm1", "701B")).await.unwrap_err();
    assert!(
        other_sf.to_string().contains("linked to SF Campaign 701A"),
        "{other_sf}"
    );
    let other_cm = store.put_link(&link("cm2", "701A")).await.unwrap_err();
    assert!(other_cm.to_string().contains("linked to CM campaign cm1"), "{other_cm}");

    assert_eq!(store.link("cm1").await.unwrap().unwrap().sf_campaign_id, "701A");
    assert_eq!(store.cm_campaign_for("701A").await.unwrap().as_deref(), Some("cm1"));
    assert_eq!(store.links().await.unwrap(), vec![link("cm1", "701A")]);

    store.delete_link("cm1").await.unwrap();
    store.delete_link("cm1").await.unwrap(); // absent is fine
    assert!(store.link("cm1").await.unwrap().is_none());
    assert!(store.cm_campaign_for("701A").await.unwrap().is_none());

    // Two CM campaigns racing for one SF Campaign: exactly one link is made.
    let racers: Vec<_> = ["cmX", "cmY", "cmZ"]
        .into_iter()
        .map(|cm| {
            let store = store.clone();
            tokio::spawn(async move { store.put_link(&link(cm, "701R")).await })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        if let Ok(LinkOutcome::Created) = racer.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert!(store.cm_campaign_for("701R").await.unwrap().is_some());
}

pub async fn watermarks_never_move_backwards<S: Store>(store: Arc<S>) {
    assert!(store.watermark("cm1", "Opened").await.unwrap().is_none());
    assert!(store.advance_watermark("cm1", "Opened", at(20)).await.unwrap());
    assert!(
        !store.advance_watermark("cm1", "Opened", at(10)).await.unwrap(),
        "backwards"
    );
    assert!(
        !store.advance_watermark("cm1", "Opened", at(20)).await.unwrap(),
        "same place"
    );
    assert_eq!(store.watermark("cm1", "Opened").await.unwrap(), Some(at(20)));
    assert!(store.advance_watermark("cm1", "Opened", at(21)).await.unwrap());
    assert!(store.advance_watermark("cm1", "Clicked", at(5)).await.unwrap());
    assert!(store.advance_watermark("cm2", "Opened", at(99)).await.unwrap());
    let all = store.watermarks("cm1").await.unwrap();
    assert_eq!(
        all,
        BTreeMap::from([("Clicked".to_owned(), at(5)), ("Opened".to_owned(), at(21))])
    );
    // Only an explicit reset takes a scope back to nothing; other scopes keep theirs.
    assert_eq!(store.reset_watermarks("cm1").await.unwrap(), 2);
    assert!(store.watermarks("cm1").await.unwrap().is_empty());
    assert_eq!(store.watermark("cm2", "Opened").await.unwrap(), Some(at(99)));
    assert!(store.advance_watermark("cm1", "Opened", at(1)).await.unwrap());
}

pub fn webhook_event(key: &str, name: &str) -> WebhookEventRecord {
    WebhookEventRecord {
        dedupe_key: key.into(),
        list_id: "list-1".into(),
        payload: serde_json::json!({"Type": "Deactivate", "State": "Unsubscribed", "Name": name}),
        person: Some(format!("p-{key}")),
        received_at: at(0),
        expires_at: at(0) + Duration::days(30),
        state: EventState::Received,
        attempts: 0,
    }
}

pub fn batch(id: &str, events: &[WebhookEventRecord]) -> WebhookBatchRecord {
    let received_at = events.first().map_or(at(0), |e| e.received_at);
    WebhookBatchRecord {
        batch: format!("{}#{id}", received_at.to_rfc3339()),
        list_id: "list-1".into(),
        received_at,
        expires_at: at(0) + Duration::days(30),
        events: events.to_vec(),
        refused: Vec::new(),
    }
}

fn keys(batch: &Option<PendingBatch>) -> Vec<String> {
    batch
        .iter()
        .flat_map(|b| b.events.iter().map(|e| e.dedupe_key.clone()))
        .collect()
}

pub async fn a_redelivered_batch_records_nothing_new_and_hands_on_only_what_is_not_applied<S: Store>(store: Arc<S>) {
    let first = batch("b1", &[webhook_event("k1", "first"), webhook_event("k2", "first")]);
    let recorded = store.record_webhook_batch(&first).await.unwrap();
    assert_eq!((recorded.new, recorded.duplicates, recorded.to_apply), (2, 0, 2));
    assert_eq!(
        keys(&store.pending_webhook_batch(&first.batch).await.unwrap()),
        ["k1", "k2"]
    );

    // k1 applied; the batch is redelivered with k1 changed (a redelivery never overwrites) and k3.
    let mut applied = webhook_event("k1", "first");
    applied.state = EventState::Applied {
        outcome: "opted out 003A".into(),
    };
    store.save_webhook_events(std::slice::from_ref(&applied)).await.unwrap();
    let again = batch(
        "b2",
        &[
            webhook_event("k1", "second"),
            webhook_event("k2", "second"),
            webhook_event("k3", "x"),
        ],
    );
    let recorded = store.record_webhook_batch(&again).await.unwrap();
    assert_eq!((recorded.new, recorded.duplicates, recorded.to_apply), (1, 2, 2));
    let pending = store.pending_webhook_batch(&again.batch).await.unwrap();
    assert_eq!(
        keys(&pending),
        ["k2", "k3"],
        "k2 is handed on again: its first hand-off may be lost"
    );
    assert_eq!(store.webhook_event("k1").await.unwrap().unwrap(), applied);
    assert_eq!(
        store.webhook_event("k2").await.unwrap().unwrap(),
        webhook_event("k2", "first")
    );
    assert_eq!(
        store.webhook_event("k3").await.unwrap().unwrap().expires_at,
        at(0) + Duration::days(30)
    );

    // A batch whose every event is applied hands nothing on.
    let only_applied = store
        .record_webhook_batch(&batch("b3", &[webhook_event("k1", "third")]))
        .await
        .unwrap();
    assert_eq!(only_applied.to_apply, 0);
    assert!(!only_applied.pending, "nothing to hand on");

    // A batch with refused events is pending even with nothing to apply: they are reported.
    let refused = WebhookBatchRecord {
        refused: vec!["Events[1]: EmailAddress is not an email address".into()],
        ..batch("b4", &[webhook_event("k1", "fourth")])
    };
    let recorded = store.record_webhook_batch(&refused).await.unwrap();
    assert!(recorded.pending && recorded.to_apply == 0, "{recorded:?}");
    let pending = store.pending_webhook_batch(&refused.batch).await.unwrap().unwrap();
    assert_eq!(pending.refused, refused.refused);
    assert!(pending.events.is_empty());
    assert!(store.webhook_event("nope").await.unwrap().is_none());
    assert!(store.pending_webhook_batch("nope").await.unwrap().is_none());
}

/// Overlapping deliveries of the same new events (CM retries while the first is still being
/// recorded): every delivery hands every event on, each event is recorded once (deliveries
/// that looked at the same moment may each count it new), and one the consumer applied
/// meanwhile is never put back to Received.
pub async fn overlapping_deliveries_record_each_event_once<S: Store + 'static>(store: Arc<S>) {
    let events: Vec<_> = (0..40).map(|i| webhook_event(&format!("o{i}"), "first")).collect();
    let deliveries: Vec<_> = (0..8)
        .map(|d| {
            let store = store.clone();
            let delivery = batch(&format!("d{d}"), &events);
            tokio::spawn(async move { store.record_webhook_batch(&delivery).await })
        })
        .collect();
    let mut new = 0;
    let mut duplicates = 0;
    for delivery in deliveries {
        let recorded = delivery.await.unwrap().unwrap();
        assert_eq!(recorded.to_apply, 40, "nothing applied yet: every event handed on");
        new += recorded.new;
        duplicates += recorded.duplicates;
    }
    assert_eq!(new + duplicates, 8 * 40, "every event of every delivery counted");
    assert!(new >= 40, "each event new at least once: {new}");
    for event in &events {
        assert_eq!(
            store.webhook_event(&event.dedupe_key).await.unwrap().as_ref(),
            Some(event),
            "recorded as received"
        );
    }

    // Applied, then the late deliveries meet: the applied state stands.
    let applied: Vec<_> = events
        .iter()
        .map(|e| WebhookEventRecord {
            state: EventState::Applied { outcome: "done".into() },
            ..e.clone()
        })
        .collect();
    store.save_webhook_events(&applied).await.unwrap();
    let late: Vec<_> = (0..4)
        .map(|d| {
            let store = store.clone();
            let delivery = batch(&format!("late{d}"), &events);
            tokio::spawn(async move { store.record_webhook_batch(&delivery).await })
        })
        .collect();
    for delivery in late {
        let recorded = delivery.await.unwrap().unwrap();
        assert_eq!((recorded.new, recorded.to_apply), (0, 0), "{recorded:?}");
    }
    for event in &applied {
        assert_eq!(
            store.webhook_event(&event.dedupe_key).await.unwrap().as_ref(),
            Some(event)
        );
    }
}

pub async fn pending_batches_stay_listed_until_finished<S: Store>(store: Arc<S>) {
    for (minute, id) in [(2, "late"), (0, "early"), (1, "middle")] {
        let event = WebhookEventRecord {
            received_at: at(minute),
            ..webhook_event(&format!("k-{id}"), "x")
        };
        store.record_webhook_batch(&batch(id, &[event])).await.unwrap();
    }
    let listed = |batches: Vec<PendingBatch>| {
        batches
            .into_iter()
            .map(|b| b.events[0].dedupe_key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(store.pending_webhook_batches(None, 10).await.unwrap()),
        ["k-early", "k-middle", "k-late"],
        "oldest first"
    );
    assert_eq!(
        listed(store.pending_webhook_batches(None, 2).await.unwrap()),
        ["k-early", "k-middle"]
    );
    let first = store.pending_webhook_batches(None, 1).await.unwrap().remove(0);
    assert_eq!(
        listed(store.pending_webhook_batches(Some(&first.batch), 10).await.unwrap()),
        ["k-middle", "k-late"],
        "after a batch id: where a sweep goes on"
    );
    let middle = store.pending_webhook_batches(None, 10).await.unwrap().remove(1);
    store.finish_webhook_batch(&middle.batch).await.unwrap();
    assert_eq!(
        listed(store.pending_webhook_batches(None, 10).await.unwrap()),
        ["k-early", "k-late"]
    );
    assert!(store.pending_webhook_batch(&middle.batch).await.unwrap().is_none());
}

pub async fn only_one_concurrent_lease_taker_wins<S: Store + 'static>(store: Arc<S>) {
    let takers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.acquire_lease("all", &format!("owner-{i}"), at(0), at(5)).await })
        })
        .collect();
    let mut winners = BTreeSet::new();
    for taker in takers {
        if let Some(lease) = taker.await.unwrap().unwrap() {
            winners.insert(lease.owner);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
}

pub async fn leases_expire_renew_and_release<S: Store>(store: Arc<S>) {
    let held = store.acquire_lease("cm1", "a", at(0), at(5)).await.unwrap().unwrap();
    assert_eq!(held.until, at(5));
    assert!(
        store.acquire_lease("cm1", "b", at(4), at(9)).await.unwrap().is_none(),
        "held by a"
    );
    // The holder renews.
    assert_eq!(
        store
            .acquire_lease("cm1", "a", at(4), at(9))
            .await
            .unwrap()
            .unwrap()
            .until,
        at(9)
    );
    // After expiry (a crashed run), another takes over.
    let taken = store.acquire_lease("cm1", "b", at(10), at(15)).await.unwrap().unwrap();
    assert_eq!(taken.owner, "b");
    // A stale owner's release changes nothing; the holder's release frees it.
    store.release_lease("cm1", "a").await.unwrap();
    assert!(store.acquire_lease("cm1", "c", at(11), at(16)).await.unwrap().is_none());
    store.release_lease("cm1", "b").await.unwrap();
    assert!(store.acquire_lease("cm1", "c", at(11), at(16)).await.unwrap().is_some());
    // Scopes are independent.
    assert!(store.acquire_lease("cm2", "d", at(11), at(16)).await.unwrap().is_some());
}

pub async fn a_run_commits_only_while_it_holds_its_lease<S: Store>(store: Arc<S>) {
    let run = |id: &str| RunRecord {
        run_id: id.into(),
        scope: "cm1".into(),
        started_at: at(0),
        ended_at: None,
        status: RunStatus::Running,
        counts: BTreeMap::new(),
        failure_count: 0,
        resumed_at: None,
        expires_at: None,
    };
    let progress = |minute: i64| state::CampaignProgress {
        probe: Some(mapping::probe::ActivityProbe {
            counts: BTreeMap::from([("TotalOpened".into(), minute)]),
            seen_at: at(minute),
        }),
        statistics: Some(mapping::probe::WrittenStatistics {
            sf_campaign_id: "701A".into(),
            values: BTreeMap::from([("CM_Clicks__c".into(), minute)]),
        }),
        sent_at: Some(at(0)),
        // What the overlap window applied: kept with the progress, slice times as map keys.
        recent: mapping::overlap::RecentCounts {
            streams: BTreeMap::from([(
                "opens".into(),
                BTreeMap::from([
                    (
                        at(minute - 15),
                        mapping::overlap::Tally {
                            count: 2,
                            digest: Some(0x5eed),
                        },
                    ),
                    (at(minute), mapping::overlap::Tally::EMPTY),
                ]),
            )]),
        },
        // A recipients' read cut short goes on from this page: kept with the progress.
        recipients_from_page: Some(minute + 2),
    };
    let commit = |id: &str, minute: i64| RunCommit {
        scope: "cm1".into(),
        watermarks: BTreeMap::from([("opens".into(), at(minute)), ("clicks".into(), at(minute))]),
        run_id: id.into(),
        ended_at: at(minute),
        status: RunStatus::Succeeded,
        counts: BTreeMap::from([("activities".into(), 3)]),
        progress: Some(progress(minute)),
        next_sync: Some(mapping::cadence::NextSync::At {
            at: at(minute + 60),
            hot: true,
        }),
    };
    assert_eq!(
        store.campaign_progress("cm1").await.unwrap(),
        state::CampaignProgress::default()
    );
    store.start_run(&run("r1")).await.unwrap();
    store.start_run(&run("r2")).await.unwrap();
    let first = store
        .acquire_lease("campaign:cm1", "r1#a", at(0), at(5))
        .await
        .unwrap()
        .unwrap();
    assert!(store.commit_under_lease(&first, &commit("r1", 4)).await.unwrap());
    assert_eq!(store.watermarks("cm1").await.unwrap()["opens"], at(4));
    let (closed, _) = store.run("r1").await.unwrap().unwrap();
    assert_eq!((closed.status, closed.counts["activities"]), (RunStatus::Succeeded, 3));

    // r1's lease expires and r2 takes it: r1, a zombie now, commits nothing.
    let second = store
        .acquire_lease("campaign:cm1", "r2#b", at(6), at(11))
        .await
        .unwrap()
        .unwrap();
    assert!(!store.commit_under_lease(&first, &commit("r1", 7)).await.unwrap());
    assert!(
        !store.commit_under_lease(&first, &commit("r2", 7)).await.unwrap(),
        "wrong owner"
    );
    assert_eq!(
        store.watermarks("cm1").await.unwrap()["opens"],
        at(4),
        "nothing written"
    );
    assert_eq!(store.campaign_progress("cm1").await.unwrap(), progress(4));
    assert_eq!(store.run("r2").await.unwrap().unwrap().0.status, RunStatus::Running);
    // Past its own expiry the holder cannot commit either; within it, it can.
    assert!(!store.commit_under_lease(&second, &commit("r2", 12)).await.unwrap());
    assert!(store.commit_under_lease(&second, &commit("r2", 10)).await.unwrap());
    assert_eq!(store.watermarks("cm1").await.unwrap()["clicks"], at(10));
    assert_eq!(store.campaign_progress("cm1").await.unwrap(), progress(10));
    assert_eq!(
        store.sync_schedule().await.unwrap(),
        BTreeMap::from([(
            "cm1".to_owned(),
            mapping::cadence::NextSync::At { at: at(70), hot: true }
        )])
    );
    store.reset_watermarks("cm1").await.unwrap();
    assert!(
        store.sync_schedule().await.unwrap().is_empty(),
        "a relinked campaign is due at once"
    );
}

pub async fn runs_keep_counts_and_every_failure<S: Store>(store: Arc<S>) {
    let first = RunRecord {
        run_id: new_run_id(at(0), 1),
        scope: "all".into(),
        started_at: at(0),
        ended_at: None,
        status: RunStatus::Running,
        counts: BTreeMap::new(),
        failure_count: 0,
        resumed_at: None,
        expires_at: Some(at(90 * 24 * 60)),
    };
    let second = RunRecord {
        run_id: new_run_id(at(30), 2),
        started_at: at(30),
        ..first.clone()
    };
    assert_eq!(store.start_run(&first).await.unwrap(), RunStart::New);
    assert_eq!(store.start_run(&second).await.unwrap(), RunStart::New);
    let again = RunRecord {
        started_at: at(60),
        ..first.clone()
    };
    assert_eq!(
        store.start_run(&again).await.unwrap(),
        RunStart::Continued,
        "a run id is used once: starting it again continues it"
    );

    let failures: Vec<RunFailure> = (0..60)
        .map(|i| RunFailure::new(&format!("00v{i:03}"), "UNABLE_TO_LOCK_ROW", Some("UNABLE_TO_LOCK_ROW")))
        .chain([RunFailure::new("Jo@Example.com", "refused: jo@example.com", Some("X"))])
        .collect();
    store.add_run_failures(&first.run_id, &failures[..40]).await.unwrap();
    store.add_run_failures(&first.run_id, &failures[40..]).await.unwrap();
    let counts = BTreeMap::from([("members_updated".to_owned(), 940), ("sf_calls".to_owned(), 12)]);
    store
        .finish_run(&first.run_id, at(3), RunStatus::CompletedWithFailures, &counts)
        .await
        .unwrap();

    let (run, stored_failures) = store.run(&first.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::CompletedWithFailures);
    assert_eq!(run.ended_at, Some(at(3)));
    assert_eq!(run.counts, counts);
    assert_eq!(run.failure_count, 61);
    assert_eq!(run.expires_at, Some(at(90 * 24 * 60)), "the run keeps its expiry");
    let person = stored_failures.iter().find(|f| f.person.is_some()).cloned();
    assert_eq!(
        person,
        Some(RunFailure {
            record: "J***@Example.com".into(),
            person: Some(mapping::email::person_key("jo@example.com")),
            reason: "refused: j***@example.com".into(),
            code: Some("X".into()),
        }),
        "a person's failure keeps their key, never their address"
    );
    let mut records: Vec<String> = stored_failures.into_iter().map(|f| f.record).collect();
    records.sort();
    let mut expected: Vec<String> = failures.iter().map(|f| f.record.clone()).collect();
    expected.sort();
    assert_eq!(records, expected);

    let recent: Vec<String> = store
        .recent_runs(1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(recent, vec![second.run_id.clone()], "newest first");
    assert_eq!(store.recent_runs(10).await.unwrap().len(), 2);
    assert!(store.run("20000101T000000Z-00000000").await.unwrap().is_none());
}

pub async fn a_handed_over_run_resumes_with_what_was_done<S: Store>(store: Arc<S>) {
    let run = RunRecord {
        run_id: "r1:cm1".into(),
        scope: "cm1".into(),
        started_at: at(0),
        ended_at: None,
        status: RunStatus::Running,
        counts: BTreeMap::new(),
        failure_count: 0,
        resumed_at: None,
        expires_at: None,
    };
    store.start_run(&run).await.unwrap();
    let unfinished = |runs: Vec<RunRecord>| runs.into_iter().map(|r| (r.run_id, r.status)).collect::<Vec<_>>();
    assert_eq!(
        unfinished(store.unfinished_runs().await.unwrap()),
        [("r1:cm1".to_owned(), RunStatus::Running)]
    );
    assert_eq!(
        store.resume_run("r1:cm1", at(1)).await.unwrap(),
        None,
        "nothing handed over yet"
    );
    let checkpoint = RunCheckpoint {
        watermarks: BTreeMap::from([("opens".to_owned(), at(-2))]),
        part_count: 4,
        parts_done: 2,
        counts: BTreeMap::from([("members_updated".to_owned(), 2_000)]),
        transient_people: vec!["a@example.com".into()],
        transient_other: false,
        stalled: 0,
        recipients_to_page: None,
    };
    store.hand_over_run("r1:cm1", at(14), &checkpoint).await.unwrap();
    let (handed, _) = store.run("r1:cm1").await.unwrap().unwrap();
    assert_eq!(handed.status, RunStatus::Continued);
    assert_eq!(
        unfinished(store.unfinished_runs().await.unwrap()),
        [("r1:cm1".to_owned(), RunStatus::Continued)],
        "a run handed over and not taken over yet is unfinished"
    );
    assert_eq!(handed.ended_at, Some(at(14)));
    assert_eq!(
        handed.counts["members_updated"], 2_000,
        "what is done shows while it waits"
    );

    assert_eq!(
        store.resume_run("r1:cm1", at(15)).await.unwrap(),
        Some(checkpoint.clone())
    );
    let (resumed, _) = store.run("r1:cm1").await.unwrap().unwrap();
    assert_eq!(
        (resumed.status, resumed.ended_at, resumed.resumed_at, resumed.started_at),
        (RunStatus::Running, None, Some(at(15)), at(0))
    );
    assert!(matches!(
        store.resume_run("r9:cm1", at(15)).await,
        Err(StoreError::Corrupt { .. })
    ));
    // Once the run ends (failed, or committed), a retry of its event starts afresh.
    store
        .finish_run("r1:cm1", at(20), RunStatus::Failed, &BTreeMap::new())
        .await
        .unwrap();
    assert!(unfinished(store.unfinished_runs().await.unwrap()).is_empty());
    assert_eq!(store.resume_run("r1:cm1", at(21)).await.unwrap(), None);
    assert_eq!(
        unfinished(store.unfinished_runs().await.unwrap()).len(),
        1,
        "retried: unfinished again"
    );
    store.hand_over_run("r1:cm1", at(22), &checkpoint).await.unwrap();
    let lease = store
        .acquire_lease("campaign:cm1", "r1#z", at(22), at(30))
        .await
        .unwrap()
        .unwrap();
    let commit = RunCommit {
        scope: "cm1".into(),
        watermarks: checkpoint.watermarks.clone(),
        run_id: "r1:cm1".into(),
        ended_at: at(23),
        status: RunStatus::Succeeded,
        counts: checkpoint.counts.clone(),
        progress: None,
        next_sync: None,
    };
    assert!(store.commit_under_lease(&lease, &commit).await.unwrap());
    assert!(
        unfinished(store.unfinished_runs().await.unwrap()).is_empty(),
        "a committed run is finished"
    );
    assert_eq!(store.resume_run("r1:cm1", at(24)).await.unwrap(), None);
    // A run id never recorded is not listed (only r1, taken over again just now).
    assert!(store.resume_run("r9:cm1", at(25)).await.is_err());
    assert_eq!(
        unfinished(store.unfinished_runs().await.unwrap()),
        [("r1:cm1".to_owned(), RunStatus::Running)]
    );
}

pub async fn failed_records_queue_and_drain<S: Store>(store: Arc<S>) {
    let records: Vec<FailedRecord> = (0..30)
        .map(|i| FailedRecord {
            scope: "cm1".into(),
            key: format!("00v{i:03}"),
            payload: serde_json::json!({"Status": "Clicked"}),
            reason: "UNABLE_TO_LOCK_ROW".into(),
            attempts: 1,
            first_failed_at: at(0),
        })
        .collect();
    store.enqueue_failed(&records).await.unwrap();
    assert_eq!(store.failed_records("cm1", 100).await.unwrap().len(), 30);
    assert_eq!(store.failed_records("cm1", 7).await.unwrap().len(), 7);
    assert!(store.failed_records("cm2", 100).await.unwrap().is_empty());

    // Re-queueing replaces (attempts go up), never duplicates.
    let again = FailedRecord {
        attempts: 2,
        ..records[0].clone()
    };
    store.enqueue_failed(std::slice::from_ref(&again)).await.unwrap();
    let stored = store.failed_records("cm1", 100).await.unwrap();
    assert_eq!(stored.len(), 30);
    assert!(stored.contains(&again));

    let done: Vec<String> = records[..10].iter().map(|r| r.key.clone()).collect();
    store.remove_failed("cm1", &done).await.unwrap();
    assert_eq!(store.failed_records("cm1", 100).await.unwrap().len(), 20);
}

/// Expands to one `#[tokio::test]` per case, each on a fresh store made by `$make` (an async
/// block yielding a store).
pub async fn the_audit_lists_changes_newest_first<S: Store>(store: Arc<S>) {
    assert!(store.recent_changes(10).await.unwrap().is_empty());
    let change = |minute: i64, actor: &str, action: &str, versions: Option<(u64, u64)>| AuditEntry {
        at: at(minute),
        actor: actor.into(),
        action: action.into(),
        version_before: versions.map(|v| v.0),
        version_after: versions.map(|v| v.1),
        expires_at: Some(at(minute) + Duration::days(90)),
    };
    let made = [
        change(0, "cli", "settings changed: status_refresh", Some((1, 2))),
        change(5, "005SB00000000A1AAA", "retry of run r1: 2 people queued", None),
        change(5, "cli", "unlink of CM campaign c1", None),
        change(9, "005SB00000000A1AAA", "settings changed: cadence", Some((2, 3))),
    ];
    for entry in &made {
        store.record_change(entry).await.unwrap();
    }
    let newest = store.recent_changes(10).await.unwrap();
    assert_eq!(newest.len(), 4, "two changes of one instant are both kept");
    assert_eq!(newest[0], made[3]);
    assert_eq!(newest[3], made[0]);
    let actions: BTreeSet<&str> = newest[1..3].iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        BTreeSet::from([made[1].action.as_str(), made[2].action.as_str()])
    );
    assert_eq!(store.recent_changes(2).await.unwrap(), newest[..2].to_vec());
}

pub async fn a_preview_is_kept_and_answered<S: Store>(store: Arc<S>) {
    assert!(store.preview("p1").await.unwrap().is_none());
    let mut preview = PreviewRecord {
        preview_id: "p1".into(),
        requested_by: "005SB00000000A1AAA".into(),
        requested_at: at(0),
        base_version: 3,
        proposed: Some(settings().to_json()),
        campaigns: vec!["cm1".into(), "cm2".into()],
        result: None,
        expires_at: at(60),
    };
    store.save_preview(&preview).await.unwrap();
    assert_eq!(store.preview("p1").await.unwrap().as_ref(), Some(&preview));
    preview.result = Some(serde_json::json!([{"cm": "cm1"}]));
    store.save_preview(&preview).await.unwrap();
    assert_eq!(store.preview("p1").await.unwrap(), Some(preview.clone()));
    let dry_run = PreviewRecord {
        preview_id: "p2".into(),
        proposed: None,
        campaigns: vec!["cm1".into()],
        ..preview
    };
    store.save_preview(&dry_run).await.unwrap();
    assert_eq!(store.preview("p2").await.unwrap(), Some(dry_run));
}

pub async fn the_catalog_is_replaced_whole<S: Store>(store: Arc<S>) {
    use mapping::autocreate::{CmCampaignState, DiscoveredCampaign};
    assert!(store.catalog().await.unwrap().is_none());
    assert!(store.catalog_refreshed_at().await.unwrap().is_none());
    let campaign = |i: usize| DiscoveredCampaign {
        cm_campaign_id: format!("{i:032x}"),
        cm_client_id: "client".into(),
        // Long names: the big catalog needs more than one part.
        name: format!("Campaign {i} <b>&'\"{}", "n".repeat(200)),
        subject: "Hello".into(),
        state: if i.is_multiple_of(3) {
            CmCampaignState::Draft
        } else {
            CmCampaignState::Sent
        },
        sent_at: (!i.is_multiple_of(3)).then(|| at(i as i64)),
        created_at: (i.is_multiple_of(3)).then(|| at(i as i64)),
    };
    let big = state::CatalogRecord {
        refreshed_at: at(0),
        campaigns: (0..3_000).map(campaign).collect(),
    };
    store.save_catalog(&big).await.unwrap();
    assert_eq!(store.catalog().await.unwrap().as_ref(), Some(&big));
    // A smaller catalog later replaces it: no campaign of the old one is left.
    let small = state::CatalogRecord {
        refreshed_at: at(60),
        campaigns: (0..2).map(campaign).collect(),
    };
    store.save_catalog(&small).await.unwrap();
    assert_eq!(store.catalog().await.unwrap(), Some(small));
    assert_eq!(store.catalog_refreshed_at().await.unwrap(), Some(at(60)));
}

pub async fn a_parked_batch_leaves_the_pending_list_until_unparked_and_keeps_its_attempts<S: Store>(store: Arc<S>) {
    for (minute, id) in [(0, "stuck"), (1, "newer")] {
        let event = WebhookEventRecord {
            received_at: at(minute),
            ..webhook_event(&format!("k-{id}"), "x")
        };
        store.record_webhook_batch(&batch(id, &[event])).await.unwrap();
    }
    let stuck = store.pending_webhook_batches(None, 10).await.unwrap().remove(0);
    let tried = WebhookEventRecord {
        attempts: state::MAX_WEBHOOK_ATTEMPTS,
        state: EventState::Failed {
            reason: "FIELD_CUSTOM_VALIDATION_EXCEPTION: no".into(),
        },
        ..stuck.events[0].clone()
    };
    store.save_webhook_events(std::slice::from_ref(&tried)).await.unwrap();
    store.park_webhook_batch(&stuck.batch).await.unwrap();
    store.park_webhook_batch(&stuck.batch).await.unwrap(); // twice: nothing more

    let pending = store.pending_webhook_batches(None, 1).await.unwrap();
    assert_eq!(
        pending[0].events[0].dedupe_key, "k-newer",
        "the parked batch hides nothing"
    );
    assert!(store.pending_webhook_batch(&stuck.batch).await.unwrap().is_none());
    let parked = store.parked_webhook_batches(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    let backlog = store.webhook_backlog(10).await.unwrap();
    assert_eq!(
        backlog
            .iter()
            .map(|b| (b.batch.as_str(), b.events, b.parked))
            .collect::<Vec<_>>(),
        [(stuck.batch.as_str(), 1, true), (pending[0].batch.as_str(), 1, false)],
        "both lists, oldest first, without reading an event"
    );
    assert_eq!(
        parked[0].events,
        vec![tried.clone()],
        "its events and their attempts kept"
    );

    store.unpark_webhook_batch(&stuck.batch).await.unwrap();
    assert!(store.parked_webhook_batches(10).await.unwrap().is_empty());
    let back = store.pending_webhook_batch(&stuck.batch).await.unwrap().unwrap();
    assert_eq!(back.events[0].attempts, state::MAX_WEBHOOK_ATTEMPTS);
    assert_eq!(store.pending_webhook_batches(None, 10).await.unwrap().len(), 2);
}

pub async fn shared_tokens_are_saved_only_over_the_version_read<S: Store + 'static>(store: Arc<S>) {
    let tokens = |version: u64, sealed: &str| state::SealedTokens {
        credential: "cm".into(),
        version,
        sealed: sealed.into(),
        seed: "seed".into(),
        saved_at: at(version as i64),
    };
    assert_eq!(store.sealed_tokens("cm").await.unwrap(), None);
    assert!(
        !store.save_sealed_tokens(&tokens(2, "skipped")).await.unwrap(),
        "no version 1 yet"
    );
    assert!(store.save_sealed_tokens(&tokens(1, "first")).await.unwrap());
    // Five containers saving over the same version read: one wins.
    let savers: Vec<_> = (0..5)
        .map(|i| {
            let store = store.clone();
            let mine = tokens(2, &format!("second-{i}"));
            tokio::spawn(async move { store.save_sealed_tokens(&mine).await })
        })
        .collect();
    let mut won = 0;
    for saver in savers {
        won += usize::from(saver.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
    let stored = store.sealed_tokens("cm").await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert!(stored.sealed.starts_with("second-"));
    assert_eq!(stored.saved_at, at(2));
    assert_eq!(
        store.sealed_tokens("sf").await.unwrap(),
        None,
        "one item per credential"
    );
}

#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            settings_are_versioned,
            concurrent_settings_writers_one_wins,
            links_are_one_to_one,
            watermarks_never_move_backwards,
            a_redelivered_batch_records_nothing_new_and_hands_on_only_what_is_not_applied,
            only_one_concurrent_lease_taker_wins,
            leases_expire_renew_and_release,
            a_run_commits_only_while_it_holds_its_lease,
            runs_keep_counts_and_every_failure,
            a_handed_over_run_resumes_with_what_was_done,
            pending_batches_stay_listed_until_finished,
            a_parked_batch_leaves_the_pending_list_until_unparked_and_keeps_its_attempts,
            overlapping_deliveries_record_each_event_once,
            failed_records_queue_and_drain,
            the_audit_lists_changes_newest_first,
            a_preview_is_kept_and_answered,
            the_catalog_is_replaced_whole,
            shared_tokens_are_saved_only_over_the_version_read);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = std::sync::Arc::new($make.await);
                conformance::$case(store).await;
            }
        )*
    };
}
