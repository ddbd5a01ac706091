//! `percpu-trace` binary: everything lives in the library; see `cli`.
fn main() -> std::process::ExitCode {
    limit_heap_growth();
    percpu_trace::cli::main()
}

/// Start-up parses several large, short-lived things one after another (kallsyms text,
/// the kernel BTF more than once: discovery, aya's loader, the fentry attach). glibc puts
/// allocations below its mmap threshold on the heap, and raises that threshold each time a
/// large mmapped block is freed, so those buffers end up on a heap that never shrinks: the
/// recorder kept ~30 MB of heap RSS for 8 MB in use. A fixed threshold gives large blocks
/// their own mappings, returned to the kernel when freed, so RSS follows what is in use.
fn limit_heap_growth() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}
