//! `cm-sf-bench`: the benchmarks of `make bench` (not tests: they assert nothing and never run
//! in `make test`). Workloads are generated sandbox scenarios with fixed seeds; the sandbox runs
//! as its own process (release build), the state table on the moto emulator, and every measured
//! sync in a child process of its own so its peak memory is the sync's alone. Each case is
//! warmed up, repeated, and reported as the median with the spread.

mod coldstart;
mod day;
mod once;
mod profile;
mod report;
mod webhooks;

use report::{day_report, members_report, write_report};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use clap::{Parser, Subcommand};
use once::{Figures, Job};
use serde_json::{Value, json};

/// Benchmarks of the Campaign Monitor → Salesforce sync.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the suite and write the results table.
    ///
    /// Example: cm-sf-bench suite --workloads S,M,L --out BENCHMARKS.md
    Suite {
        /// Workloads to run (S, M, L).
        #[arg(long, value_delimiter = ',', default_value = "S,M,L")]
        workloads: Vec<String>,
        /// Measured repetitions per case (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Where to write the Markdown results.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Scenario cache directory.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// A simulated day: linked campaigns, one sent each day, 96 scheduled runs 15 minutes
    /// apart, with the cadence off and on; prints its section of BENCHMARKS.md.
    ///
    /// Example: cm-sf-bench day --campaigns 1000
    Day {
        /// Linked campaigns (one sent each day before the day simulated).
        #[arg(long, default_value_t = 1000)]
        campaigns: usize,
        /// Which variants: `off` (every campaign at every run), `on` (the cadence's defaults),
        /// `hot` (and the hot schedule every 5 minutes); several: `off,on,hot`.
        #[arg(long, value_delimiter = ',', default_value = "off,on,hot")]
        cadence: Vec<String>,
    },
    /// The cold start of every function; prints its section of BENCHMARKS.md (the suite writes
    /// the same section).
    ///
    /// Example: cm-sf-bench coldstart --runs 11
    Coldstart {
        /// Starts per function (the first is a warm-up).
        #[arg(long, default_value_t = 11)]
        runs: usize,
    },
    /// The webhook intake alone: 1,000-event deliveries with 20 custom fields each; prints its
    /// section of BENCHMARKS.md (the suite writes the same section).
    ///
    /// Example: cm-sf-bench webhooks --reps 7
    Webhooks {
        /// Measured deliveries (after one warm-up).
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// Members added and the Salesforce storage they take, for workload M's first full sync with
    /// `add_missing_members` `all_recipients` and `engaged`; prints its section of
    /// BENCHMARKS.md (the suite writes the same section).
    ///
    /// Example: cm-sf-bench members
    Members {
        /// Scenario cache directory.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// One measured sync (the suite runs this in a child process).
    Once {
        /// The job, as a JSON file.
        #[arg(long)]
        job: PathBuf,
    },
}

/// A workload: a generated scenario.
struct Workload {
    name: &'static str,
    seed: u64,
    recipients: usize,
    activities: usize,
    /// (mode, latency ms) cases.
    cases: &'static [(&'static str, u64)],
    /// Measured repetitions (L is long: fewer).
    reps_cap: usize,
    warmups: usize,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "S",
        seed: 101,
        recipients: 10_000,
        activities: 8_000,
        cases: &[
            ("full", 0),
            ("full", 50),
            ("incremental", 0),
            ("incremental", 50),
            ("noop", 0),
            ("noop", 50),
            ("naive", 0),
        ],
        reps_cap: usize::MAX,
        warmups: 1,
    },
    Workload {
        name: "M",
        seed: 102,
        recipients: 100_000,
        activities: 80_000,
        cases: &[
            ("full", 0),
            ("full", 50),
            ("incremental", 0),
            ("incremental", 50),
            ("noop", 0),
            ("noop", 50),
        ],
        reps_cap: usize::MAX,
        warmups: 1,
    },
    Workload {
        name: "L",
        seed: 103,
        recipients: 1_000_000,
        activities: 800_000,
        cases: &[("full", 0), ("full", 50)],
        reps_cap: 1,
        warmups: 0,
    },
];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        // Where a measured sync spends its time (stderr; the figures go to stdout).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match Cli::parse().command {
        Cmd::Once { job } => match std::fs::read_to_string(&job)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Job>(&text).map_err(|e| e.to_string()))
        {
            Ok(job) => once::run(job)
                .await
                .map(|figures| println!("{}", serde_json::to_string(&figures).unwrap_or_default())),
            Err(e) => Err(format!("bad job: {e}")),
        },
        Cmd::Suite {
            workloads,
            reps,
            out,
            dir,
        } => suite(&workloads, reps, &out, &dir).await,
        Cmd::Day { campaigns, cadence } => match cadence
            .iter()
            .map(|c| day::Variant::parse(c))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(variants) => day_report(campaigns, &variants).await.map(|report| print!("{report}")),
            Err(error) => Err(error),
        },
        Cmd::Members { dir } => members_report(&dir).await.map(|report| print!("{report}")),
        Cmd::Coldstart { runs } => coldstart::measure_all(runs)
            .await
            .map(|cold| print!("{}", coldstart::report(&cold))),
        Cmd::Webhooks { reps } => webhooks::measure(reps)
            .await
            .map(|figures| print!("{}", figures.report())),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cm-sf-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p ...`",
            path.display()
        ))
    }
}

/// The sandbox serving a scenario, stopped on drop.
struct Sandbox {
    child: Child,
    cm_url: String,
    sf_url: String,
    /// How long it took to build the scenario and load it.
    load_ms: u64,
}

/// The sandbox's own figures for a workload (its process, not the sync's).
pub(crate) struct SandboxFigures {
    workload: &'static str,
    load_s: f64,
    loaded_mib: f64,
    peak_mib: f64,
}

impl Sandbox {
    /// The sandbox serving the scenario of `shape`, generated in its own process (never written
    /// out as JSON and read back: workload L's would be gigabytes of JSON values).
    fn start(shape: &sandbox::generate::Shape) -> Result<Sandbox, String> {
        let shape = serde_json::to_string(shape).map_err(|e| e.to_string())?;
        let mut child = Command::new(sibling("sandbox")?)
            .arg("--shape")
            .arg(shape)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("sandbox: {e}"))?;
        let stdout = child.stdout.take().ok_or("sandbox: no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("sandbox: {e}"))?;
        let ready: Value = serde_json::from_str(&line).map_err(|e| format!("sandbox said {line:?}: {e}"))?;
        Ok(Sandbox {
            child,
            cm_url: ready["cm_url"].as_str().unwrap_or_default().to_owned(),
            sf_url: ready["sf_url"].as_str().unwrap_or_default().to_owned(),
            load_ms: ready["load_ms"].as_u64().unwrap_or_default(),
        })
    }

    /// (resident now, peak resident) of its process, MiB (Linux `/proc`).
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn reset(&self) -> Result<(), String> {
        let response = reqwest::Client::new()
            .post(format!("{}/_sandbox/reset", self.cm_url))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("reset: {}", response.status()))
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of results.
struct Row {
    workload: String,
    case: String,
    latency_ms: u64,
    runs: Vec<Figures>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Row {
    fn stat(&self, pick: impl Fn(&Figures) -> f64) -> (f64, f64, f64) {
        let mut values: Vec<f64> = self.runs.iter().map(pick).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(&mut values), min, max)
    }
}

fn incremental_activity(shape: &sandbox::generate::Shape, list_id: &str) -> Vec<Value> {
    (0..1_000usize)
        .map(|i| {
            let person = (i * 97) % shape.recipients;
            json!({
                "kind": if i % 3 == 0 { "click" } else { "open" },
                "email": format!("person{person:07}@example.com"),
                "list_id": list_id,
                "date": format!("2026-11-27 10:{:02}:{:02}", (i / 60) % 60, i % 60),
                "url": if i % 3 == 0 { Some("https://example.com/offer") } else { None },
            })
        })
        .collect()
}

/// The allocator's settings the template gives `function` (its `MIMALLOC_*` variables): a
/// measured sync runs as the deployed function would.
pub(crate) fn allocator_env(function: &str) -> Result<Vec<(&'static str, String)>, String> {
    // Read once: every measured sync and cold start asks.
    type Functions = Result<Vec<lambda_support::deployment::FunctionEnvironment>, String>;
    static FUNCTIONS: std::sync::OnceLock<Functions> = std::sync::OnceLock::new();
    let functions = FUNCTIONS
        .get_or_init(|| {
            let template =
                std::fs::read_to_string("infra/template.yaml").map_err(|e| format!("infra/template.yaml: {e}"))?;
            lambda_support::deployment::functions_in(&template, &Default::default()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let environment = functions
        .iter()
        .find(|f| f.crate_name == function)
        .ok_or_else(|| format!("{function} is not in the template"))?;
    Ok(lambda_support::VARIABLES
        .iter()
        .filter(|name| name.starts_with("MIMALLOC_"))
        .filter_map(|name| Some((*name, environment.config.get(name)?.to_owned())))
        .collect())
}

async fn run_child(job: &Job, dir: &Path) -> Result<Figures, String> {
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_vec(job).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let output = tokio::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .envs(allocator_env("scheduled-sync")?)
        .arg("once")
        .arg("--job")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("measured run failed ({})", output.status));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("child output: {e}"))
}

/// A workload's scenario shape, and what the jobs need of its scenario.
struct Generated {
    shape: sandbox::generate::Shape,
    cm_campaign: String,
    list_id: String,
    cm_clients: Vec<String>,
    zone: String,
    members_before: usize,
}

impl Generated {
    /// A first full sync of the workload's main campaign against `sandbox`, at no added
    /// latency (cases change what differs).
    fn full_sync_job(&self, sandbox: &Sandbox) -> Job {
        Job {
            cm_url: sandbox.cm_url.clone(),
            sf_url: sandbox.sf_url.clone(),
            cm_clients: self.cm_clients.clone(),
            zone: self.zone.clone(),
            cm_campaign: self.cm_campaign.clone(),
            sf_campaign: "701000SB0000000001".into(),
            mode: "full".into(),
            latency_ms: 0,
            new_activity: Vec::new(),
            now_after: None,
            add_missing_members: None,
        }
    }

    fn new(workload: &Workload) -> Result<Generated, String> {
        let shape = sandbox::generate::Shape {
            seed: workload.seed,
            recipients: workload.recipients,
            activities: workload.activities,
            ..Default::default()
        };
        eprintln!(
            "[{}] {} recipients, {} activities (seed {})",
            workload.name, shape.recipients, shape.activities, shape.seed
        );
        // The sandbox generates the same scenario from the shape; here only its ids are read.
        let scenario = sandbox::generate::generate(&shape);
        let cm_campaign = scenario
            .cm
            .campaigns
            .iter()
            .find(|c| c.name == "November newsletter")
            .map(|c| c.id.clone())
            .ok_or("no main campaign")?;
        Ok(Generated {
            shape,
            cm_campaign,
            list_id: scenario.cm.lists.first().map(|l| l.id.clone()).unwrap_or_default(),
            cm_clients: scenario.cm.clients.iter().map(|c| c.id.clone()).collect(),
            zone: scenario.cm.timezone.clone(),
            members_before: scenario.sf.records.get("CampaignMember").map_or(0, Vec::len),
        })
    }
}

async fn suite(names: &[String], reps: usize, out: &Path, dir: &Path) -> Result<(), String> {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err("AWS_ENDPOINT_URL is not set: run through `make bench` (it starts the moto emulator)".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut sandboxes = Vec::new();
    let mut profiled = None;
    for workload in WORKLOADS.iter().filter(|w| names.iter().any(|n| n == w.name)) {
        let generated = Generated::new(workload)?;
        let sandbox = Sandbox::start(&generated.shape)?;
        let (loaded_mib, _) = sandbox.memory_mib();
        for (mode, latency_ms) in workload.cases {
            let job = Job {
                mode: (*mode).to_owned(),
                latency_ms: *latency_ms,
                new_activity: if *mode == "incremental" {
                    incremental_activity(&generated.shape, &generated.list_id)
                } else {
                    Vec::new()
                },
                now_after: (*mode == "incremental" || *mode == "noop").then(|| "2026-11-27 12:00:00".to_owned()),
                ..generated.full_sync_job(&sandbox)
            };
            // The naive way takes minutes a run and varies little: two runs, no warm-up.
            let (warmups, measured) = if *mode == "naive" {
                (0, reps.min(2))
            } else {
                (workload.warmups, reps.min(workload.reps_cap))
            };
            let mut runs = Vec::new();
            for rep in 0..warmups + measured {
                sandbox.reset().await?;
                let figures = run_child(&job, dir).await?;
                let warm = rep < warmups;
                eprintln!(
                    "[{}] {mode} @{latency_ms} ms{}: {:.2} s, {} events, CPU {:.2} s, SF {}r/{}w/{}b, CM {}, DynamoDB {}, peak {:.1} MiB",
                    workload.name,
                    if warm { " (warm-up)" } else { "" },
                    figures.wall_s,
                    figures.events,
                    figures.cpu_s,
                    figures.sf_reads,
                    figures.sf_writes,
                    figures.sf_bulk,
                    figures.cm_calls,
                    figures.dynamodb_requests,
                    figures.peak_rss_mib
                );
                if !warm {
                    runs.push(figures);
                }
            }
            rows.push(Row {
                workload: workload.name.to_owned(),
                case: (*mode).to_owned(),
                latency_ms: *latency_ms,
                runs,
            });
        }
        if workload.name == "M" {
            // One more full sync, sampled: where its CPU time goes.
            sandbox.reset().await?;
            profiled = profile::measure(&generated.full_sync_job(&sandbox), dir, "M").await;
        }
        let (_, peak_mib) = sandbox.memory_mib();
        eprintln!(
            "[{}] sandbox: loaded in {:.1} s, {loaded_mib:.0} MiB resident, peak {peak_mib:.0} MiB",
            workload.name,
            sandbox.load_ms as f64 / 1000.0
        );
        sandboxes.push(SandboxFigures {
            workload: workload.name,
            load_s: sandbox.load_ms as f64 / 1000.0,
            loaded_mib,
            peak_mib,
        });
    }
    let cold = coldstart::measure_all(11).await?;
    let intake = webhooks::measure(7).await?;
    let mut day = members_report(dir).await?;
    day += &day_report(1_000, &[day::Variant::Off, day::Variant::On, day::Variant::Hot]).await?;
    let profiled =
        profiled.unwrap_or_else(|| "\n(`perf` is not installed here: no CPU profile of the sync.)\n".to_owned());
    write_report(out, &rows, &sandboxes, &cold, &intake, &(profiled + &day))
}
