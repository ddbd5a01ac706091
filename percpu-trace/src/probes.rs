//! Loading the embedded eBPF object and attaching it per the [`AttachPlan`].
//!
//! Every link is a file descriptor (perf events for kprobes and tracepoints, BPF links for
//! raw tracepoints and fentry/fexit), so the kernel removes them when the process exits for any reason, SIGKILL
//! included; dropping [`Probes`] detaches them earlier, on a normal exit, all at once.
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{KProbe, RawTracePoint, TracePoint},
    Btf, Ebpf,
};
use percpu_trace_common::drop_reason;

use crate::kernel::{
    self,
    plan::{AttachPlan, Attachment},
};

mod fentry_load;
mod func_btf;
mod loader;
mod misses;

pub use misses::{MissCounters, Misses};

/// The eBPF object built by build.rs from `percpu-trace-ebpf`.
static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/percpu-trace.bpf.o"));

/// One attached probe point, for the start-up summary and `bpf_stats`.
#[derive(Clone, Debug)]
pub struct Attached {
    /// Program name.
    pub program: String,
    /// Where it went.
    pub target: String,
}

/// The loaded programs, their links and maps.
pub struct Probes {
    ebpf: Ebpf,
    /// What was attached.
    pub attached: Vec<Attached>,
    /// Probe points that failed to attach at run time, with the error (plan said yes).
    pub failed: Vec<(String, String)>,
    /// Why the programs were loaded again with task flags read by the helper (the plan's
    /// `task_btf` direct read was refused: the first attempt's first error), if they were.
    pub task_btf_refused: Option<String>,
    /// The attachments, owned here rather than by their programs so that [`Drop`] can
    /// detach them all at once (see [`detach_concurrently`]).
    links: Vec<Link>,
}

/// One owned attachment; dropping it detaches it.
type Link = Box<dyn Send>;

impl Drop for Probes {
    fn drop(&mut self) {
        detach_concurrently(std::mem::take(&mut self.links));
    }
}

/// Detaches every link, each on its own thread. Each detach waits for an RCU grace period
/// in the kernel (tracepoint and kprobe unregistration, trampoline updates): one after
/// the other, 16 links took 0.6 s of a 1 s `record` on a 2-vCPU host; concurrent waits
/// share grace periods. A thread that cannot be started detaches its link here instead.
fn detach_concurrently(links: Vec<Link>) {
    std::thread::scope(|s| {
        for link in links {
            // On a spawn failure the closure, and the link in it, is dropped right here.
            let _ = std::thread::Builder::new()
                .name("detach".into())
                .spawn_scoped(s, move || drop(link));
        }
    });
}

impl Probes {
    /// Loads the object with the plan's config and attaches every available probe. The
    /// kernel BTF (`btf_file`, else /sys/kernel/btf/vmlinux) is read only when the plan
    /// has fentry/fexit attachments, after the object is loaded, and dropped once they are
    /// attached: two parsed copies of it would be the tool's peak memory. Fails when
    /// nothing at all could be attached.
    ///
    /// With `task_btf` set, a program that fails to load makes the whole set load again
    /// without it (task flags read with the helper, as on a kernel without BTF): no kernel
    /// this tool supports is known to refuse the direct read, but one that did must still
    /// be traced.
    pub fn attach(plan: &AttachPlan, btf_file: Option<&Path>) -> Result<Self> {
        let first = Self::attach_with(plan, &plan.config, btf_file);
        let retry =
            plan.config.task_btf != 0 && first.as_ref().map_or(true, |p| !p.failed.is_empty());
        if !retry {
            return first;
        }
        let (why, first_failed) = match &first {
            Ok(p) => (
                p.failed
                    .first()
                    .map(|(prog, e)| format!("{prog}: {e}"))
                    .unwrap_or_default(),
                p.failed.len(),
            ),
            Err(e) => (format!("{e:#}"), usize::MAX),
        };
        // Everything the first attempt attached is detached before the second.
        drop(first);
        let config = percpu_trace_common::ProbeConfig {
            task_btf: 0,
            ..plan.config
        };
        let mut second = Self::attach_with(plan, &config, btf_file)?;
        // Said only when the helper reads are what made the difference: a probe that fails
        // either way (a missing symbol, say) is not about the task pointer.
        if second.failed.len() < first_failed {
            second.task_btf_refused = Some(why);
        }
        Ok(second)
    }

