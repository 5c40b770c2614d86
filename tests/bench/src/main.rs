//! `cm-sf-bench`: the benchmarks of `make bench` (not tests: they assert nothing and never run
//! in `make test`). Workloads are generated sandbox scenarios with fixed seeds; the sandbox runs
//! as its own process (release build), the state table on the moto emulator, and every measured
//! sync in a child process of its own so its peak memory is the sync's alone. Each case is
//! warmed up, repeated, and reported as the median with the spread.

mod coldstart;
mod day;
mod once;
mod webhooks;

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
        cases: &[("full", 0)],
        reps_cap: 2,
        warmups: 0,
    },
];

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
}

impl Sandbox {
    fn start(scenario: &Path) -> Result<Sandbox, String> {
        let mut child = Command::new(sibling("sandbox")?)
            .arg("--scenario")
            .arg(scenario)
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
        })
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

async fn run_child(job: &Job, dir: &Path) -> Result<Figures, String> {
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_vec(job).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let output = tokio::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
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

/// A workload's scenario, generated and written for the sandbox, and what the jobs need of it.
struct Generated {
    shape: sandbox::generate::Shape,
    path: PathBuf,
    cm_campaign: String,
    list_id: String,
    cm_clients: Vec<String>,
    zone: String,
    members_before: usize,
}

impl Generated {
    fn write(workload: &Workload, dir: &Path, file: &str) -> Result<Generated, String> {
        let shape = sandbox::generate::Shape {
            seed: workload.seed,
            recipients: workload.recipients,
            activities: workload.activities,
            ..Default::default()
        };
        eprintln!(
            "[{}] generating {} recipients, {} activities (seed {})",
            workload.name, shape.recipients, shape.activities, shape.seed
        );
        let scenario = sandbox::generate::generate(&shape);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{file}.json"));
        let writer = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        serde_json::to_writer(std::io::BufWriter::new(writer), &scenario).map_err(|e| e.to_string())?;
        let cm_campaign = scenario
            .cm
            .campaigns
            .iter()
            .find(|c| c.name == "November newsletter")
            .map(|c| c.id.clone())
            .ok_or("no main campaign")?;
        Ok(Generated {
            shape,
            path,
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
    for workload in WORKLOADS.iter().filter(|w| names.iter().any(|n| n == w.name)) {
        let Generated {
            shape,
            path,
            cm_campaign,
            list_id,
            cm_clients,
            zone,
            ..
        } = Generated::write(workload, dir, workload.name)?;
        let sandbox = Sandbox::start(&path)?;
        for (mode, latency_ms) in workload.cases {
            let job = Job {
                cm_url: sandbox.cm_url.clone(),
                sf_url: sandbox.sf_url.clone(),
                cm_clients: cm_clients.clone(),
                zone: zone.clone(),
                cm_campaign: cm_campaign.clone(),
                sf_campaign: "701000SB0000000001".into(),
                mode: (*mode).to_owned(),
                latency_ms: *latency_ms,
                new_activity: if *mode == "incremental" {
                    incremental_activity(&shape, &list_id)
                } else {
                    Vec::new()
                },
                now_after: (*mode == "incremental" || *mode == "noop").then(|| "2026-11-27 12:00:00".to_owned()),
                add_missing_members: None,
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
                    "[{}] {mode} @{latency_ms} ms{}: {:.2} s, {} events, SF {}r/{}w/{}b, CM {}, DynamoDB {}, peak {:.1} MiB",
                    workload.name,
                    if warm { " (warm-up)" } else { "" },
                    figures.wall_s,
                    figures.events,
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
    }
    let cold = coldstart::measure(11).await?;
    let intake = webhooks::measure(7).await?;
    let mut day = members_report(dir).await?;
    day += &day_report(1_000, &[day::Variant::Off, day::Variant::On, day::Variant::Hot]).await?;
    write_report(out, &rows, &cold, &intake, &day)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpu}, {cores} cores, {memory:.0} GiB")
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn find<'a>(rows: &'a [Row], workload: &str, case: &str, latency_ms: u64) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.case == case && r.latency_ms == latency_ms && !r.runs.is_empty())
}

/// The targets against the medians measured.
fn targets(rows: &[Row], cold: &coldstart::ColdStart) -> String {
    let calls = |r: &Row| r.stat(|f| (f.sf_reads + f.sf_writes + f.sf_bulk) as f64).0;
    let mut lines = vec!["\n| target | measured | met |".to_owned(), "|---|---|---|".to_owned()];
    let mut line = |target: &str, measured: String, met: bool| {
        lines.push(format!(
            "| {target} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        ));
    };
    if let Some(m) = find(rows, "M", "full", 50) {
        let (wall, ..) = m.stat(|f| f.wall_s);
        line(
            "M, 50 ms latency: fully synced within 30 s",
            format!("{wall:.1} s"),
            wall <= 30.0,
        );
        line(
            "M, 50 ms latency: at most 400 SF calls",
            format!("{:.0}", calls(m)),
            calls(m) <= 400.0,
        );
    }
    if let Some(l) = find(rows, "L", "full", 0) {
        let (rss, _, max) = l.stat(|f| f.peak_rss_mib);
        line(
            "L: peak memory under 128 MB (122 MiB)",
            format!("{rss:.1} MiB (max {max:.1})"),
            max < 122.0,
        );
        let per_event = |r: &Row| {
            let (wall, ..) = r.stat(|f| f.wall_s);
            let (events, ..) = r.stat(|f| f.events as f64);
            wall / events.max(1.0) * 1e6
        };
        if let Some(m) = find(rows, "M", "full", 0) {
            let (l_us, m_us) = (per_event(l), per_event(m));
            line(
                "L: time linear in events (µs per event, L vs M)",
                format!("{l_us:.1} vs {m_us:.1}"),
                l_us <= m_us * 1.5,
            );
        }
    }
    for workload in ["S", "M"] {
        for latency in [0, 50] {
            if let Some(r) = find(rows, workload, "incremental", latency) {
                line(
                    &format!("{workload} incremental ({latency} ms): at most 15 SF calls"),
                    format!("{:.0}", calls(r)),
                    calls(r) <= 15.0,
                );
            }
            if let Some(r) = find(rows, workload, "noop", latency) {
                let (writes, ..) = r.stat(|f| (f.sf_writes + f.sf_bulk) as f64);
                line(
                    &format!("{workload} no-op ({latency} ms): 0 SF writes"),
                    format!("{writes:.0}"),
                    writes == 0.0,
                );
            }
        }
    }
    line(
        "cold start under 50 ms",
        format!("{:.1} ms", cold.median_ms),
        cold.median_ms < 50.0,
    );
    if let (Some(naive), Some(ours)) = (find(rows, "S", "naive", 0), find(rows, "S", "full", 0)) {
        let (naive_wall, ..) = naive.stat(|f| f.wall_s);
        let (our_wall, ..) = ours.stat(|f| f.wall_s);
        lines.push(String::new());
        lines.push(format!(
            "The naive way on S (one SF lookup and one SF write per activity, no added latency): {:.0} SF calls in {naive_wall:.1} s, \
             against {:.0} calls in {our_wall:.1} s: {:.0}× fewer calls, {:.1}× faster. With 50 ms per call the naive way's calls \
             alone would take {:.0} minutes.",
            calls(naive),
            calls(ours),
            calls(naive) / calls(ours).max(1.0),
            naive_wall / our_wall.max(1e-9),
            calls(naive) * 0.05 / 60.0,
        ));
    }
    lines.join("\n") + "\n"
}

fn write_report(
    out: &Path,
    rows: &[Row],
    cold: &coldstart::ColdStart,
    intake: &webhooks::WebhookFigures,
    day: &str,
) -> Result<(), String> {
    let mut text = String::new();
    text += "# Benchmarks\n\n";
    text += &format!(
        "Written by `make bench` on {}; machine: {}; commit {}; release build. Each case: {} after a \
         warm-up (L: no warm-up), median with the range in brackets. Sandbox (CM and SF) in its own \
         process, state table on the moto emulator, each measured sync in a process of its own \
         (for incremental and no-op runs, after the setup sync in that process: their peak RSS includes what \
         the allocator kept from it).\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        commit(),
        "repeated runs",
    );
    text += "| workload | case | added latency | wall time (s) | events | events/s | SF calls (reads / writes / bulk) | CM calls | DynamoDB requests | peak RSS (MiB) |\n";
    text += "|---|---|---|---|---|---|---|---|---|---|\n";
    for row in rows {
        if row.runs.is_empty() {
            continue;
        }
        let (wall, lo, hi) = row.stat(|f| f.wall_s);
        let (events, ..) = row.stat(|f| f.events as f64);
        let (reads, ..) = row.stat(|f| f.sf_reads as f64);
        let (writes, ..) = row.stat(|f| f.sf_writes as f64);
        let (bulk, ..) = row.stat(|f| f.sf_bulk as f64);
        let (cm, ..) = row.stat(|f| f.cm_calls as f64);
        let (dynamo, ..) = row.stat(|f| f.dynamodb_requests as f64);
        let (rss, rss_lo, rss_hi) = row.stat(|f| f.peak_rss_mib);
        let rate = if wall > 0.0 { events / wall } else { 0.0 };
        text += &format!(
            "| {} | {} | {} ms | {wall:.2} [{lo:.2}–{hi:.2}] | {events:.0} | {rate:.0} | {:.0} ({reads:.0} / {writes:.0} / {bulk:.0}) | {cm:.0} | {dynamo:.0} | {rss:.1} [{rss_lo:.1}–{rss_hi:.1}] |\n",
            row.workload,
            row.case,
            row.latency_ms,
            reads + writes + bulk,
        );
    }
    text += &targets(rows, cold);
    text += &format!(
        "\nCold start of `scheduled-sync` (release build, process start to its first request for an \
         event from the Lambda runtime API, configuration and secrets read): median {:.1} ms [{:.1}–{:.1}] \
         over {} starts after a warm-up.\n",
        cold.median_ms, cold.min_ms, cold.max_ms, cold.runs
    );
    text += &intake.report();
    text += day;
    let mut file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", out.display());
    print!("{text}");
    Ok(())
}

/// Workload M's first full sync with each `add_missing_members` choice: members added and their
/// storage. The section of BENCHMARKS.md.
async fn members_report(dir: &Path) -> Result<String, String> {
    use mapping::settings::AddMissingMembers;
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err("AWS_ENDPOINT_URL is not set: run through `make bench` (it starts the moto emulator)".into());
    }
    let workload = WORKLOADS.iter().find(|w| w.name == "M").ok_or("no workload M")?;
    let generated = Generated::write(workload, dir, "M-members")?;
    let members_before = generated.members_before;
    let job = Job {
        cm_url: String::new(),
        sf_url: String::new(),
        cm_clients: generated.cm_clients,
        zone: generated.zone,
        cm_campaign: generated.cm_campaign,
        sf_campaign: "701000SB0000000001".into(),
        mode: "full".into(),
        latency_ms: 0,
        new_activity: Vec::new(),
        now_after: None,
        add_missing_members: None,
    };
    let sandbox = Sandbox::start(&generated.path)?;
    let mut report = format!(
        "\n## Members and Salesforce storage\n\nWorkload M ({} recipients of one send, {} activities, 95% of recipients are Leads or Contacts in Salesforce, {members_before} already members): what its first full sync adds as CampaignMembers, by `add_missing_members`, at about {:.0} KB of Salesforce data storage per record. Recipients who did not engage are counted in the Campaign's statistics either way.\n\n| `add_missing_members` | members added | about (MB of SF data storage) | matched recipients not added | SF calls (reads / writes / bulk) |\n|---|---|---|---|---|\n",
        workload.recipients,
        workload.activities,
        mapping::plan::SF_STORAGE_KB_PER_RECORD,
    );
    for (label, choice) in [
        ("all_recipients", AddMissingMembers::AllRecipients),
        ("engaged", AddMissingMembers::Engaged),
    ] {
        sandbox.reset().await?;
        let job = Job {
            cm_url: sandbox.cm_url.clone(),
            sf_url: sandbox.sf_url.clone(),
            add_missing_members: Some(choice),
            ..job.clone()
        };
        let figures = run_child(&job, dir).await?;
        eprintln!("[M members] {label}: {figures:?}");
        let megabytes = figures.members_added as f64 * mapping::plan::SF_STORAGE_KB_PER_RECORD / 1024.0;
        report += &format!(
            "| `{label}` | {} | {megabytes:.0} | {} | {} ({} / {} / {}) |\n",
            figures.members_added,
            figures.recipients_not_added,
            figures.sf_reads + figures.sf_writes + figures.sf_bulk,
            figures.sf_reads,
            figures.sf_writes,
            figures.sf_bulk,
        );
    }
    Ok(report)
}

/// The simulated day with the cadence off and on: the section of BENCHMARKS.md.
async fn day_report(campaigns: usize, variants: &[day::Variant]) -> Result<String, String> {
    let mut report = format!(
        "\n## A simulated day\n\n{campaigns} linked campaigns, one sent each day before the day, engagement decaying after each send (seeded; a long tail reaches campaigns past their cadence), CM's local calendar day with 96 scheduled runs 15 minutes apart (at 00:22, 00:37, ..., the last at 00:07 the next day: the first run after the day's end), and in the hot variant the hot schedule's runs between them; the runs and each sync they ask for run in process against the sandbox, on the in-memory store (calls, invocations and freshness follow the simulated clock: they do not depend on the build or the machine). Freshness: from an activity's date to the end of the sync whose committed watermarks pass it, for campaigns under 48 hours old.\n\n"
    );
    report.push_str(day::DayFigures::header());
    for &variant in variants {
        let figures = day::simulate(campaigns, variant).await?;
        eprintln!("day, {variant:?}: {figures:?}");
        report.push_str(&figures.row());
    }
    Ok(report)
}
