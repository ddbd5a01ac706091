//! From kernel facts to an [`AttachPlan`]: per eBPF program, where it attaches or why it
//! cannot, and the complete [`ProbeConfig`].
use anyhow::{bail, Result};
use percpu_trace_common::{ProbeConfig, NO_ARG};

use super::{
    plan::{
        AttachMode, AttachPlan, Attachment, PlannedProbe, POINTS_PERCPU_TRACEPOINTS, POINT_POPULATE,
    },
    symbols::Resolution,
    Fentry, Kernel, ParamSource, MUTEX_LOST,
};

impl Kernel {
    /// The attach plan for `mode`. `Auto` becomes `Fentry` when a test fentry program loaded,
    /// else `Kprobe` when this kernel supports kprobes, else `Tracepoint`. An explicit mode the
    /// kernel cannot do fails with one line (it is not silently degraded).
    pub fn plan(&self, mode: AttachMode) -> Result<AttachPlan> {
        let fentry_ok = matches!(self.fentry, Fentry::Supported { .. });
        let mode = match mode {
            AttachMode::Fentry if !fentry_ok => {
                let why = match &self.fentry {
                    Fentry::Refused { error, .. } => error.clone(),
                    Fentry::NotProbed { reason } => format!("not probed: {reason}"),
                    Fentry::Supported { .. } => String::new(),
                };
                bail!("--attach fentry: this kernel refuses fentry programs ({why}); use --attach kprobe or tracepoint")
            }
            AttachMode::Kprobe if !self.kprobes.available => {
                bail!("--attach kprobe: this kernel has no kprobe support ({}); use --attach tracepoint", self.kprobes.detail)
            }
            AttachMode::Auto if fentry_ok => AttachMode::Fentry,
            AttachMode::Auto if self.kprobes.available => AttachMode::Kprobe,
            AttachMode::Auto => AttachMode::Tracepoint,
            m => m,
        };
        let mut config = self.probe_config();
        let mut probes = Vec::new();
        let tp_mode = mode == AttachMode::Tracepoint;
        config.tracepoint_mode = u32::from(tp_mode);
        let mutex_known = self.mutex.addr.is_some() && self.mutex.layout.is_some();
        let name = mode_name(mode);

        // Function probes: (point, kprobe program, fentry program, role, return probe,
        // argument positions read, what is lost without it).
        let pcpu = "seeing constrained callers on entry (before the mutex), the caller gfp of nested allocations, \
                    and allocation failures";
        let create = "chunk creation under the mutex (pcpu_get_vm_areas with GFP_KERNEL metadata)";
        let pgt = "kernel page-table allocation (GFP_PGTABLE_KERNEL) by the mutex holder";
        let funcs: [FuncProbe; 9] = [
            ("pcpu_alloc entry", "pcpu_alloc_enter", "fentry_pcpu_alloc", "pcpu_alloc", false,
             vec![config.arg_pcpu_gfp, config.arg_pcpu_size], pcpu),
            ("pcpu_alloc return", "pcpu_alloc_exit", "fexit_pcpu_alloc", "pcpu_alloc", true, vec![], pcpu),
            ("pcpu_create_chunk", "chunk_create", "fentry_chunk_create", "pcpu_create_chunk", false,
             vec![config.arg_create_gfp], create),
            (POINT_POPULATE, "chunk_populate", "fentry_chunk_populate", "pcpu_populate_chunk", false,
             vec![config.arg_populate_gfp],
             "chunk population by a constrained caller under the mutex (pcpu_mem_zalloc GFP_KERNEL, page allocation)"),
            ("pcpu_get_vm_areas", "get_vm_areas", "fentry_get_vm_areas", "pcpu_get_vm_areas", false,
             vec![config.arg_vm_areas_nr],
             "vmap area allocation for a new chunk (GFP_KERNEL kcalloc/kzalloc on unpatched kernels)"),
            ("__vmalloc_node_range", "vmalloc_node", "fentry_vmalloc_node", "vmalloc", false,
             vec![config.arg_vmalloc_gfp], "vmalloc by the mutex holder"),
            ("__pte_alloc_kernel (page tables)", "pgtable_alloc", "fentry_pte_alloc", "__pte_alloc_kernel", false, vec![], pgt),
            ("__pmd_alloc (page tables)", "pgtable_alloc", "fentry_pmd_alloc", "__pmd_alloc", false, vec![], pgt),
            ("__pud_alloc (page tables)", "pgtable_alloc", "fentry_pud_alloc", "__pud_alloc", false, vec![], pgt),
        ];
        for (point, kprog, fprog, role, ret, args, disables) in funcs {
            let holder_only = matches!(kprog, "vmalloc_node" | "pgtable_alloc");
            let is_pgt = kprog == "pgtable_alloc";
            if is_pgt && self.symbols.get(role).is_none_or(|s| s.symbol.is_none()) {
                // Not every level exists everywhere (folded page tables); say so only when none does.
                let any = ["__pte_alloc_kernel", "__pmd_alloc", "__pud_alloc"]
                    .iter()
                    .any(|r| self.symbols.get(*r).is_some_and(|s| s.symbol.is_some()));
                if any || role != "__pte_alloc_kernel" {
                    continue;
                }
            }
            let program = if mode == AttachMode::Fentry {
                fprog
            } else {
                kprog
            };
            let a = match mode {
                AttachMode::Tracepoint => Attachment::Unavailable {
                    reason: format!("not used in {name} mode"),
                },
                _ if holder_only && !mutex_known => Attachment::Unavailable {
                    reason: "reports only the holder of pcpu_alloc_mutex, whose address is unknown"
                        .into(),
                },
                AttachMode::Fentry => self.fentry_on(role, ret, &args),
                _ => self.kprobe_on(role, ret, &args),
            };
            probes.push(probe(point, program, a, disables));
        }
        let alloc_tp = if tp_mode {
            self.tracepoint(
                "percpu",
                "percpu_alloc_percpu",
                &["gfp_flags", "is_atomic", "size", "align"],
                &[
                    "gfp_flags",
                    "is_atomic",
                    "size",
                    "align",
                    "reserved",
                    "call_site",
                ],
            )
        } else {
            Attachment::Unavailable {
                reason: format!(
                    "not used in {name} mode: the pcpu_alloc entry probe sees the same calls"
                ),
            }
        };
        probes.push(probe(
            POINTS_PERCPU_TRACEPOINTS[1],
            &program_for("percpu_alloc_tp", &alloc_tp),
            alloc_tp,
            "constrained percpu allocations in tracepoint mode",
        ));
        let create_tp = if tp_mode {
            self.tracepoint(
                "percpu",
                "percpu_create_chunk",
                &["base_addr"],
                &["base_addr"],
            )
        } else {
            Attachment::Unavailable {
                reason: format!(
                    "not used in {name} mode: the pcpu_create_chunk probe sees it with its gfp"
                ),
            }
        };
        probes.push(probe(
            POINTS_PERCPU_TRACEPOINTS[0],
            &program_for("chunk_create_tp", &create_tp),
            create_tp,
            create,
        ));

        // Reclaim: tracepoints in every mode (they fire inside try_to_free_pages /
        // try_to_free_mem_cgroup_pages).
        let reclaim = [
            (
                "direct_reclaim_begin",
                "mm_vmscan_direct_reclaim_begin",
                &["gfp_flags", "order"][..],
                "direct reclaim entry (the recursion itself)",
            ),
            (
                "direct_reclaim_end",
                "mm_vmscan_direct_reclaim_end",
                &["nr_reclaimed"][..],
                "direct reclaim end (duration, pages)",
            ),
            (
                "memcg_reclaim_begin",
                "mm_vmscan_memcg_reclaim_begin",
                &["gfp_flags", "order"][..],
                "memcg reclaim entry",
            ),
            (
                "memcg_reclaim_end",
                "mm_vmscan_memcg_reclaim_end",
                &["nr_reclaimed"][..],
                "memcg reclaim end",
            ),
        ];
        for (program, tp, fields, disables) in reclaim {
            let mut a = self.tracepoint("vmscan", tp, fields, fields);
            if program.starts_with("memcg") && is_raw(&a) {
                // One set of positions serves both families (CONFIG's raw_reclaim_*).
                let d = &self.tracepoints[&format!("vmscan:{}", tp.replace("memcg", "direct"))];
                if d.raw_args != self.tracepoints[&format!("vmscan:{tp}")].raw_args {
                    a = self.tracepoint_event("vmscan", tp, fields);
                }
            }
            if program.starts_with("memcg") && !is_raw(&a) {
                // One set of offsets serves both families: they share their templates.
                let (d, m) = (
                    &self.tracepoints[&format!("vmscan:{}", tp.replace("memcg", "direct"))],
                    &self.tracepoints[&format!("vmscan:{tp}")],
                );
                if let (Some(df), Some(mf)) = (&d.format, &m.format) {
                    if fields.iter().any(|f| df.offset(f) != mf.offset(f)) {
                        a = Attachment::Unavailable {
                            reason: format!("{tp} layout differs from the direct reclaim event"),
                        };
                    }
                }
            }
            probes.push(probe(tp, &program_for(program, &a), a, disables));
        }

        // Mutex waiters.
        for (program, tp, fields, args) in [
            (
                "contention_begin",
                "contention_begin",
                &["lock_addr", "flags"][..],
                &["lock", "flags"][..],
            ),
            (
                "contention_end",
                "contention_end",
                &["lock_addr", "ret"][..],
                &["lock", "ret"][..],
            ),
        ] {
            let a = if self.mutex.addr.is_some() {
                let mut a = self.tracepoint("lock", tp, fields, args);
                let lock_at = |t: &str| self.tracepoints[&format!("lock:{t}")].raw_arg("lock");
                if is_raw(&a) && lock_at("contention_begin") != lock_at(tp) {
                    // CONFIG has one position for both (raw_lock_addr_arg).
                    a = self.tracepoint_event("lock", tp, fields);
                }
                let begin = self.tracepoints["lock:contention_begin"]
                    .format
                    .as_ref()
                    .and_then(|f| f.offset("lock_addr"));
                let here = self.tracepoints[&format!("lock:{tp}")]
                    .format
                    .as_ref()
                    .and_then(|f| f.offset("lock_addr"));
                if matches!(a, Attachment::Tracepoint { raw: false, .. }) && begin != here {
                    a = Attachment::Unavailable {
                        reason: "lock_addr is not at the same offset as in contention_begin".into(),
                    };
                }
                a
            } else {
                Attachment::Unavailable {
                    reason: "useless without the address of pcpu_alloc_mutex (unknown)".into(),
                }
            };
            probes.push(probe(
                tp,
                &program_for(program, &a),
                a,
                "waiters on pcpu_alloc_mutex (cross-task detection)",
            ));
        }

        let exit = self.tracepoint("sched", "sched_process_exit", &[], &[]);
        probes.push(probe(
            "sched_process_exit",
            &program_for("task_exit", &exit),
            exit,
            "cleanup of per-task state when a task exits mid-allocation (stale entries)",
        ));
        Ok(AttachPlan {
            mode,
            probes,
            ring_bytes: super::plan::DEFAULT_RING_BYTES,
            config,
        })
    }