    fn attach_with(
        plan: &AttachPlan,
        config: &percpu_trace_common::ProbeConfig,
        btf_file: Option<&Path>,
    ) -> Result<Self> {
        let mut ebpf = load_object(config, Some(plan.ring_bytes))?;
        let btf = kernel_btf(plan, btf_file)?;
        let btf = btf.as_ref();
        let mut attached = Vec::new();
        let mut failed = Vec::new();
        let mut links = Vec::new();
        for p in &plan.probes {
            let res = match &p.attachment {
                Attachment::Kprobe { symbol } | Attachment::Kretprobe { symbol } => {
                    attach_kprobe(&mut ebpf, &p.program, symbol).map(|l| (l, symbol.clone()))
                }
                Attachment::Fentry { symbol } | Attachment::Fexit { symbol } => {
                    attach_trampoline(&mut ebpf, &p.program, symbol, btf)
                        .map(|l| (l, symbol.clone()))
                }
                Attachment::Tracepoint {
                    category,
                    name,
                    raw: false,
                } => attach_tracepoint(&mut ebpf, &p.program, category, name)
                    .map(|l| (l, format!("{category}:{name}"))),
                Attachment::Tracepoint {
                    category,
                    name,
                    raw: true,
                } => attach_raw_tracepoint(&mut ebpf, &p.program, name)
                    .map(|l| (l, format!("{category}:{name} (raw)"))),
                Attachment::Unavailable { .. } => continue,
            };
            match res {
                Ok((link, target)) => {
                    links.push(link);
                    attached.push(Attached {
                        program: p.program.clone(),
                        target,
                    })
                }
                Err(e) => failed.push((p.program.clone(), format!("{e:#}"))),
            }
        }
        if attached.is_empty() {
            let why = failed
                .first()
                .map(|(p, e)| format!("{p}: {e}"))
                .unwrap_or_else(|| "the plan has no available probe".into());
            bail!("no probe could be attached ({why})");
        }
        Ok(Probes {
            ebpf,
            attached,
            failed,
            task_btf_refused: None,
            links,
        })
    }

    /// Takes the ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("EVENTS map missing or already taken")?;
        RingBuf::try_from(map).context("EVENTS is not a ring buffer")
    }

    /// Takes the stack map (once).
    pub fn take_stacks(&mut self) -> Result<StackTraceMap<MapData>> {
        let map = self
            .ebpf
            .take_map("STACKS")
            .context("STACKS map missing or already taken")?;
        StackTraceMap::try_from(map).context("STACKS is not a stack map")
    }

    /// Takes the host-wide activity counters (once).
    pub fn take_activity(&mut self) -> Result<ActivityCounters> {
        let map = self
            .ebpf
            .take_map("ACTIVITY")
            .context("ACTIVITY map missing or already taken")?;
        Ok(ActivityCounters(
            PerCpuArray::try_from(map).context("ACTIVITY is not a per-CPU array")?,
        ))
    }

    /// Takes the per-process constrained-allocation counts (once).
    pub fn take_processes(&mut self) -> Result<ProcessCounters> {
        let map = self
            .ebpf
            .take_map("PROCS")
            .context("PROCS map missing or already taken")?;
        Ok(ProcessCounters(
            aya::maps::HashMap::try_from(map).context("PROCS is not a hash map")?,
        ))
    }

    /// The kernel's miss counters of the attached programs (see [`MissCounters`]).
    pub fn miss_counters(&self) -> MissCounters {
        let ids = self
            .attached
            .iter()
            .filter_map(|a| Some((a, self.ebpf.program(&a.program)?)))
            .filter_map(|(a, p)| Some((p.info().ok()?.id(), a.program.clone())))
            .collect();
        MissCounters::new(ids)
    }

    /// Takes the drop counters (once).
    pub fn take_drops(&mut self) -> Result<DropCounters> {
        let map = self
            .ebpf
            .take_map("DROPS")
            .context("DROPS map missing or already taken")?;
        Ok(DropCounters(
            PerCpuArray::try_from(map).context("DROPS is not a per-CPU array")?,
        ))
    }
}

