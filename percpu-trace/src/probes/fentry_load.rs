//! A raw bpf(2) call (the other is `misses`): a minimal fentry load that tells discovery whether
//! this kernel accepts fentry programs (`kernel::BpfProbe::load_fentry`).

/// The prefix of `union bpf_attr` used by BPF_PROG_LOAD, up to attach_prog_fd.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: u32,
}

/// BPF_PROG_LOAD of `r0 = 0; exit` as BPF_PROG_TYPE_TRACING / BPF_TRACE_FENTRY attached to
/// BTF type `attach_btf_id` of the running kernel. Done by hand because aya can only load
/// a program from an object, and the one we embed has no target-free fentry program.
pub(crate) fn bpf_load_fentry(attach_btf_id: u32) -> Result<(), String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FENTRY: u32 = 24;
    // r0 = 0 (BPF_ALU64|BPF_MOV|BPF_K = 0xb7); exit (0x95).
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"pcpu_fentry_");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_TRACE_FENTRY,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: attr points at a live, fully initialised struct of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by the kernel and is owned here.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let name = match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOENT) => "ENOENT",
        Some(524) => "ENOTSUPP",
        _ => "error",
    };
    Err(format!(
        "BPF_PROG_LOAD(tracing/fentry) failed: {name} ({err})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layout_matches_the_kernel() {
        // attach_btf_id is at byte 108 of union bpf_attr for BPF_PROG_LOAD.
        let a = ProgLoadAttr::default();
        let base = &a as *const _ as usize;
        assert_eq!(&a.attach_btf_id as *const _ as usize - base, 108);
        assert_eq!(&a.expected_attach_type as *const _ as usize - base, 68);
    }
}