    /// A kprobe (or kretprobe) on the function of `role`, if it resolved and the arguments the
    /// program reads are known.
    fn kprobe_on(&self, role: &str, ret: bool, args: &[u32]) -> Attachment {
        let Some(s) = self.symbols.get(role) else {
            return Attachment::Unavailable {
                reason: format!("{role}: unknown role"),
            };
        };
        let reason = match &s.resolution {
            Resolution::Exact | Resolution::Clone { .. } => None,
            Resolution::Missing => Some(format!(
                "{} is not in kallsyms (renamed, inlined or not built)",
                s.wanted
            )),
            Resolution::PartOnly { parts } => Some(format!(
                "{} was inlined; only {} exists, which is not its entry",
                s.wanted,
                parts.join(", ")
            )),
            Resolution::Ambiguous { names } => Some(format!(
                "{} is ambiguous in kallsyms: {}",
                s.wanted,
                names.join(", ")
            )),
        };
        if let Some(reason) = reason {
            return Attachment::Unavailable { reason };
        }
        if s.kprobe_blacklisted == Some(true) {
            return Attachment::Unavailable {
                reason: format!("{} is in the kprobe blacklist", s.wanted),
            };
        }
        if !ret && args.contains(&NO_ARG) {
            return Attachment::Unavailable {
                reason: format!(
                    "{}: a parameter the program reads is unknown (not in BTF or the table)",
                    s.wanted
                ),
            };
        }
        let symbol = s.symbol.clone().unwrap_or_default();
        if ret {
            Attachment::Kretprobe { symbol }
        } else {
            Attachment::Kprobe { symbol }
        }
    }