/// Kernel-side loss counters (see `percpu_trace_common::drop_reason`).
pub struct DropCounters(PerCpuArray<MapData, u64>);

impl DropCounters {
    /// Totals over CPUs, indexed by reason.
    pub fn read(&self) -> Result<[u64; drop_reason::COUNT as usize]> {
        let mut out = [0u64; drop_reason::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self.0.get(&(i as u32), 0).context("reading DROPS")?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }
}

/// All activity counters of one CPU (the map's single value: one lookup counts two).
type ActivityValue = [u64; percpu_trace_common::activity::COUNT as usize];

/// Host-wide activity counters (see `percpu_trace_common::activity`).
pub struct ActivityCounters(PerCpuArray<MapData, ActivityValue>);

impl ActivityCounters {
    /// Totals over CPUs, by counter name.
    pub fn read(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        use percpu_trace_common::activity;
        let per_cpu = self.0.get(&0, 0).context("reading ACTIVITY")?;
        Ok(activity::NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), per_cpu.iter().map(|cpu| cpu[i]).sum()))
            .collect())
    }
}

/// Constrained allocations by process, counted in the kernel (`PROCS`, an LRU hash keyed
/// by tgid; see `percpu_trace_common::ProcCount`).
pub struct ProcessCounters(aya::maps::HashMap<MapData, u32, percpu_trace_common::ProcCount>);

impl ProcessCounters {
    /// The processes with the most constrained allocations, as activity totals
    /// ([`crate::engine::process_key`]), at most [`crate::engine::TOP_PROCESSES`].
    pub fn read(&self) -> std::collections::BTreeMap<String, u64> {
        let mut all: Vec<(u32, percpu_trace_common::ProcCount)> =
            self.0.iter().filter_map(|r| r.ok()).collect();
        all.sort_by(|a, b| b.1.constrained.cmp(&a.1.constrained).then(a.0.cmp(&b.0)));
        all.truncate(crate::engine::TOP_PROCESSES);
        all.into_iter()
            .map(|(tgid, c)| {
                let end = c.comm.iter().position(|&b| b == 0).unwrap_or(c.comm.len());
                let comm = String::from_utf8_lossy(&c.comm[..end]);
                (crate::engine::process_key(tgid, &comm), c.constrained)
            })
            .collect()
    }
}

/// Kernel BTF for fentry/fexit attachments (None when the plan has none).
fn kernel_btf(plan: &AttachPlan, file: Option<&Path>) -> Result<Option<Btf>> {
    let needs = plan.probes.iter().any(|p| {
        matches!(
            p.attachment,
            Attachment::Fentry { .. } | Attachment::Fexit { .. }
        )
    });
    if !needs {
        return Ok(None);
    }
    let functions: Vec<&str> = plan
        .probes
        .iter()
        .filter_map(|p| match &p.attachment {
            Attachment::Fentry { symbol } | Attachment::Fexit { symbol } => Some(symbol.as_str()),
            _ => None,
        })
        .collect();
    let path = file.unwrap_or(Path::new("/sys/kernel/btf/vmlinux"));
    // Only the ids of the attach targets, not aya's parse of every type (see func_btf).
    func_btf::for_functions(path, &functions)
        .map(Some)
        .context("reading kernel BTF for fentry")
}

/// Environment variable that sets the stack map's bucket count (a test hook, see
/// `load_object`).
pub const STACK_MAP_ENTRIES_ENV: &str = "PERCPU_TRACE_STACK_MAP_ENTRIES";

