//! Facts about the running kernel: capabilities, symbols, BTF, tracefs, and the attach plan.
//! Every kernel-specific number the tool uses comes from here.
pub mod plan;
pub mod mutex_scan;
