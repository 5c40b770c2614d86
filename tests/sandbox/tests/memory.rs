//! What the stand-ins hold for a big workload: workload L (a million recipients) must load and
//! sync within 3 GB resident on a 24 GiB, 2-core machine next to the sync and the emulator
//! (#34). Measured here on a tenth of L with L's mix, as the growth of this process's resident
//! memory (one test in this binary: nothing else allocates meanwhile); the resident figure of
//! the real L, loaded and at its peak through two full syncs, is in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use sandbox::generate::{Shape, generate_world};

/// This process's resident memory, MiB (Linux `/proc`).
fn resident_mib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib / 1024
}

#[test]
fn a_tenth_of_workload_l_loads_in_a_tenth_of_its_budget() {
    // L's seed and mix: 100,000 recipients, 80,000 activities, 95% of them people in
    // Salesforce, half of those already members.
    let shape = Shape {
        seed: 103,
        recipients: 100_000,
        activities: 80_000,
        ..Shape::default()
    };
    let before = resident_mib();
    let world = generate_world(&shape, "http://127.0.0.1:9").unwrap();
    let grown = resident_mib().saturating_sub(before);
    let people = ["Contact", "Lead"]
        .iter()
        .map(|object| world.sf.records.get(*object).map_or(0, |r| r.len()))
        .sum::<usize>();
    assert!(people > 90_000, "the whole org is there: {people} people");
    eprintln!("a tenth of L: {grown} MiB resident");
    // L ten times over: under 2 GB for its load, which leaves the sync's writes room within
    // the 3 GB (as JSON maps, the org alone took 1.1 GB more).
    assert!(grown < 200, "a tenth of L takes {grown} MiB resident");
}