/// Loads the embedded object with `config` as its `CONFIG` global and, when given, that
/// ring-buffer size (the object's own default otherwise), through the one loader.
fn load_object(config: &percpu_trace_common::ProbeConfig, ring_bytes: Option<u32>) -> Result<Ebpf> {
    // Test hook: a tiny stack map sends nearly every stack inline, so vm-test proves that
    // path on real kernels (its `contention-pid` scenario); never needed otherwise.
    let stack_entries = std::env::var(STACK_MAP_ENTRIES_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    loader::load(BPF_OBJECT, config, ring_bytes, stack_entries)
}

fn attach_kprobe(ebpf: &mut Ebpf, program: &str, symbol: &str) -> Result<Link> {
    let prog: &mut KProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {program} is not a kprobe"))?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {program}"))?;
    }
    let id = prog
        .attach(symbol, 0)
        .with_context(|| format!("attaching {program} to {symbol}"))?;
    Ok(Box::new(prog.take_link(id)?))
}

/// fentry/fexit: the program binds to its function at load time, so each program is
/// loaded and attached exactly once.
fn attach_trampoline(
    ebpf: &mut Ebpf,
    program: &str,
    symbol: &str,
    btf: Option<&Btf>,
) -> Result<Link> {
    let btf = btf.context("fentry/fexit need kernel BTF")?;
    let prog = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?;
    match prog {
        aya::programs::Program::FEntry(p) => {
            p.load(symbol, btf)
                .with_context(|| format!("loading {program} for {symbol}"))?;
            let id = p
                .attach()
                .with_context(|| format!("attaching {program} to {symbol}"))?;
            Ok(Box::new(p.take_link(id)?))
        }
        aya::programs::Program::FExit(p) => {
            p.load(symbol, btf)
                .with_context(|| format!("loading {program} for {symbol}"))?;
            let id = p
                .attach()
                .with_context(|| format!("attaching {program} to {symbol}"))?;
            Ok(Box::new(p.take_link(id)?))
        }
        _ => bail!("program {program} is not fentry/fexit"),
    }
}

fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<Link> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {program} is not a tracepoint"))?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {program}"))?;
    }
    let id = prog
        .attach(category, name)
        .with_context(|| format!("attaching {program} to {category}:{name}"))?;
    Ok(Box::new(prog.take_link(id)?))
}

/// A raw tracepoint (a BPF link, by the event's name): its release unregisters the probe
/// and frees it after a grace period without waiting for one.
fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<Link> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {program} is not a raw tracepoint"))?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {program}"))?;
    }
    let id = prog
        .attach(name)
        .with_context(|| format!("attaching {program} to raw tracepoint {name}"))?;
    Ok(Box::new(prog.take_link(id)?))
}

/// Reads kernel memory through the `read_kmem` program (BPF_PROG_TEST_RUN), for discovery
/// on hosts without /proc/kcore. Loads its own copy of the object, before the real one.
pub struct KernelMemReader {
    ebpf: Ebpf,
}

impl KernelMemReader {
    /// Loads the object and the reader program.
    pub fn new() -> Result<Self> {
        let mut ebpf = load_object(&percpu_trace_common::ProbeConfig::default(), None)?;
        let prog: &mut aya::programs::RawTracePoint = ebpf
            .program_mut("read_kmem")
            .context("program read_kmem not in the eBPF object")?
            .try_into()
            .context("read_kmem is not a raw tracepoint program")?;
        prog.load().context("loading read_kmem")?;
        Ok(KernelMemReader { ebpf })
    }

    /// Reads `len` bytes at kernel address `addr`.
    pub fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>> {
        use aya::programs::{RawTracePointRunOptions, TestRun};
        use percpu_trace_common::KMEM_CHUNK;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = addr + out.len() as u64;
            let prog: &aya::programs::RawTracePoint = self
                .ebpf
                .program("read_kmem")
                .context("read_kmem missing")?
                .try_into()?;
            let mut opts = RawTracePointRunOptions::new();
            opts.args[0] = at;
            let res = prog
                .test_run(opts)
                .context("BPF_PROG_TEST_RUN of read_kmem")?;
            if res.return_value != 0 {
                bail!("kernel memory at {at:#x} is not readable");
            }
            let map: aya::maps::Array<_, [u8; KMEM_CHUNK]> =
                aya::maps::Array::try_from(self.ebpf.map("KMEM").context("KMEM map missing")?)?;
            let chunk = map.get(&0, 0).context("reading KMEM")?;
            let take = (len - out.len()).min(KMEM_CHUNK);
            out.extend_from_slice(&chunk[..take]);
        }
        Ok(out)
    }
}

