//! The conformance suite on the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod conformance;

conformance_suite!(async { state::memory::MemoryStore::new() });
