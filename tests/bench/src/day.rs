//! A simulated day of an account with many linked campaigns (issue #20): one campaign sent each
//! day for years, engagement decaying after each send, 96 scheduled runs 15 minutes apart (and,
//! in the hot variant, the hot schedule's runs in between). Every run does what the deployed
//! functions do, in process on the in-memory store: the scheduled run (discovery, links, list
//! backstop, the retired campaigns' daily check) or the hot run, and a sync of each campaign it
//! asks for, each counted as a Lambda invocation. CM and SF calls are the sandbox's own counts. An activity counts as in
//! Salesforce from the end of the first sync whose committed watermarks pass its date (they move
//! only once the writes below them succeeded).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};
use engine::campaign::Mode;
use engine::{Deadline, Engine};
use events::publisher::MemorySink;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sandbox::generate::{Shape, generate};
use serde_json::json;
use state::WatermarkStore;
use state::memory::MemoryStore;

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Scheduled runs in the day (every 15 minutes).
const RUNS: i64 = 96;
/// The hot schedule runs every 5 minutes: three ticks per scheduled run.
const TICK_MINUTES: i64 = 5;
const TICKS_PER_RUN: i64 = 3;
/// The schedule's phase: runs at 00:22, 00:37, ... and the day's last at 00:07 the next day, the
/// first run after the day's end (a `rate(15 minutes)` schedule has an arbitrary phase).
const PHASE_MINUTES: i64 = 7;

/// Which schedule the day runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Every linked campaign at every scheduled run (the cadence off).
    Off,
    /// The cadence's defaults.
    On,
    /// The cadence's defaults and the hot schedule every 5 minutes.
    Hot,
}

impl Variant {
    /// From the command line's name.
    pub fn parse(name: &str) -> Result<Variant, String> {
        match name {
            "off" => Ok(Variant::Off),
            "on" => Ok(Variant::On),
            "hot" => Ok(Variant::Hot),
            other => Err(format!("unknown variant {other:?}: off, on or hot")),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Off => "off (every campaign, every run)",
            Variant::On => "on (defaults)",
            Variant::Hot => "on, and the hot schedule every 5 minutes",
        }
    }
}

/// What one simulated day cost, and how fresh Salesforce was.
#[derive(Debug, Clone)]
pub struct DayFigures {
    /// The schedule.
    pub variant: Variant,
    /// Linked campaigns.
    pub campaigns: usize,
    /// Salesforce API calls (reads and writes) over the day.
    pub sf_calls: u64,
    /// Campaign Monitor API calls over the day.
    pub cm_calls: u64,
    /// Lambda invocations: the scheduled (and hot) runs and the syncs they asked for.
    pub invocations: u64,
    /// Of them, the scheduled and hot runs (each an EventBridge Scheduler invocation).
    pub scheduled_runs: u64,
    /// Minutes from an activity's date to its campaign's sync that applied it, for campaigns
    /// under 48 hours old.
    pub freshness_hot: Vec<f64>,
    /// Seconds the invocations took in process (sandbox at no added latency): their own work
    /// and the stand-ins', without the network's.
    pub compute_s: f64,
    /// State store operations over the day (each one DynamoDB request or more).
    pub store_operations: u64,
    /// Events published to the bus (each a `PutEvents` entry).
    pub events_published: u64,
    /// Activities of the day.
    pub activities: usize,
    /// Of them, applied by the first scheduled run after the day's end.
    pub applied: usize,
    /// Of them, on retired campaigns (found by the retired campaigns' daily check).
    pub on_retired: usize,
}

struct Pending {
    campaign: String,
    date: NaiveDateTime,
    hot: bool,
}

/// Engagement of a campaign `age_days` old over one day: most in the first hours, a long tail.
fn opens_today(age_days: f64, rng: &mut ChaCha8Rng) -> usize {
    let expected = 60.0 * (-age_days / 1.5).exp() + 0.02;
    let whole = expected.floor() as usize;
    whole + usize::from(rng.random::<f64>() < expected - expected.floor())
}