impl kernel::KernelMemory for KernelMemReader {
    fn read(&mut self, addr: u64, len: usize) -> std::result::Result<Vec<u8>, String> {
        KernelMemReader::read(self, addr, len).map_err(|e| format!("{e:#}"))
    }
}

/// Discovery's access to BPF ([`kernel::BpfProbe`]): the fentry load test and the
/// `read_kmem` reader, both made here so that `kernel` does no bpf(2) itself.
pub struct BpfProber;

impl kernel::BpfProbe for BpfProber {
    fn load_fentry(&self, attach_btf_id: u32) -> std::result::Result<(), String> {
        fentry_load::bpf_load_fentry(attach_btf_id)
    }

    fn kernel_memory(&self) -> std::result::Result<Box<dyn kernel::KernelMemory>, String> {
        KernelMemReader::new()
            .map(|r| Box::new(r) as Box<dyn kernel::KernelMemory>)
            .map_err(|e| format!("{e:#}"))
    }
}

/// Loads (verifies) every program that needs no attach target (kprobe, tracepoint, raw
/// tracepoint) without attaching anything: proof that this kernel's verifier accepts them.
/// fentry/fexit programs are verified against a function at load time, so they are listed
/// as not checked here.
pub fn verify_programs(
    config: &percpu_trace_common::ProbeConfig,
) -> Result<Vec<(String, std::result::Result<(), String>)>> {
    use aya::programs::Program;
    let mut ebpf = load_object(config, None)?;
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    let mut out = Vec::new();
    for name in names {
        let prog = ebpf.program_mut(&name).context("program vanished")?;
        let res = match prog {
            Program::KProbe(p) => p.load().map_err(|e| format!("{e:#}")),
            Program::TracePoint(p) => p.load().map_err(|e| format!("{e:#}")),
            Program::RawTracePoint(p) => p.load().map_err(|e| format!("{e:#}")),
            _ => Err("not checked: fentry/fexit verify against a target function".into()),
        };
        out.push((name, res));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discovery on the machine running the tests (needs root for the fentry probe and tracefs):
    /// `cargo test -p percpu-trace probes::tests::live -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn live_discovery_prints_check() {
        let k = kernel::discover(&kernel::DiscoverOptions::default(), &BpfProber).unwrap();
        let plan = k.plan(kernel::plan::AttachMode::Auto).unwrap();
        println!("{}", kernel::check::render_text(&k, &plan));
        println!(
            "{}",
            serde_json::to_string_pretty(&kernel::check::render_json(&k, &plan)).unwrap()
        );
    }

    /// Start-up derives each kernel fact once: discovery (with the code scan, which needs
    /// root) reads the kernel BTF file once, and the loads for discovery's kernel-memory
    /// reader and for the probes share one aya loader (one aya parse of the kernel BTF).
    /// Each repeat cost ~0.05-0.1 s of `record`'s start-up on a 2-vCPU host.
    /// `cargo test -p percpu-trace probes::tests::start_up -- --ignored` (root).
    #[test]
    #[ignore]
    fn start_up_reads_kernel_btf_once() {
        let before = kernel::btf_file::opens_on_this_thread();
        let k = kernel::discover(&kernel::DiscoverOptions::default(), &BpfProber).unwrap();
        assert_eq!(kernel::btf_file::opens_on_this_thread() - before, 1);
        assert!(
            k.mutex.wait_field.is_some() || k.mutex.layout.as_ref().is_some_and(|l| l.rt),
            "the code scan's wait field comes with the discovered facts"
        );
        let plan = k.plan(kernel::plan::AttachMode::Auto).unwrap();
        let probes = Probes::attach(&plan, None).unwrap();
        assert!(!probes.attached.is_empty());
        drop(probes);
        assert_eq!(loader::loaders_created(), 1);
    }
}
