//! Where a sync's CPU time goes: one measured sync of a workload sampled with Linux `perf`
//! (when it is installed), its samples grouped by what the functions do.

use std::path::Path;
use std::process::Command;

use crate::once::Job;

/// Groups of functions, by name, in the order a sample is matched against them.
const GROUPS: [(&str, &[&str]); 10] = [
    (
        "allocating and freeing memory",
        &[
            "malloc",
            "free",
            "mi_",
            "_mi_",
            "realloc",
            "alloc::alloc",
            "drop_in_place",
            "dying_next",
        ],
    ),
    (
        "comparing and copying bytes (map keys, strings)",
        &["memcmp", "memmove", "memcpy", "memset", "bcmp"],
    ),
    (
        "the spool (activity in postcard frames, parts in temporary files)",
        &["postcard", "spool::"],
    ),
    (
        "reading and writing JSON (CM pages, SF requests and answers)",
        &["serde_json", "serde_core", "serde::", "ryu", "itoa"],
    ),
    ("dates (parsing, formatting, zones)", &["chrono", "chrono_tz"]),
    ("hashing (keys, parts)", &["sip::", "sha2", "hmac", "Hasher", "hash::"]),
    ("CSV of Bulk jobs", &["csv", "bulk::"]),
    ("the rules (plan, decisions)", &["mapping::"]),
    (
        "network and the runtime (kernel, TLS-free HTTP, tokio)",
        &["[k]", "hyper", "tokio", "reqwest", "h2::", "http::", "mio"],
    ),
    (
        "the sync's own stages (engine, clients, store)",
        &["engine::", "salesforce::", "campaign_monitor::", "state::", "aws_"],
    ),
];

/// The CPU profile of one sync of `job`, as a BENCHMARKS.md section; `None` without `perf`.
pub async fn measure(job: &Job, dir: &Path, workload: &str) -> Option<String> {
    let data = dir.join("perf.data");
    let job_path = dir.join("profiled-job.json");
    std::fs::write(&job_path, serde_json::to_vec(job).ok()?).ok()?;
    let exe = std::env::current_exe().ok()?;
    let recorded = tokio::process::Command::new("perf")
        .args(["record", "-q", "-F", "999", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&exe)
        .envs(crate::allocator_env("scheduled-sync").ok()?)
        .arg("once")
        .arg("--job")
        .arg(&job_path)
        .output()
        .await
        .ok()?;
    if !recorded.status.success() {
        eprintln!("perf record failed: {}", String::from_utf8_lossy(&recorded.stderr));
        return None;
    }
    let report = Command::new("perf")
        .args(["report", "--no-children", "--sort", "dso,symbol", "--stdio", "-i"])
        .arg(&data)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&report.stdout);
    let mut shares = vec![0.0f64; GROUPS.len() + 1];
    for line in text.lines() {
        let line = line.trim();
        let Some((percent, rest)) = line.split_once('%') else {
            continue;
        };
        let Ok(percent) = percent.trim().parse::<f64>() else {
            continue;
        };
        let group = GROUPS
            .iter()
            .position(|(_, needles)| needles.iter().any(|n| rest.contains(n)))
            .unwrap_or(GROUPS.len());
        shares[group] += percent;
    }
    let mut section = format!(
        "\n### Where the sync's CPU time goes\n\nOne more full sync of {workload} at no added latency, sampled with `perf record -F 999` (the sync's process only; the stand-ins and the emulator are other processes), its samples grouped by function name:\n\n| what | share of the sync's CPU samples |\n|---|---|\n"
    );
    let mut rows: Vec<(&str, f64)> = GROUPS
        .iter()
        .map(|(name, _)| *name)
        .zip(shares.iter().copied())
        .collect();
    rows.push(("everything else", shares[GROUPS.len()]));
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, share) in rows {
        section += &format!("| {name} | {share:.0}% |\n");
    }
    Some(section)
}
