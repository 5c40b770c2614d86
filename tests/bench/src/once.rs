//! One measured sync, in a process of its own so its peak memory is the sync's: the sandbox
//! runs in another process, the state table on the moto emulator.

use std::sync::Arc;
use std::time::Instant;

use engine::campaign::Mode;
use engine::{Deadline, Engine, EngineOptions};
use events::LinkOrigin;
use events::publisher::{MemorySink, Publisher};
use harness::Control;
use mapping::{ActivityKind, Settings};
use salesforce::{Operation, SfClient, WriteOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use state::dynamo::{DynamoStore, RequestCounter};
use state::{LinkRecord, LinkStore, SettingsStore};

/// What the parent asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// CM base URL of the running sandbox.
    pub cm_url: String,
    /// SF base URL.
    pub sf_url: String,
    /// CM client ids.
    pub cm_clients: Vec<String>,
    /// CM zone.
    pub zone: String,
    /// The campaign.
    pub cm_campaign: String,
    /// Its SF Campaign.
    pub sf_campaign: String,
    /// `full`, `incremental`, `noop` or `naive`.
    pub mode: String,
    /// Added latency per call on both APIs during the measured sync.
    pub latency_ms: u64,
    /// For `incremental`: the activities to add after the first sync, and CM's clock after them.
    pub new_activity: Vec<Value>,
    /// CM's clock after the new activity.
    pub now_after: Option<String>,
    /// Which recipients become members (the default's when absent).
    #[serde(default)]
    pub add_missing_members: Option<mapping::settings::AddMissingMembers>,
}

/// Figures of one measured sync.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Wall time of the measured sync, seconds.
    pub wall_s: f64,
    /// Activity records processed.
    pub events: u64,
    /// SF reads.
    pub sf_reads: u64,
    /// SF writes (collections, single records).
    pub sf_writes: u64,
    /// SF Bulk API calls.
    pub sf_bulk: u64,
    /// SF token requests.
    pub sf_auth: u64,
    /// CM calls.
    pub cm_calls: u64,
    /// DynamoDB HTTP requests.
    pub dynamodb_requests: u64,
    /// Peak resident memory of this process during the measured sync, MiB.
    pub peak_rss_mib: f64,
    /// CPU time (user + system) of this process, the sync's own, during the measured sync,
    /// seconds (the stand-ins and the emulator run in other processes).
    #[serde(default)]
    pub cpu_s: f64,
    /// CampaignMembers the sync created.
    #[serde(default)]
    pub members_added: u64,
    /// Matched recipients left out (`engaged`).
    #[serde(default)]
    pub recipients_not_added: u64,
}

/// Peak RSS so far (`VmHWM`), MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) this process used so far, seconds: `/proc/self/stat` fields 14
/// and 15, in clock ticks (100 a second on Linux: `USER_HZ`).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces: the fields are counted after its `)`.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |n: usize| fields.get(n)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) / 100.0)
        })
        .unwrap_or_default()
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5), so a measured phase after a
/// setup phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs the job and returns its figures; its table is deleted afterwards (an emulator holding
/// every run's tables grows slower with each, and later cases would measure that).
pub async fn run(job: Job) -> Result<Figures, String> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("bench-{}", std::process::id());
    let figures = run_on(job, &aws, &table).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    if let Err(error) = dynamo.delete_table().table_name(&table).send().await {
        eprintln!("could not delete {table}: {error}");
    }
    figures
}