    /// An fentry (or fexit) on the function of `role`: it must be in BTF under its own name
    /// (the trampoline binds to that name), not a compiler clone, and not notrace.
    fn fentry_on(&self, role: &str, ret: bool, args: &[u32]) -> Attachment {
        match self.kprobe_on(role, ret, args) {
            Attachment::Kprobe { symbol } | Attachment::Kretprobe { symbol } => {
                let s = &self.symbols[role];
                if symbol != s.wanted {
                    return Attachment::Unavailable {
                        reason: format!(
                            "only the clone {symbol} exists; fentry binds to {} by its BTF name",
                            s.wanted
                        ),
                    };
                }
                if self.signatures.get(role).map(|x| &x.source) != Some(&ParamSource::Btf) {
                    return Attachment::Unavailable {
                        reason: format!("{symbol} is not in BTF (fentry needs it)"),
                    };
                }
                if s.ftrace == Some(false) {
                    return Attachment::Unavailable {
                        reason: format!("{symbol} is notrace (not in available_filter_functions)"),
                    };
                }
                if ret {
                    Attachment::Fexit { symbol }
                } else {
                    Attachment::Fentry { symbol }
                }
            }
            other => other,
        }
    }

    /// A tracepoint: raw when BTF gives the position of every argument in `args` (the
    /// program's reads by `TP_PROTO` name), else a perf tracepoint event if tracefs has it
    /// and its format has the `fields` the program reads.
    fn tracepoint(&self, category: &str, name: &str, fields: &[&str], args: &[&str]) -> Attachment {
        let raw_ok = self
            .tracepoints
            .get(&format!("{category}:{name}"))
            .is_some_and(|t| t.raw_args.is_ok() && args.iter().all(|a| t.raw_arg(a).is_some()));
        if raw_ok {
            return Attachment::Tracepoint {
                category: category.into(),
                name: name.into(),
                raw: true,
            };
        }
        self.tracepoint_event(category, name, fields)
    }

