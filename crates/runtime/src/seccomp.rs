//! The default seccomp profile for machines.
//!
//! # Why a denylist
//!
//! Machines are built up by trial and error: robots install whatever package
//! manager, language runtime or database they need. An allowlist (Docker's
//! `SCMP_ACT_ERRNO` default) breaks such software in confusing ways whenever a
//! libc or runtime starts using a syscall the list does not know yet (it took
//! years for `clone3`, `faccessat2` and `statx` to be tolerated everywhere).
//! The isolation boundary is already formed by namespaces, the dropped
//! capability set and `no_new_privs`; most dangerous syscalls fail for lack of
//! a capability anyway. The profile therefore allows by default and denies,
//! with `EPERM`, the syscalls that either reach kernel surfaces a machine
//! never needs (modules, kexec, swap, clocks, accounting, keyrings, bpf,
//! perf, userfaultfd, io_uring, the mount API) or would let a process leave
//! its namespaces (`unshare`, `setns`, user namespaces through `clone`).
//! Denying these even when a capability would also be required is deliberate:
//! it keeps the profile correct if someone later grants a capability.
//!
//! `clone3` fails with `ENOSYS` rather than `EPERM`: its flags live in memory
//! where seccomp cannot inspect them, and `ENOSYS` makes libc fall back to
//! `clone`, whose flags the profile can check.

use serde_json::{json, Value};

/// Syscalls every machine is denied, with `EPERM`.
///
/// Names unknown to the host's libseccomp or architecture are skipped by
/// both crun and runc, so one list serves every architecture.
const DENIED: &[&str] = &[
    // Filesystems and mounts: a machine's mount table is fixed at create.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "quotactl",
    "quotactl_fd",
    "swapon",
    "swapoff",
    // Kernel code and the machine's lifetime.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    // Kernel attack surface unprivileged code can otherwise reach.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "lookup_dcookie",
    "syslog",
    "acct",
    "uselib",
    "nfsservctl",
    "_sysctl",
    // Escaping namespaces or inspecting other processes' memory.
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // Host-wide clocks.
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // Raw hardware access.
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
];

/// `CLONE_NEWUSER`: the one namespace flag that needs no capability. The
/// flags are `clone`'s first argument on x86_64 and aarch64.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// `personality(0xffffffff)` only queries the current persona.
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

/// seccomp architectures for the build target: the native ABI plus the
/// compat ABIs the kernel would otherwise let through unfiltered.
fn architectures() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        &[]
    }
}

/// The `linux.seccomp` object of a machine's config.json.
pub(crate) fn profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [
            {
                "names": DENIED,
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM,
            },
            {
                "names": ["clone3"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::ENOSYS,
            },
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM,
                "args": [{
                    "index": 0,
                    "value": CLONE_NEWUSER,
                    "valueTwo": CLONE_NEWUSER,
                    "op": "SCMP_CMP_MASKED_EQ",
                }],
            },
            {
                // Changing the persona can disable ASLR (ADDR_NO_RANDOMIZE)
                // or make all reads executable; querying it is harmless.
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM,
                "args": [{
                    "index": 0,
                    "value": PERSONALITY_QUERY,
                    "op": "SCMP_CMP_NE",
                }],
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_the_syscalls_named_in_the_design() {
        let profile = profile();
        let denied = profile["syscalls"][0]["names"]
            .as_array()
            .expect("names array");
        for name in [
            "mount",
            "init_module",
            "bpf",
            "unshare",
            "setns",
            "ptrace",
            "keyctl",
        ] {
            assert!(denied.iter().any(|n| n == name), "{name} must be denied");
        }
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