/// Simulates the day: CM's local calendar day after the newest send, its activity becoming
/// visible in CM as the day goes, the runs of the schedule until the first one after the day's
/// end.
pub async fn simulate(campaigns: usize, variant: Variant) -> Result<DayFigures, String> {
    let scenario = generate(&Shape {
        seed: 20,
        recipients: 400,
        activities: 0,
        extra_campaigns: campaigns.saturating_sub(1),
        ..Shape::default()
    });
    let running = harness::start_sandbox(scenario.clone()).await?;
    let control = harness::Control::of(&running);
    let mut settings = harness::settings_for(&scenario)?;
    settings.sync_cadence.enabled = variant != Variant::Off;
    let mut engine = harness::memory_engine(&running, &settings).await?;
    // Salesforce's own retry policy: a busy sandbox is waited for, as a busy org would be.
    engine.sf =
        std::sync::Arc::new(salesforce::SfClient::new(harness::sf_config(&running.sf_url)).map_err(|e| e.to_string())?);
    let sent: BTreeMap<String, NaiveDateTime> = scenario
        .cm
        .campaigns
        .iter()
        .filter_map(|c| {
            Some((
                c.id.clone(),
                NaiveDateTime::parse_from_str(c.sent_date.as_deref()?, FORMAT).ok()?,
            ))
        })
        .collect();
    let newest = sent.values().max().copied().ok_or("no sent campaign")?;
    // CM's local midnight after the newest send.
    let day_start = (newest + Duration::days(1))
        .date()
        .and_hms_opt(0, 0, 0)
        .ok_or("midnight")?;
    let list = scenario.cm.lists.first().map(|l| l.id.clone()).ok_or("no list")?;
    let recipients: BTreeMap<String, Vec<String>> = scenario
        .cm
        .campaigns
        .iter()
        .map(|c| (c.id.clone(), c.recipients.iter().map(|r| r.email.clone()).collect()))
        .collect();

    // Before the day's first run: every campaign linked (backfill) and synced once, and the
    // day's check of the retired ones made.
    control
        .set_cm_now(
            &(day_start + Duration::minutes(PHASE_MINUTES - 1))
                .format(FORMAT)
                .to_string(),
        )
        .await?;
    for campaign in engine.discover(&settings).await.map_err(|e| e.to_string())? {
        engine
            .backfill_one(&settings, &campaign)
            .await
            .map_err(|e| e.to_string())?;
    }
    for cm in sent.keys() {
        sync(&engine, &settings, cm).await?;
    }
    engine
        .run_scheduled(&settings, &engine::new_run_id())
        .await
        .map_err(|e| e.to_string())?;

    // The day's activity, decaying with each campaign's age, seeded.
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut day: Vec<(NaiveDateTime, String, String)> = Vec::new();
    for (cm, sent_at) in &sent {
        let age = (day_start - *sent_at).num_minutes() as f64 / 1440.0;
        let emails = &recipients[cm];
        for _ in 0..opens_today(age, &mut rng) {
            let second = rng.random_range(0..86_400);
            let email = emails[rng.random_range(0..emails.len().max(1))].clone();
            day.push((day_start + Duration::seconds(second), cm.clone(), email));
        }
    }
    day.sort();
    control.reset_counters().await?;
    let (operations_before, events_before) = (engine.store.operations(), engine.publisher.sink().events().len());

    let retired_after = Duration::days(i64::from(settings.sync_cadence.daily_until_days));
    let mut pending: Vec<Pending> = Vec::new();
    let mut figures = DayFigures {
        variant,
        campaigns: sent.len(),
        sf_calls: 0,
        cm_calls: 0,
        invocations: 0,
        scheduled_runs: 0,
        compute_s: 0.0,
        store_operations: 0,
        events_published: 0,
        freshness_hot: Vec::new(),
        activities: day.len(),
        applied: 0,
        on_retired: day
            .iter()
            .filter(|(date, cm, _)| *date - sent[cm] >= retired_after)
            .count(),
    };
    let mut next = day.iter().peekable();
    for tick in 1..=RUNS * TICKS_PER_RUN {
        let scheduled = tick % TICKS_PER_RUN == 0;
        if !scheduled && variant != Variant::Hot {
            continue;
        }
        let now = day_start + Duration::minutes(PHASE_MINUTES + tick * TICK_MINUTES);
        // What happened since the last tick becomes visible in CM.
        let mut by_campaign: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        while let Some((date, cm, email)) = next.next_if(|(date, _, _)| *date <= now) {
            by_campaign.entry(cm.clone()).or_default().push(
                json!({"kind": "open", "email": email, "list_id": list, "date": date.format(FORMAT).to_string()}),
            );
            pending.push(Pending {
                campaign: cm.clone(),
                date: *date,
                hot: *date - sent[cm] < Duration::hours(48),
            });
        }
        for (cm, activities) in by_campaign {
            control.add_activity(&cm, serde_json::Value::Array(activities)).await?;
        }
        control.set_cm_now(&now.format(FORMAT).to_string()).await?;
        if scheduled && (tick / TICKS_PER_RUN) % 8 == 0 {
            eprintln!(
                "day ({variant:?}): run {} of {RUNS}, {} invocations so far",
                tick / TICKS_PER_RUN,
                figures.invocations
            );
        }

        let before = engine.publisher.sink().events().len();
        figures.invocations += 1;
        figures.scheduled_runs += 1;
        let started = std::time::Instant::now();
        if scheduled {
            engine
                .run_scheduled(&settings, &engine::new_run_id())
                .await
                .map_err(|e| e.to_string())?;
        } else {
            engine
                .run_hot(&settings, &engine::new_run_id())
                .await
                .map_err(|e| e.to_string())?;
        }
        figures.compute_s += started.elapsed().as_secs_f64();
        for cm in harness::sync_requests(&engine.publisher.sink().events()[before..]) {
            figures.invocations += 1;
            let started = std::time::Instant::now();
            sync(&engine, &settings, &cm).await?;
            figures.compute_s += started.elapsed().as_secs_f64();
            // The day's activity is opens: they are applied up to the opens' watermark.
            let watermarks = engine.store.watermarks(&cm).await.map_err(|e| e.to_string())?;
            let Some(read_up_to) = watermarks.get(mapping::ActivityKind::Opened.as_str()).copied() else {
                continue;
            };
            let read_up_to = read_up_to.with_timezone(&settings.zone()).naive_local();
            pending.retain(|p| {
                if p.campaign != cm || p.date > read_up_to {
                    return true;
                }
                figures.applied += 1;
                if p.hot {
                    figures.freshness_hot.push((now - p.date).num_seconds() as f64 / 60.0);
                }
                false
            });
        }
    }
    figures.store_operations = engine.store.operations() - operations_before;
    figures.events_published = (engine.publisher.sink().events().len() - events_before) as u64;
    let (reads, writes) = control.sf_calls().await?;
    figures.sf_calls = reads + writes;
    figures.cm_calls = control.cm_calls().await?;
    Ok(figures)
}