    /// A perf tracepoint event, if tracefs has it and its format has the fields the program
    /// reads.
    fn tracepoint_event(&self, category: &str, name: &str, fields: &[&str]) -> Attachment {
        if self.tracefs.path.is_none() {
            let why = self
                .tracefs
                .error
                .clone()
                .unwrap_or_else(|| "tracefs unavailable".into());
            return Attachment::Unavailable { reason: why };
        }
        let Some(tp) = self.tracepoints.get(&format!("{category}:{name}")) else {
            return Attachment::Unavailable {
                reason: format!("{category}:{name} not examined"),
            };
        };
        if tp.exists == Some(false) {
            return Attachment::Unavailable {
                reason: format!("{category}:{name} does not exist in this kernel"),
            };
        }
        if !fields.is_empty() {
            let Some(f) = &tp.format else {
                return Attachment::Unavailable {
                    reason: format!("{category}:{name}: format unreadable"),
                };
            };
            let missing: Vec<&str> = fields
                .iter()
                .copied()
                .filter(|x| f.offset(x).is_none())
                .collect();
            if !missing.is_empty() {
                return Attachment::Unavailable {
                    reason: format!("{category}:{name} has no field {}", missing.join(", ")),
                };
            }
        }
        Attachment::Tracepoint {
            category: category.into(),
            name: name.into(),
            raw: false,
        }
    }

