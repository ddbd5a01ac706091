//! percpu-trace: live tracer for NOFS/NOIO reclaim recursion under pcpu_alloc_mutex.
//!
//! Layout: `kernel` (facts about the running kernel and the attach plan), `probes`
//! (loading and attaching the embedded eBPF object), `pipeline` (ring buffer to events),
//! `event` (decoded events), `engine` (pure detection), `record` (recordings), `report`,
//! `tui`, `live` (the live modes), `fix_probe` (`check --probe`), `cli`.
pub mod bounded;
pub mod cli;
pub mod debuginfo;
pub mod engine;
pub mod event;
pub mod fix_probe;
pub mod hex;
pub mod kernel;
pub mod live;
pub mod live_recording;
pub mod manual;
pub mod metrics;
pub mod module_debug;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod probes;
pub mod record;
pub mod report;
pub mod run;
pub mod session;
pub mod stop_guard;
pub mod symbolize;
pub mod tui;
