//! The process's one aya [`EbpfLoader`], which every load of the embedded object goes
//! through (the `read_kmem` reader during discovery, the probes, `verify_programs`).
//!
//! Why one: aya 0.14's `EbpfLoader::new` parses the whole kernel BTF
//! (/sys/kernel/btf/vmlinux) with no way to opt out, and this object has no CO-RE
//! relocations, so that parse is never used. A loader per load made start-up parse it
//! once per load (two on every `record`, ~0.1 s each on a 2-vCPU host); kept here, it is
//! parsed once per process and dropped at once (`btf(None)`), before anything else big
//! is read.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex, PoisonError,
};

use anyhow::{anyhow, Result};
use aya::{Ebpf, EbpfLoader};
use percpu_trace_common::{ProbeConfig, CONFIG_GLOBAL};

use crate::kernel::plan::DEFAULT_RING_BYTES;

/// The loader, created on first use. `'static` because it outlives every load: the
/// globals it is given are interned (see [`interned`]).
static LOADER: Mutex<Option<EbpfLoader<'static>>> = Mutex::new(None);

/// How many loaders (so kernel BTF parses by aya) this process created: 1 at most.
static CREATED: AtomicUsize = AtomicUsize::new(0);

/// Every distinct `CONFIG` value given to the loader, leaked once each so the loader can
/// keep borrowing it: a process loads with two or three distinct configs at most.
static CONFIGS: Mutex<Vec<&'static ProbeConfig>> = Mutex::new(Vec::new());

/// Loads `object` with `config` as its `CONFIG` global and that ring-buffer size (the
/// default, [`DEFAULT_RING_BYTES`], when None: an earlier load's size must not carry over),
/// and `stack_entries` buckets in its stack map when given (a test hook from the
/// environment, so the same in every load of a process: it cannot carry over wrongly).
pub(super) fn load(
    object: &[u8],
    config: &ProbeConfig,
    ring_bytes: Option<u32>,
    stack_entries: Option<u32>,
) -> Result<Ebpf> {
    let mut guard = LOADER.lock().unwrap_or_else(PoisonError::into_inner);
    let loader = guard.get_or_insert_with(|| {
        CREATED.fetch_add(1, Ordering::Relaxed);
        let mut loader = EbpfLoader::new();
        // The object has no CO-RE relocations: the kernel BTF the loader parsed on
        // creation is not needed, so it is dropped before anything else is allocated.
        loader.btf(None);
        loader
    });
    loader.override_global(CONFIG_GLOBAL, interned(config), true);
    loader.map_max_entries("EVENTS", ring_bytes.unwrap_or(DEFAULT_RING_BYTES));
    if let Some(n) = stack_entries {
        loader.map_max_entries("STACKS", n);
    }
    loader
        .load(object)
        .map_err(|e| anyhow!("loading the eBPF object: {e}"))
}

/// A `'static` copy of `config`, shared with any earlier equal one.
fn interned(config: &ProbeConfig) -> &'static ProbeConfig {
    let mut configs = CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = configs.iter().find(|c| **c == config) {
        return c;
    }
    let c: &'static ProbeConfig = Box::leak(Box::new(*config));
    configs.push(c);
    c
}

/// How many `EbpfLoader`s (each a full parse of the kernel BTF) this process created.
#[cfg(test)]
pub(crate) fn loaders_created() -> usize {
    CREATED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    /// Only this module creates an aya loader: `EbpfLoader::new` (and `Ebpf::load`, which
    /// calls it) parse the whole kernel BTF, so another one would be a repeat of that parse.
    #[test]
    fn only_this_module_creates_loaders() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("probes/loader.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for needle in ["EbpfLoader::new", "EbpfLoader::default", "Ebpf::load"] {
                        if text.contains(needle) {
                            found.push(format!("{}: {needle}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "aya loaders created outside probes/loader.rs: {found:?}"
        );
    }
}