    /// Every load-time global the eBPF programs read.
    pub fn probe_config(&self) -> ProbeConfig {
        let arg = |role: &str, names: &[&str]| {
            self.signatures
                .get(role)
                .and_then(|s| s.index(names))
                .unwrap_or(NO_ARG)
        };
        let tp = |key: &str, field: &str| {
            self.tracepoints
                .get(key)
                .and_then(|t| t.format.as_ref())
                .and_then(|f| f.offset(field))
                .unwrap_or(0)
        };
        let raw = |key: &str, name: &str| {
            self.tracepoints
                .get(key)
                .and_then(|t| t.raw_arg(name))
                .unwrap_or(NO_ARG)
        };
        let layout = self.mutex.layout.clone();
        let flags_known = self.task.flags.is_some();
        ProbeConfig {
            mutex_addr: if layout.is_some() {
                self.mutex.addr.unwrap_or(0)
            } else {
                0
            },
            mutex_owner_mask: layout.as_ref().map(|l| l.owner_mask).unwrap_or(0),
            mutex_owner_off: layout.as_ref().map(|l| l.owner_off).unwrap_or(0),
            task_flags_off: self.task.flags.unwrap_or(0),
            gfp_io: self.gfp.io(),
            gfp_fs: self.gfp.fs(),
            gfp_direct_reclaim: self.gfp.direct_reclaim(),
            // Without the flags offset the BPF side would read garbage: no scope bits at all.
            pf_memalloc_nofs: if flags_known {
                self.pf.memalloc_nofs
            } else {
                0
            },
            pf_memalloc_noio: if flags_known {
                self.pf.memalloc_noio
            } else {
                0
            },
            filter_tgid: 0,
            arg_pcpu_size: arg("pcpu_alloc", &["size"]),
            arg_pcpu_align: arg("pcpu_alloc", &["align"]),
            arg_pcpu_reserved: arg("pcpu_alloc", &["reserved"]),
            arg_pcpu_gfp: arg("pcpu_alloc", &["gfp"]),
            arg_create_gfp: arg("pcpu_create_chunk", &["gfp"]),
            arg_populate_gfp: arg("pcpu_populate_chunk", &["gfp"]),
            arg_populate_start: arg("pcpu_populate_chunk", &["page_start"]),
            arg_populate_end: arg("pcpu_populate_chunk", &["page_end"]),
            arg_vm_areas_gfp: arg("pcpu_get_vm_areas", &["gfp", "gfp_mask"]),
            arg_vm_areas_nr: arg("pcpu_get_vm_areas", &["nr_vms"]),
            arg_vmalloc_gfp: arg("vmalloc", &["gfp_mask", "gfp"]),
            arg_vmalloc_size: arg("vmalloc", &["size"]),
            tp_pcpu_gfp_off: tp("percpu:percpu_alloc_percpu", "gfp_flags"),
            tp_pcpu_atomic_off: tp("percpu:percpu_alloc_percpu", "is_atomic"),
            tp_pcpu_reserved_off: tp("percpu:percpu_alloc_percpu", "reserved"),
            tp_pcpu_size_off: tp("percpu:percpu_alloc_percpu", "size"),
            tp_pcpu_align_off: tp("percpu:percpu_alloc_percpu", "align"),
            tp_pcpu_call_site_off: tp("percpu:percpu_alloc_percpu", "call_site"),
            tp_chunk_base_off: tp("percpu:percpu_create_chunk", "base_addr"),
            tp_reclaim_gfp_off: tp("vmscan:mm_vmscan_direct_reclaim_begin", "gfp_flags"),
            tp_reclaim_order_off: tp("vmscan:mm_vmscan_direct_reclaim_begin", "order"),
            tp_reclaim_nr_off: tp("vmscan:mm_vmscan_direct_reclaim_end", "nr_reclaimed"),
            tp_lock_addr_off: tp("lock:contention_begin", "lock_addr"),
            tp_lock_flags_off: tp("lock:contention_begin", "flags"),
            tp_lock_ret_off: tp("lock:contention_end", "ret"),
            pf_local_throttle: if flags_known {
                super::decode::PF_LOCAL_THROTTLE
            } else {
                0
            },
            tracepoint_mode: 0,
            task_pid_off: self.task.pid.unwrap_or(0),
            // The running kernel's own BTF (not a --btf file): the helper that returns the
            // task as a BTF pointer needs it.
            task_btf: u32::from(flags_known && !self.btf.from_user && self.btf.path.is_some()),
            raw_pcpu_gfp_arg: raw("percpu:percpu_alloc_percpu", "gfp_flags"),
            raw_pcpu_atomic_arg: raw("percpu:percpu_alloc_percpu", "is_atomic"),
            raw_pcpu_reserved_arg: raw("percpu:percpu_alloc_percpu", "reserved"),
            raw_pcpu_size_arg: raw("percpu:percpu_alloc_percpu", "size"),
            raw_pcpu_align_arg: raw("percpu:percpu_alloc_percpu", "align"),
            raw_pcpu_call_site_arg: raw("percpu:percpu_alloc_percpu", "call_site"),
            raw_chunk_base_arg: raw("percpu:percpu_create_chunk", "base_addr"),
            raw_reclaim_gfp_arg: raw("vmscan:mm_vmscan_direct_reclaim_begin", "gfp_flags"),
            raw_reclaim_order_arg: raw("vmscan:mm_vmscan_direct_reclaim_begin", "order"),
            raw_reclaim_nr_arg: raw("vmscan:mm_vmscan_direct_reclaim_end", "nr_reclaimed"),
            raw_lock_addr_arg: raw("lock:contention_begin", "lock"),
            raw_lock_flags_arg: raw("lock:contention_begin", "flags"),
            raw_lock_ret_arg: raw("lock:contention_end", "ret"),
        }
    }

