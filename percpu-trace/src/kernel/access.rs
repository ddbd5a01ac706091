//! What discovery needs from the BPF side, as traits the caller implements: kernel/ makes no
//! bpf(2) call itself and does not depend on `probes` (which depends on `kernel` for the
//! plan). `probes::BpfProber` and `probes::KernelMemReader` are the real implementations.

/// Reads kernel memory. Implemented by `probes::KernelMemReader` (a BPF test run); the tests
/// use closures over fixture bytes.
pub trait KernelMemory {
    /// `len` bytes at kernel address `addr`, or why they could not be read.
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String>;
}

impl<F: FnMut(u64, usize) -> Result<Vec<u8>, String>> KernelMemory for F {
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        self(addr, len)
    }
}

/// What discovery asks of the BPF side. Implemented by `probes::BpfProber`; a caller that
/// cannot or must not load programs passes [`NoBpf`].
pub trait BpfProbe {
    /// Tries BPF_PROG_LOAD of a minimal BPF_PROG_TYPE_TRACING / BPF_TRACE_FENTRY program
    /// attached to the running kernel's BTF type `attach_btf_id`. Err: errno name and text.
    fn load_fentry(&self, attach_btf_id: u32) -> Result<(), String>;
    /// Opens a kernel-memory reader (loading a program can fail: Err says why).
    fn kernel_memory(&self) -> Result<Box<dyn KernelMemory>, String>;
}

/// A [`BpfProbe`] that does nothing: fentry is reported refused and kernel memory unreadable.
pub struct NoBpf;

impl BpfProbe for NoBpf {
    fn load_fentry(&self, _attach_btf_id: u32) -> Result<(), String> {
        Err("no BPF access given to discovery".into())
    }

    fn kernel_memory(&self) -> Result<Box<dyn KernelMemory>, String> {
        Err("no BPF access given to discovery".into())
    }
}
