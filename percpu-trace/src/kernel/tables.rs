//! The built-in tables discovery falls back on or iterates over: probe targets by role,
//! parameter lists of functions missing from BTF, and the tracepoints read. Data only; the
//! analysis (`analyze`) and the gathering (`gather`) both read them from here.

/// Probe targets by role: alternatives in order of preference (new name first).
/// 6.1 has the static `pcpu_alloc`; when even that is unusable, the exported
/// `__alloc_percpu_gfp(size, align, gfp)` is the dependable entry (it misses __alloc_percpu()
/// callers, which pass GFP_KERNEL and are only constrained by a task scope).
pub(crate) const ROLES: &[(&str, &[&str])] = &[
    (
        "pcpu_alloc",
        &["pcpu_alloc_noprof", "pcpu_alloc", "__alloc_percpu_gfp"],
    ),
    ("pcpu_get_vm_areas", &["pcpu_get_vm_areas"]),
    (
        "vmalloc",
        &["__vmalloc_node_range_noprof", "__vmalloc_node_range"],
    ),
    ("try_to_free_pages", &["try_to_free_pages"]),
    (
        "try_to_free_mem_cgroup_pages",
        &["try_to_free_mem_cgroup_pages"],
    ),
    ("pcpu_create_chunk", &["pcpu_create_chunk"]),
    ("pcpu_populate_chunk", &["pcpu_populate_chunk"]),
    ("pcpu_balance_workfn", &["pcpu_balance_workfn"]),
    ("__pte_alloc_kernel", &["__pte_alloc_kernel"]),
    ("__pmd_alloc", &["__pmd_alloc"]),
    ("__pud_alloc", &["__pud_alloc"]),
];

/// Parameter lists used when a function is not in BTF (static functions can be missing on
/// older kernels, or BTF may be absent). From the kernel sources of 6.1..7.3 (KERNELS.md).
/// pcpu_get_vm_areas is listed without the fix's gfp: a table cannot tell the fix status.
pub(crate) const TABLE: &[(&str, &[&str])] = &[
    ("pcpu_alloc_noprof", &["size", "align", "reserved", "gfp"]),
    ("pcpu_alloc", &["size", "align", "reserved", "gfp"]),
    ("__alloc_percpu_gfp", &["size", "align", "gfp"]),
    ("pcpu_create_chunk", &["gfp"]),
    (
        "pcpu_populate_chunk",
        &["chunk", "page_start", "page_end", "gfp"],
    ),
    (
        "pcpu_get_vm_areas",
        &["offsets", "sizes", "nr_vms", "align"],
    ),
    (
        "__vmalloc_node_range_noprof",
        &[
            "size", "align", "start", "end", "gfp_mask", "prot", "vm_flags", "node", "caller",
        ],
    ),
    (
        "__vmalloc_node_range",
        &[
            "size", "align", "start", "end", "gfp_mask", "prot", "vm_flags", "node", "caller",
        ],
    ),
    (
        "try_to_free_pages",
        &["zonelist", "order", "gfp_mask", "nodemask"],
    ),
    (
        "try_to_free_mem_cgroup_pages",
        &["memcg", "nr_pages", "gfp_mask"],
    ),
];

/// Tracepoints read, with the BTF template struct holding their record (for when tracefs
/// cannot be read).
pub(crate) const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("percpu", "percpu_alloc_percpu", "percpu_alloc_percpu"),
    ("percpu", "percpu_create_chunk", "percpu_create_chunk"),
    (
        "vmscan",
        "mm_vmscan_direct_reclaim_begin",
        "mm_vmscan_direct_reclaim_begin_template",
    ),
    (
        "vmscan",
        "mm_vmscan_direct_reclaim_end",
        "mm_vmscan_direct_reclaim_end_template",
    ),
    (
        "vmscan",
        "mm_vmscan_memcg_reclaim_begin",
        "mm_vmscan_direct_reclaim_begin_template",
    ),
    (
        "vmscan",
        "mm_vmscan_memcg_reclaim_end",
        "mm_vmscan_direct_reclaim_end_template",
    ),
    ("lock", "contention_begin", "contention_begin"),
    ("lock", "contention_end", "contention_end"),
    ("sched", "sched_process_exit", "sched_process_template"),
];