    /// Detections lost because pcpu_alloc_mutex's address is unknown (empty when known).
    pub fn mutex_losses(&self) -> Vec<&'static str> {
        if self.mutex.addr.is_some() && self.mutex.layout.is_some() {
            Vec::new()
        } else {
            MUTEX_LOST.to_vec()
        }
    }
}

/// (point, kprobe program, fentry program, role, return probe, argument positions read,
/// what is lost without it).
type FuncProbe<'a> = (&'a str, &'a str, &'a str, &'a str, bool, Vec<u32>, &'a str);

/// The `--attach` spelling of a mode.
pub(crate) fn mode_name(m: AttachMode) -> &'static str {
    match m {
        AttachMode::Auto => "auto",
        AttachMode::Fentry => "fentry",
        AttachMode::Kprobe => "kprobe",
        AttachMode::Tracepoint => "tracepoint",
    }
}

/// Whether `a` is a raw tracepoint.
fn is_raw(a: &Attachment) -> bool {
    matches!(a, Attachment::Tracepoint { raw: true, .. })
}

/// The eBPF program for a tracepoint attachment: the raw tracepoint entry point of the same
/// body (`percpu_alloc_tp` -> `percpu_alloc_raw`, `task_exit` -> `task_exit_raw`) when `a`
/// is raw.
fn program_for(program: &str, a: &Attachment) -> String {
    if !is_raw(a) {
        return program.to_string();
    }
    match program.strip_suffix("_tp") {
        Some(stem) => format!("{stem}_raw"),
        None => format!("{program}_raw"),
    }
}

fn probe(point: &str, program: &str, attachment: Attachment, disables: &str) -> PlannedProbe {
    PlannedProbe {
        point: point.into(),
        program: program.into(),
        attachment,
        disables: disables.into(),
    }
}
