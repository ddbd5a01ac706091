//! Facts about the running kernel: capabilities, symbols, BTF, tracefs, and the attach plan.
//! Every kernel-specific number the tool uses comes from here.
//!
//! Three layers, each in its own files:
//! - gathering (`gather`, [`discover`]): every read from the machine (files, a tracefs mount
//!   when needed); BPF work (one fentry load attempt, kernel memory for the mutex code scan)
//!   goes through the [`BpfProbe`] the caller passes, so this module does no bpf(2) itself;
//! - pure analysis (`analyze`, one function per derived fact, plus the parsers in `btf`,
//!   `symbols`, `tracefs`, `decode`, `mutex_scan`), which the fixture tests run on data
//!   extracted from other kernels;
//! - tables (`tables`): built-in data the other two read.
//!
//! [`Kernel::plan`] turns the facts into an [`plan::AttachPlan`]; [`check`] renders both.
pub mod a64;
mod access;
mod analyze;
mod atomic_code;
pub mod btf;
pub mod btf_dump;
pub mod btf_file;
pub mod check;
pub mod decode;
mod facts;
pub mod fix_code;
mod gather;
pub mod identity;
pub mod image;
pub mod mutex_scan;
pub mod plan;
mod planner;
mod print_fmt;
pub mod symbols;
mod tables;
pub mod tracefs;
pub mod x86_alu;

#[cfg(test)]
mod code_fixture_tests;
#[cfg(test)]
pub(crate) mod fixture_tests;

pub use access::{BpfProbe, KernelMemory, NoBpf};
pub use facts::{
    BtfStatus, DecidedBy, DiscoverOptions, Fentry, FixStatus, FixVerdict, KallsymsStatus, Kernel,
    MutexInfo, ParamSource, PatchEvidence, PatchId, PatchState, PfFlags, Privileges, Signature,
    Support, TaskOffsets, Tracepoint, Verdict, MUTEX_LOST,
};
pub use gather::discover;
