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
pub(crate) fn targets(rows: &[Row], cold: &[coldstart::ColdStart]) -> String {
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
    text += &targets(rows, cold);
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
    let sandbox = Sandbox::start(&generated.shape)?;
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
pub(crate) async fn day_report(campaigns: usize, variants: &[day::Variant]) -> Result<String, String> {
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