async fn sync(engine: &Engine<MemoryStore, MemorySink>, settings: &mapping::Settings, cm: &str) -> Result<(), String> {
    engine
        .sync_campaign(settings, cm, &engine::new_run_id(), Mode::APPLY, Deadline::none())
        .await
        .map(|_| ())
        .map_err(|e| format!("sync of {cm}: {e}"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

impl DayFigures {
    /// The schedule's name in the tables.
    pub fn variant_label(&self) -> &'static str {
        self.variant.label()
    }

    /// One row of the day's table.
    pub fn row(&self) -> String {
        let mut hot = self.freshness_hot.clone();
        hot.sort_by(f64::total_cmp);
        format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} of {} ({} on retired campaigns) |\n",
            self.variant.label(),
            self.campaigns,
            self.sf_calls,
            self.cm_calls,
            self.invocations,
            percentile(&hot, 0.5),
            percentile(&hot, 0.95),
            self.applied,
            self.activities,
            self.on_retired
        )
    }

    /// The header of the day's table.
    pub fn header() -> &'static str {
        "| cadence | linked campaigns | SF calls | CM calls | Lambda invocations | freshness p50 (min), campaigns < 48 h | p95 (min) | the day's activities in SF by the first run after it |\n|---|---|---|---|---|---|---|---|\n"
    }
}
