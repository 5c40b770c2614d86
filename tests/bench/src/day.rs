//! A simulated day of an account with many linked campaigns (issue #20): one campaign sent each
//! day for years, engagement decaying after each send, 96 scheduled runs 15 minutes apart. Every
//! run does what the deployed functions do, in process on the in-memory store: the scheduled run
//! (discovery, links, list backstop) and a sync of each campaign it asks for, each counted as a
//! Lambda invocation. CM and SF calls are the sandbox's own counts. An activity counts as in
//! Salesforce from the end of the first sync whose committed watermarks pass its date (they move
//! only once the writes below them succeeded).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};
use engine::campaign::Mode;
use engine::{Deadline, Engine};
use events::Event;
use events::publisher::MemorySink;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sandbox::generate::{Shape, generate};
use serde_json::json;
use state::WatermarkStore;
use state::memory::MemoryStore;

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
const RUNS: i64 = 96;
const RUN_EVERY_MINUTES: i64 = 15;

/// What one simulated day cost, and how fresh Salesforce was.
#[derive(Debug, Clone)]
pub struct DayFigures {
    /// The cadence was on.
    pub cadence: bool,
    /// Linked campaigns.
    pub campaigns: usize,
    /// Salesforce API calls (reads and writes) over the day.
    pub sf_calls: u64,
    /// Campaign Monitor API calls over the day.
    pub cm_calls: u64,
    /// Lambda invocations: the scheduled runs and the syncs they asked for.
    pub invocations: u64,
    /// Minutes from an activity's date to its campaign's sync that applied it, for campaigns
    /// under 48 hours old.
    pub freshness_hot: Vec<f64>,
    /// Activities of the day.
    pub activities: usize,
    /// Of them, applied by the end of the day.
    pub applied: usize,
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

/// Simulates the day.
pub async fn simulate(campaigns: usize, cadence: bool) -> Result<DayFigures, String> {
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
    settings.sync_cadence.enabled = cadence;
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
    let day_start = newest + Duration::hours(1);
    let list = scenario.cm.lists.first().map(|l| l.id.clone()).ok_or("no list")?;
    let recipients: BTreeMap<String, Vec<String>> = scenario
        .cm
        .campaigns
        .iter()
        .map(|c| (c.id.clone(), c.recipients.iter().map(|r| r.email.clone()).collect()))
        .collect();

    // Before the day: every campaign linked (backfill) and synced once.
    control
        .set_cm_now(&(day_start - Duration::hours(1)).format(FORMAT).to_string())
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

    // The day's activity, decaying with each campaign's age, seeded.
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut day: Vec<(NaiveDateTime, String, String)> = Vec::new();
    for (cm, sent_at) in &sent {
        let age = (day_start - *sent_at).num_minutes() as f64 / 1440.0;
        let emails = &recipients[cm];
        for _ in 0..opens_today(age, &mut rng) {
            let minute = rng.random_range(0..RUNS * RUN_EVERY_MINUTES);
            let email = emails[rng.random_range(0..emails.len().max(1))].clone();
            day.push((
                day_start + Duration::minutes(minute) + Duration::seconds(rng.random_range(0..60)),
                cm.clone(),
                email,
            ));
        }
    }
    day.sort();
    control.reset_counters().await?;

    let mut pending: Vec<Pending> = Vec::new();
    let mut figures = DayFigures {
        cadence,
        campaigns: sent.len(),
        sf_calls: 0,
        cm_calls: 0,
        invocations: 0,
        freshness_hot: Vec::new(),
        activities: day.len(),
        applied: 0,
    };
    let mut next = day.iter().peekable();
    for run in 1..=RUNS {
        let now = day_start + Duration::minutes(run * RUN_EVERY_MINUTES);
        // What happened since the last run becomes visible in CM.
        let mut arrived = Vec::new();
        while let Some((date, cm, email)) = next.next_if(|(date, _, _)| *date <= now) {
            arrived.push((
                cm.clone(),
                json!({"kind": "open", "email": email, "list_id": list, "date": date.format(FORMAT).to_string()}),
            ));
            pending.push(Pending {
                campaign: cm.clone(),
                date: *date,
                hot: *date - sent[cm] < Duration::hours(48),
            });
        }
        let mut by_campaign: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for (cm, activity) in arrived {
            by_campaign.entry(cm).or_default().push(activity);
        }
        for (cm, activities) in by_campaign {
            control.add_activity(&cm, serde_json::Value::Array(activities)).await?;
        }
        control.set_cm_now(&now.format(FORMAT).to_string()).await?;
        if run % 8 == 0 {
            eprintln!(
                "day (cadence {cadence}): run {run} of {RUNS}, {} invocations so far",
                figures.invocations
            );
        }

        let before = engine.publisher.sink().events().len();
        figures.invocations += 1;
        engine
            .run_scheduled(&settings, &engine::new_run_id())
            .await
            .map_err(|e| e.to_string())?;
        let requested: Vec<String> = engine.publisher.sink().events()[before..]
            .iter()
            .filter_map(|e| match e {
                Event::CampaignSyncRequested(r) => r.cm_campaign_id.clone(),
                _ => None,
            })
            .collect();
        for cm in requested {
            figures.invocations += 1;
            sync(&engine, &settings, &cm).await?;
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
    /// One row of the day's table.
    pub fn row(&self) -> String {
        let mut hot = self.freshness_hot.clone();
        hot.sort_by(f64::total_cmp);
        format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} of {} |\n",
            if self.cadence {
                "on (defaults)"
            } else {
                "off (every campaign, every run)"
            },
            self.campaigns,
            self.sf_calls,
            self.cm_calls,
            self.invocations,
            percentile(&hot, 0.5),
            percentile(&hot, 0.95),
            self.applied,
            self.activities
        )
    }

    /// The header of the day's table.
    pub fn header() -> &'static str {
        "| cadence | linked campaigns | SF calls | CM calls | Lambda invocations | freshness p50 (min), campaigns < 48 h | p95 (min) | activities in SF by the end of the day |\n|---|---|---|---|---|---|---|---|\n"
    }
}
