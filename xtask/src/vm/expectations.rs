//! What each scenario must show, per matrix line and attach mode: the tables the
//! matrix (kernels.rs, arm64.rs) points at and `assess` checks against.

/// What one scenario must show in one attach mode. Finding kinds are the report's
/// (`recursion`, `window`, `cross_task`), event kinds the recording's `kind.type`.
pub struct Expect {
    /// Scenario name.
    pub scenario: &'static str,
    /// Finding kinds that must appear (a miss of a timing-dependent scenario is retried
    /// in a fresh boot).
    pub findings: &'static [&'static str],
    /// Finding kinds that must not appear.
    pub never: &'static [&'static str],
    /// Event kinds that must be recorded (the activity the scenario is about).
    pub events: &'static [&'static str],
    /// Event kinds that must not be recorded (the mode cannot see them).
    pub no_events: &'static [&'static str],
    /// What `report --format json` of the recording must say about the fix verdict.
    pub after: After,
    /// `observation.activity` counters of the report that must be above 0 (the slow path
    /// was exercised and the report says so), with the text report's "what was seen".
    pub activity: &'static [&'static str],
}

/// The fix verdict the report of a scenario's recording must show (`kernel.fix`: the
/// line's check-time verdict reconciled with what the run saw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Not asserted: whether the scenario shows the patches at work is timing.
    Any,
    /// The line's check-time verdict, not changed by the run (`upgraded_by_run` false).
    Same,
    /// Changed by the run to this verdict (`upgraded_by_run` true); a miss is retried.
    Upgraded(&'static str),
}

const ALL: &[&str] = &["recursion", "window", "cross_task"];
/// The slow path taken by a constrained caller, as the report counts it: the mutex taken
/// and a chunk populated under it (issue 18: a run without findings must show them).
const SLOW_PATH: &[&str] = &[
    "constrained_took_mutex",
    "chunk_populates_by_constrained_holder",
];
/// pcpu_alloc entry (fentry/kprobe) or after unlock (tracepoint): a constrained caller.
const ALLOC: &str = "pcpu_alloc_enter";

// Per-scenario expectations shared by several tables below (the same line in each).
#[rustfmt::skip]
const V_IDLE: Expect = Expect { scenario: "idle", findings: &[], never: ALL, events: &[], no_events: &[], after: After::Same, activity: &[] };
#[rustfmt::skip]
const V_NOIO_SCOPE: Expect = Expect { scenario: "noio-scope", findings: &[], never: &["window"], events: &[ALLOC, "chunk_populate"], no_events: &[], after: After::Same, activity: SLOW_PATH };
#[rustfmt::skip]
const V_NOIO_GFP: Expect = Expect { scenario: "noio-gfp", findings: &["window"], never: &[], events: &[ALLOC], no_events: &[], after: After::Same, activity: &[] };
#[rustfmt::skip]
const V_CONTENTION: Expect = Expect { scenario: "contention", findings: &["cross_task"], never: &[], events: &["contention_begin"], no_events: &[], after: After::Same, activity: &[] };
/// `recursion` must be reported (as often as truth counts it).
#[rustfmt::skip]
const V_RECURSION: Expect = Expect { scenario: "recursion", findings: &["recursion"], never: &[], events: &[ALLOC, "pgtable_alloc", "reclaim_begin"], no_events: &[], after: After::Same, activity: &[] };
/// `recursion` run and truth-checked, a hit not required.
#[rustfmt::skip]
const V_RECURSION_TRUTH: Expect = Expect { scenario: "recursion", findings: &[], never: &[], events: &[ALLOC, "pgtable_alloc"], no_events: &[], after: After::Same, activity: &[] };

/// A vulnerable 6.10+ kernel whose io.max path allocates blkgs with GFP_NOIO (7.2, and
/// 6.12 since 6.12.63): noio-gfp shows the same-task window, contention the cross-task
/// case, the IO_FLUSHER scope is recorded but is not a window.
#[rustfmt::skip]
pub const VULNERABLE: &[Expect] = &[
    V_IDLE,
    V_NOIO_SCOPE,
    V_NOIO_GFP,
    V_CONTENTION,
];

/// [`VULNERABLE`] plus `recursion` (the issue-25 recipe, its own 32-vCPU boot): the io.max
/// writer's reclaim with FS/IO allowed under the mutex must be reported, as often as the
/// tracefs ground truth beside the tool counts it (asserted on every run with truth). On
/// 6.12, where the kernel hit in the first pass (README.md, "recursion"), and on 7.2
/// ([`VULNERABLE_7_2`]). 7.2-rt takes the same path but hits far less often:
/// [`VULNERABLE_RECURSION_TRUTH`]. Not 6.1, whose blkg_alloc is GFP_KERNEL.
#[rustfmt::skip]
pub const VULNERABLE_RECURSION: &[Expect] = &[
    V_IDLE,
    V_NOIO_SCOPE,
    V_NOIO_GFP,
    V_CONTENTION,
    V_RECURSION,
];

