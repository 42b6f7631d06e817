//! The kernel's own count of program runs it skipped. A tracing program
//! (fentry/fexit, and on newer kernels kprobes and tracepoints too) is not
//! run while the same program is already running on that CPU; on
//! PREEMPT_RT, where such programs can be preempted, that happens under
//! load, and each skipped run is an event or a byte count lost. aya does
//! not expose the counter, so it is read with BPF_OBJ_GET_INFO_BY_FD.
use std::mem::{offset_of, size_of};
use std::os::fd::RawFd;

use aya_obj::generated::bpf_prog_info;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `info` member of `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `recursion_misses` of one program; None where the kernel predates the
/// field (5.12) or the call fails.
pub fn recursion_misses(fd: RawFd) -> Option<u64> {
    // SAFETY: bpf_prog_info is plain data; all-zero is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: &raw mut info as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`, which
    // we own, and updates attr.info_len to what it filled.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            size_of::<InfoAttr>() as libc::c_uint,
        )
    };
    let needed = offset_of!(bpf_prog_info, recursion_misses) + size_of::<u64>();
    (r == 0 && attr.info_len as usize >= needed).then_some(info.recursion_misses)
}