async fn run_on(job: Job, aws: &aws_config::SdkConfig, table: &str) -> Result<Figures, String> {
    let control = Control::new(&job.cm_url, &job.sf_url);
    let zone: mapping::Tz = job.zone.parse().map_err(|_| format!("bad zone {}", job.zone))?;
    let cm = harness::cm_client(&job.cm_url, zone).map_err(|e| e.to_string())?;
    let sf = SfClient::new(harness::sf_config(&job.sf_url)).map_err(|e| e.to_string())?;

    let counter = RequestCounter::default();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(aws)
            .interceptor(counter.clone())
            .build(),
    );
    let table = table.to_owned();
    DynamoStore::create_table(&dynamo, &table)
        .await
        .map_err(|e| e.to_string())?;
    let store = DynamoStore::new(dynamo.clone(), table.clone());
    let mut settings = Settings::new(job.cm_clients.clone(), zone);
    if let Some(choice) = job.add_missing_members {
        settings.add_missing_members = choice;
    }
    store
        .save_settings(&settings, None, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    store
        .put_link(&LinkRecord {
            cm_campaign_id: job.cm_campaign.clone(),
            sf_campaign_id: job.sf_campaign.clone(),
            origin: LinkOrigin::Manual,
            linked_at: chrono::Utc::now(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let engine = Engine {
        store: Arc::new(store),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
        cm: Arc::new(cm),
        sf: Arc::new(sf),
        options: EngineOptions::default(),
    };

    if job.mode == "naive" {
        return naive(&engine, &job, &control, &counter).await;
    }

    // Setup: the first sync (not measured) for incremental and no-op.
    control.set_latency(0).await?;
    if job.mode == "incremental" || job.mode == "noop" {
        sync_once(&engine, &job.cm_campaign).await?;
        if job.mode == "incremental" {
            control
                .add_activity(&job.cm_campaign, Value::Array(job.new_activity.clone()))
                .await?;
        }
        if let Some(now) = &job.now_after {
            control.set_cm_now(now).await?;
        }
    }
    control.set_latency(job.latency_ms).await?;

    let measuring = Measuring::start(&engine, &control, &counter).await?;
    let counts = sync_once(&engine, &job.cm_campaign).await?;
    let mut figures = measuring.finish(&engine, &control, &counter, counts.activities).await?;
    figures.members_added = counts.members_added;
    figures.recipients_not_added = counts.recipients_not_added;
    control.set_latency(0).await?;
    Ok(figures)
}

/// The counters at the start of a measured phase; `finish` turns them into its figures.
struct Measuring {
    sf: salesforce::Calls,
    cm: u64,
    dynamodb: u64,
    started: Instant,
    cpu_s: f64,
}

impl Measuring {
    async fn start(
        engine: &Engine<DynamoStore, MemorySink>,
        control: &Control,
        counter: &RequestCounter,
    ) -> Result<Measuring, String> {
        let measuring = Measuring {
            sf: engine.sf.calls(),
            cm: control.cm_calls().await?,
            dynamodb: counter.total(),
            started: Instant::now(),
            cpu_s: cpu_seconds(),
        };
        reset_peak_rss();
        Ok(measuring)
    }

    async fn finish(
        self,
        engine: &Engine<DynamoStore, MemorySink>,
        control: &Control,
        counter: &RequestCounter,
        events: u64,
    ) -> Result<Figures, String> {
        let wall = self.started.elapsed();
        let peak = peak_rss_mib();
        let sf = engine.sf.calls();
        Ok(Figures {
            wall_s: wall.as_secs_f64(),
            events,
            sf_reads: sf.reads - self.sf.reads,
            sf_writes: sf.writes - self.sf.writes,
            sf_bulk: sf.bulk - self.sf.bulk,
            sf_auth: sf.auth - self.sf.auth,
            cm_calls: control.cm_calls().await? - self.cm,
            dynamodb_requests: counter.total() - self.dynamodb,
            peak_rss_mib: peak,
            cpu_s: cpu_seconds() - self.cpu_s,
            ..Figures::default()
        })
    }
}

async fn sync_once(
    engine: &Engine<DynamoStore, MemorySink>,
    cm_campaign: &str,
) -> Result<engine::campaign::RunCounts, String> {
    let settings = engine.settings().await.map_err(|e| e.to_string())?;
    let outcome = engine
        .sync_campaign(
            &settings,
            cm_campaign,
            &engine::new_run_id(),
            Mode::APPLY,
            Deadline::none(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match outcome {
        engine::campaign::CampaignOutcome::Done { counts, .. } => Ok(counts),
        other => Err(format!("sync did not finish: {other:?}")),
    }
}

/// The naive way, as the simplest integrations do it: every activity record read from CM, one
/// SF lookup of the member by email and one SF write of its Status, record by record.
async fn naive(
    engine: &Engine<DynamoStore, MemorySink>,
    job: &Job,
    control: &Control,
    counter: &RequestCounter,
) -> Result<Figures, String> {
    control.set_latency(0).await?;
    let measuring = Measuring::start(engine, control, counter).await?;
    let mut events = 0u64;
    let kinds = [
        ActivityKind::Opened,
        ActivityKind::Clicked,
        ActivityKind::Bounced,
        ActivityKind::Unsubscribed,
        ActivityKind::MarkedAsSpam,
    ];
    for kind in kinds {
        let mut stream = engine.cm.activity(&job.cm_campaign, kind, None);
        while let Some(page) = stream.next_page().await.map_err(|e| e.to_string())? {
            for record in page {
                events += 1;
                let activity = record.to_activity();
                let email = salesforce::soql::quote(&activity.email);
                let rows = engine
                    .sf
                    .query_all(&format!(
                        "SELECT Id FROM CampaignMember WHERE CampaignId = '{}' AND (Contact.Email = {email} OR Lead.Email = {email})",
                        job.sf_campaign
                    ))
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(id) = rows.first().and_then(|r| r["Id"].as_str()) else {
                    continue;
                };
                let mut update = Map::new();
                update.insert("Id".into(), json!(id));
                update.insert("Status".into(), json!(kind_label(kind)));
                engine
                    .sf
                    .write(
                        "CampaignMember",
                        &Operation::Update,
                        &[update],
                        &WriteOptions::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    measuring.finish(engine, control, counter, events).await
}

/// The stock labels the naive way writes (statuses are created by the first real sync... or
/// not at all: the naive integration writes labels and hopes they exist).
fn kind_label(kind: ActivityKind) -> &'static str {
    match kind {
        ActivityKind::Opened => "Opened",
        ActivityKind::Clicked => "Clicked",
        ActivityKind::Bounced => "Bounced",
        ActivityKind::Unsubscribed => "Unsubscribed",
        ActivityKind::MarkedAsSpam => "Marked as Spam",
        ActivityKind::Sent => "Sent",
    }
}