/// [`VULNERABLE_RECURSION`] plus contention-pid (`--pid` of a holder), on the 7.2 fentry
/// line only: `recursion` must appear (on a quiet machine the kernel hit in 9 of 11 boots of
/// up to two passes, README.md "recursion").
#[rustfmt::skip]
pub const VULNERABLE_7_2: &[Expect] = &[
    V_IDLE,
    V_NOIO_SCOPE,
    V_NOIO_GFP,
    V_CONTENTION,
    V_RECURSION,
    Expect { scenario: "contention-pid", findings: &["cross_task"], never: &[], events: &["contention_begin"], no_events: &[], after: After::Same, activity: &[] },
];

/// 7.2-rt and arm64 7.2: [`VULNERABLE`] plus `recursion` run and checked against the ground
/// truth (every raw hit reported, none invented), a hit not required: the 7.2-rt kernel hit
/// in 4 of 23 passes measured (README.md, "recursion"), too few for CI to depend on even
/// with retries; arm64 has too few boots measured to require one.
#[rustfmt::skip]
pub const VULNERABLE_RECURSION_TRUTH: &[Expect] = &[
    V_IDLE,
    V_NOIO_SCOPE,
    V_NOIO_GFP,
    V_CONTENTION,
    V_RECURSION_TRUTH,
];

/// The fix series present: the constrained allocations are there, none of the three kinds.
/// Contention's unconstrained holders populate (backing-noio at work) and allocate page
/// tables in the scope the kernel sets (populate-gfp at work), so its report must say
/// `fixed`; in noio-scope and noio-gfp that is timing, not asserted.
/// `recursion` is the negative: the same recipe on the fixed kernel, where the writer's
/// nested allocations under the mutex are GFP_NOIO: no `recursion`, no `window` (and the
/// ground truth counts no raw hit either).
#[rustfmt::skip]
pub const FIXED_RECURSION: &[Expect] = &[
    V_IDLE,
    Expect { scenario: "noio-scope", findings: &[], never: ALL, events: &[ALLOC], no_events: &[], after: After::Any, activity: SLOW_PATH },
    Expect { scenario: "noio-gfp", findings: &[], never: ALL, events: &[ALLOC], no_events: &[], after: After::Any, activity: &[] },
    Expect { scenario: "contention", findings: &[], never: ALL, events: &[ALLOC], no_events: &[], after: After::Upgraded("fixed"), activity: SLOW_PATH },
    Expect { scenario: "recursion", findings: &[], never: ALL, events: &[ALLOC, "pgtable_alloc"], no_events: &[], after: After::Any, activity: &[] },
];

/// 6.1.y: has 9a5b183941b5 (vulnerable) but its blkg_alloc is GFP_KERNEL, so noio-gfp
/// makes no constrained allocation: there `window` must not appear (nothing to see); the
/// cross-task case (contention) is what proves the kernel vulnerable.
#[rustfmt::skip]
pub const VULNERABLE_6_1: &[Expect] = &[
    V_IDLE,
    V_NOIO_SCOPE,
    Expect { scenario: "noio-gfp", findings: &[], never: &["window"], events: &[], no_events: &[], after: After::Same, activity: &[] },
    V_CONTENTION,
];

/// Function probes that tracepoint mode does not attach (`check` lists them unavailable).
const FUNC_EVENTS: &[&str] = &[
    "pcpu_alloc_enter",
    "chunk_populate",
    "get_vm_areas",
    "pgtable_alloc",
    "vmalloc",
];

/// Tracepoint mode on a vulnerable kernel: constrained allocations only after unlock
/// (percpu_alloc_percpu), no nested allocation under the mutex. The one `window` this mode
/// can show is a chunk created under the mutex by a gfp-constrained caller whose
/// percpu_alloc_percpu follows (the kernel known to lack the fix): allowed in noio-gfp and
/// contention, not required (whether the writer itself creates a chunk is timing); never
/// for a scope-constrained caller (noio-scope), whose scope narrows the nested allocations.
/// `recursion` is allowed, not required: a reclaim under the mutex paired with the same
/// call's percpu_alloc_percpu (issue 24). No slow-path counts: this mode learns a caller's constraint only after the unlock, so it
/// never sees a constrained caller holding the mutex.
#[rustfmt::skip]
pub const VULNERABLE_TRACEPOINT: &[Expect] = &[
    Expect { scenario: "idle", findings: &[], never: ALL, events: &[], no_events: FUNC_EVENTS, after: After::Same, activity: &[] },
    Expect { scenario: "noio-scope", findings: &[], never: &["window"], events: &["pcpu_alloc_done"], no_events: FUNC_EVENTS, after: After::Same, activity: &[] },
    Expect { scenario: "noio-gfp", findings: &[], never: &[], events: &["pcpu_alloc_done"], no_events: FUNC_EVENTS, after: After::Same, activity: &[] },
    Expect { scenario: "contention", findings: &["cross_task"], never: &[], events: &["contention_begin"], no_events: FUNC_EVENTS, after: After::Same, activity: &[] },
];
