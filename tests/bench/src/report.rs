//! BENCHMARKS.md: the machine and commit, the targets against the medians, and the report
//! sections of the members and the simulated day.

use super::*;

pub(crate) fn machine() -> String {
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

pub(crate) fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn find<'a>(rows: &'a [Row], workload: &str, case: &str, latency_ms: u64) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.case == case && r.latency_ms == latency_ms && !r.runs.is_empty())
}

/// The targets against the medians measured.
pub(crate) fn targets(
    rows: &[Row],
    sandboxes: &[SandboxFigures],
    cold: &[coldstart::ColdStart],
    took: Option<f64>,
) -> String {
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
            "M full, 50 ms latency: at most 8 s",
            format!("{wall:.1} s"),
            wall <= 8.0,
        );
        line(
            "M full, 50 ms latency: at most 130 SF calls",
            format!("{:.0}", calls(m)),
            calls(m) <= 130.0,
        );
    }
    if let Some(l) = find(rows, "L", "full", 50) {
        let (wall, ..) = l.stat(|f| f.wall_s);
        line(
            "L full, 50 ms latency: within one invocation, at most 150 s",
            format!("{wall:.1} s"),
            wall <= 150.0,
        );
    }
    let peak = rows
        .iter()
        .filter(|r| r.workload == "L" && r.case == "full")
        .map(|r| r.stat(|f| f.peak_rss_mib).2)
        .fold(f64::NAN, f64::max);
    if peak.is_finite() {
        line(
            "L full: peak resident memory of the sync under 128 MiB",
            format!("{peak:.1} MiB (the highest of its runs)"),
            peak < 128.0,
        );
    }
    for workload in ["M", "L"] {
        if let Some(r) = find(rows, workload, "full", 0) {
            let (cpu, ..) = r.stat(|f| f.cpu_s);
            let (events, ..) = r.stat(|f| f.events as f64);
            let us = cpu * 1e6 / events.max(1.0);
            line(
                &format!("{workload} full: sync CPU (user + system) at most 5 µs per event"),
                format!("{us:.1} µs"),
                us <= 5.0,
            );
        }
    }
    if let Some(sandbox) = sandboxes.iter().find(|s| s.workload == "L") {
        line(
            "L sandbox: loaded in under 30 s",
            format!("{:.1} s", sandbox.load_s),
            sandbox.load_s < 30.0,
        );
        line(
            "L sandbox: under 3 GB resident at its peak",
            format!("{:.0} MiB", sandbox.peak_mib),
            sandbox.peak_mib < 3e9 / 1024.0 / 1024.0,
        );
    }
    if let Some(l) = find(rows, "L", "full", 0) {
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
    if let Some(minutes) = took {
        line(
            "`make bench` completes in at most 30 minutes (release build included)",
            format!("{minutes:.1} min"),
            minutes <= 30.0,
        );
    }
    for start in cold {
        line(
            &format!("{} cold start under 50 ms", start.function),
            format!("{:.1} ms", start.median_ms),
            start.median_ms < 50.0,
        );
    }
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

/// Minutes since `make bench` started (it writes the moment to `target/bench.started` before
/// building), if it did.
fn took_minutes() -> Option<f64> {
    let started: i64 = std::fs::read_to_string("target/bench.started")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((chrono::Utc::now().timestamp() - started) as f64 / 60.0)
}

pub(crate) fn write_report(
    out: &Path,
    rows: &[Row],
    sandboxes: &[SandboxFigures],
    cold: &[coldstart::ColdStart],
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
    text += "| workload | case | added latency | wall time (s) | events | events/s | sync CPU (µs/event) | SF calls (reads / writes / bulk) | CM calls | DynamoDB requests | peak RSS (MiB) |\n";
    text += "|---|---|---|---|---|---|---|---|---|---|---|\n";
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
        let (cpu, ..) = row.stat(|f| f.cpu_s);
        let rate = if wall > 0.0 { events / wall } else { 0.0 };
        let cpu_per_event = if events > 0.0 {
            format!("{:.1}", cpu * 1e6 / events)
        } else {
            "–".to_owned()
        };
        text += &format!(
            "| {} | {} | {} ms | {wall:.2} [{lo:.2}–{hi:.2}] | {events:.0} | {rate:.0} | {cpu_per_event} | {:.0} ({reads:.0} / {writes:.0} / {bulk:.0}) | {cm:.0} | {dynamo:.0} | {rss:.1} [{rss_lo:.1}–{rss_hi:.1}] |\n",
            row.workload,
            row.case,
            row.latency_ms,
            reads + writes + bulk,
        );
    }
    let took = took_minutes();
    text += &targets(rows, sandboxes, cold, took);
    text += "\nThe sandbox (the CM and SF stand-ins, one process, the workload generated in it from its seed): how long it took to build and load, and its resident memory then and at its peak over every case of the workload (each case starts from a reset, which builds the scenario again).\n\n| workload | loaded in (s) | resident when loaded (MiB) | peak resident (MiB) |\n|---|---|---|---|\n";
    for sandbox in sandboxes {
        text += &format!(
            "| {} | {:.1} | {:.0} | {:.0} |\n",
            sandbox.workload, sandbox.load_s, sandbox.loaded_mib, sandbox.peak_mib
        );
    }
    text += &coldstart::report(cold);
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
pub(crate) async fn members_report(dir: &Path) -> Result<String, String> {
    use mapping::settings::AddMissingMembers;
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err("AWS_ENDPOINT_URL is not set: run through `make bench` (it starts the moto emulator)".into());
    }
    let workload = WORKLOADS.iter().find(|w| w.name == "M").ok_or("no workload M")?;
    let generated = Generated::new(workload)?;
    let members_before = generated.members_before;
    let sandbox = Sandbox::start(&generated.shape)?;
    let job = generated.full_sync_job(&sandbox);
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
pub(crate) async fn day_report(campaigns: usize, variants: &[day::Variant]) -> Result<String, String> {
    let mut report = format!(
        "\n## A simulated day\n\n{campaigns} linked campaigns, one sent each day before the day, engagement decaying after each send (seeded; a long tail reaches campaigns past their cadence), CM's local calendar day with 96 scheduled runs 15 minutes apart (at 00:22, 00:37, ..., the last at 00:07 the next day: the first run after the day's end), and in the hot variant the hot schedule's runs between them; the runs and each sync they ask for run in process against the sandbox, on the in-memory store (calls, invocations and freshness follow the simulated clock: they do not depend on the build or the machine). Freshness: from an activity's date to the end of the sync whose committed watermarks pass it, for campaigns under 48 hours old.\n\n"
    );
    report.push_str(day::DayFigures::header());
    let mut days = Vec::new();
    for &variant in variants {
        let figures = day::simulate(campaigns, variant).await?;
        eprintln!("day, {variant:?}: {figures:?}");
        report.push_str(&figures.row());
        days.push(figures);
    }
    report.push_str(&cost_report(&days)?);
    Ok(report)
}

/// Public on-demand prices, us-east-1, as checked on the date below (infra/README.md, "What it
/// costs", gives the same with their pages).
const PRICES_CHECKED: &str = "2026-11-27";
const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
const DYNAMODB_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
const EVENTBRIDGE_PER_EVENT: f64 = 1.00 / 1e6;
const SCHEDULER_PER_INVOCATION: f64 = 1.00 / 1e6;
const SCHEDULER_FREE_PER_MONTH: f64 = 14e6;
const SECRET_PER_MONTH: f64 = 0.40;
const SECRETS_API_PER_CALL: f64 = 0.05 / 10_000.0;
const ALARM_PER_MONTH: f64 = 0.10;
/// What a deployed invocation waits for that the in-process day does not: each CM or SF call
/// taken at 100 ms, one after another (an upper bound: reads go side by side), and each state
/// store operation at 10 ms.
const API_CALL_S: f64 = 0.100;
const STORE_OPERATION_S: f64 = 0.010;
const DAYS_A_MONTH: f64 = 30.0;

/// A parameter's default in the template.
fn template_default(template: &serde_norway::Value, parameter: &str) -> Result<f64, String> {
    template["Parameters"][parameter]["Default"]
        .as_f64()
        .or_else(|| template["Parameters"][parameter]["Default"].as_str()?.parse().ok())
        .ok_or_else(|| format!("the template has no default for {parameter}"))
}

/// What a month of each simulated day's schedule costs, from its measured invocations, their
/// time, the calls and store operations they made, and the template's settings.
fn cost_report(days: &[day::DayFigures]) -> Result<String, String> {
    let text = std::fs::read_to_string("infra/template.yaml").map_err(|e| format!("infra/template.yaml: {e}"))?;
    let template: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    let memory_gb = template_default(&template, "SyncMemoryMB")? / 1024.0;
    // The secrets the template makes, and those made before the deploy and named to it
    // (`CmSecretName`, `SfSecretName`, ...).
    let secrets = template["Resources"].as_mapping().map_or(0, |r| {
        r.values()
            .filter(|v| v["Type"] == "AWS::SecretsManager::Secret")
            .count()
    }) + template["Parameters"].as_mapping().map_or(0, |p| {
        p.keys()
            .filter(|k| k.as_str().is_some_and(|k| k.ends_with("SecretName")))
            .count()
    });
    let alarms = template["Resources"].as_mapping().map_or(0, |r| {
        r.values().filter(|v| v["Type"] == "AWS::CloudWatch::Alarm").count()
    });
    let sync_concurrency = template_default(&template, "SyncConcurrency")?;
    let mut report = format!(
        "\n### What a month costs\n\nA month of 30 such days, per schedule, from the table above: Lambda GB-seconds are the invocations' measured time in process plus {API_CALL_S} s for each CM or SF call and {STORE_OPERATION_S} s for each state operation (one after another: an upper bound), at the template's `SyncMemoryMB` ({mem} MB); every state operation is priced as a DynamoDB write unit (reads cost a fifth: an upper bound); each sync request is one EventBridge event; scheduled runs are EventBridge Scheduler invocations (14 million a month are free); Secrets Manager: the template's {secrets} secrets, and three secret reads per cold start, taking one cold start per sync container ({sync_concurrency}, `SyncConcurrency`) for each scheduled run; {alarms} CloudWatch alarms. Not counted: CloudWatch Logs (a few MB a day at INFO), the webhook path (priced per million events in infra/README.md), data transfer. Prices: us-east-1 on-demand, checked {PRICES_CHECKED} (arm64 Lambda ${LAMBDA_ARM_GB_SECOND} per GB-s and $0.20 per million requests; DynamoDB $0.625 per million write units; EventBridge $1.00 per million events; Scheduler $1.00 per million; Secrets Manager $0.40 a secret-month and $0.05 per 10,000 calls; CloudWatch $0.10 an alarm-month).\n\n| cadence | invocations | GB-seconds | Lambda | DynamoDB | EventBridge | Scheduler | Secrets Manager | alarms | total a month |\n|---|---|---|---|---|---|---|---|---|---|\n",
        mem = memory_gb * 1024.0,
    );
    for figures in days {
        let month = |daily: f64| daily * DAYS_A_MONTH;
        let seconds = figures.compute_s
            + (figures.cm_calls + figures.sf_calls) as f64 * API_CALL_S
            + figures.store_operations as f64 * STORE_OPERATION_S;
        let gb_seconds = month(seconds * memory_gb);
        let lambda = gb_seconds * LAMBDA_ARM_GB_SECOND + month(figures.invocations as f64) * LAMBDA_PER_REQUEST;
        let dynamodb = month(figures.store_operations as f64) * DYNAMODB_PER_WRITE_UNIT;
        let eventbridge = month(figures.events_published as f64) * EVENTBRIDGE_PER_EVENT;
        let scheduled_runs = month(figures.scheduled_runs as f64);
        let scheduler = (scheduled_runs - SCHEDULER_FREE_PER_MONTH).max(0.0) * SCHEDULER_PER_INVOCATION;
        let secrets_cost =
            secrets as f64 * SECRET_PER_MONTH + month(96.0 * sync_concurrency * 3.0) * SECRETS_API_PER_CALL;
        let alarms_cost = alarms as f64 * ALARM_PER_MONTH;
        let total = lambda + dynamodb + eventbridge + scheduler + secrets_cost + alarms_cost;
        report.push_str(&format!(
            "| {} | {:.0} | {:.0} | ${:.2} | ${:.2} | ${:.2} | ${:.2} ({:.0} runs) | ${:.2} | ${:.2} | **${:.2}** |\n",
            figures.variant_label(),
            month(figures.invocations as f64),
            gb_seconds,
            lambda,
            dynamodb,
            eventbridge,
            scheduler,
            scheduled_runs,
            secrets_cost,
            alarms_cost,
            total
        ));
    }
    Ok(report)
}
