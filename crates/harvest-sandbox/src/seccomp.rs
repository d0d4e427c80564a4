//! The system calls no process in a sandbox may make, as one list compiled two ways: a
//! classic-BPF program for bubblewrap's `--seccomp` (the local jail) and a JSON profile
//! for the Docker engine's `seccomp=` security option (a container).
//!
//! Why: the agent's tools run as the CLI's own uid, so without a filter a tool can
//! `ptrace` the CLI, copy its stdout socket with `pidfd_getfd` or write its memory with
//! `process_vm_writev`, and forge the session (its output, its answers to permission
//! prompts). The CLI is also made non-dumpable (its binary is execute-only, see
//! `local::execute_only`), which closes `/proc/<pid>/mem` too; the filter holds even where
//! that would not. Besides the ptrace family the list carries new namespaces (a tool gains
//! no capabilities in a user namespace of its own), mounts, io_uring and the kernel's
//! administrative calls. For a container this profile replaces the engine's default,
//! which is an allow-list: ours is a deny-list, so a call Docker's list does not know
//! (newer than it) is allowed here; the container also has no capabilities and
//! `no-new-privileges`, which is what stops most of the calls that list leaves out.

use serde_json::json;

/// Denied everywhere: calls that reach into another process, change the kernel or
/// mounts, or create namespaces. Each name is a syscall of every architecture we run on,
/// or is listed under `X86_64_ONLY`.
pub const DENIED: &[&str] = &[
    // Another process's memory and descriptors.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    // Namespaces: `clone` with namespace flags is denied by argument below.
    "unshare",
    "setns",
    // Mounts.
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    // The kernel itself.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // io_uring runs operations no filter sees; Docker's default denies it too.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// x86-64 has a few more of the same kind.
pub const X86_64_ONLY: &[&str] = &["iopl", "ioperm", "uselib", "_sysctl", "lookup_dcookie"];

/// `clone` flags that make a namespace: a `clone` carrying any of them is denied.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u32;

/// The Docker engine's profile: everything allowed but the list; `clone` with namespace
/// flags denied; `clone3` (whose flags sit behind a pointer no filter can read) answered
/// with ENOSYS, so the C library falls back to `clone`, as Docker's own default does.
pub fn docker_profile() -> String {
    let mut names: Vec<&str> = DENIED.to_vec();
    names.extend(X86_64_ONLY);
    let mut rules =
        vec![json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM})];
    // Rules on one call are alternatives, and a masked compare can only say "these bits
    // are set": one rule per namespace flag.
    for bit in (0..32)
        .map(|b| 1u32 << b)
        .filter(|b| NAMESPACE_FLAGS & b != 0)
    {
        rules.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": rules,
    })
    .to_string()
}

/// The BPF program for this machine's architecture, as bubblewrap reads it from
/// `--seccomp FD`: an array of `struct sock_filter`, native-endian.
pub fn bpf_program() -> Vec<u8> {
    let mut out = Vec::new();
    for ins in program() {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const BPF_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
const RET_ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO | errno

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8i (the low 32 bits first on the
/// little-endian machines we build for).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

fn denied_numbers() -> Vec<u32> {
    let mut nrs: Vec<i64> = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ];
    #[cfg(target_arch = "x86_64")]
    nrs.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS__sysctl,
        libc::SYS_lookup_dcookie,
    ]);
    nrs.into_iter().map(|n| n as u32).collect()
}

fn program() -> Vec<Insn> {
    let ins = |code, jt, jf, k| Insn { code, jt, jf, k };
    let denied = denied_numbers();
    // Layout, jumps counted from the next instruction:
    //   0 ld arch; 1 jeq ARCH ? 2 : deny; 2 ld nr;
    //   [x86-64: jge 0x40000000 (x32) ? deny]
    //   one jeq per denied number ? deny
    //   jeq clone ? (ld arg0; jset NS ? deny : allow)
    //   jeq clone3 ? enosys
    //   allow; deny; enosys
    let mut p = vec![ins(BPF_LD_W_ABS, 0, 0, OFF_ARCH)];
    let arch_check = p.len();
    p.push(ins(BPF_JEQ_K, 0, 0, AUDIT_ARCH));
    p.push(ins(BPF_LD_W_ABS, 0, 0, OFF_NR));
    let mut to_deny: Vec<usize> = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        to_deny.push(p.len());
        p.push(ins(BPF_JGE_K, 0, 0, 0x4000_0000));
    }
    for nr in denied {
        to_deny.push(p.len());
        p.push(ins(BPF_JEQ_K, 0, 0, nr));
    }
    // clone: jt falls into the flag check (next), jf skips it.
    p.push(ins(BPF_JEQ_K, 0, 2, libc::SYS_clone as u32));
    p.push(ins(BPF_LD_W_ABS, 0, 0, OFF_ARG0_LO));
    let flag_check = p.len();
    p.push(ins(BPF_JSET_K, 0, 0, NAMESPACE_FLAGS));
    let clone3 = p.len();
    p.push(ins(BPF_JEQ_K, 0, 0, libc::SYS_clone3 as u32));
    let allow = p.len();
    p.push(ins(BPF_RET_K, 0, 0, RET_ALLOW));
    let deny = p.len();
    p.push(ins(BPF_RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    let enosys = p.len();
    p.push(ins(BPF_RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));

    let rel = |from: usize, to: usize| u8::try_from(to - from - 1).unwrap_or(u8::MAX);
    p[arch_check].jf = rel(arch_check, deny);
    for at in to_deny {
        p[at].jt = rel(at, deny);
    }
    // jset true: a namespace flag is set → deny; false → allow.
    p[flag_check].jt = rel(flag_check, deny);
    p[flag_check].jf = rel(flag_check, allow);
    p[clone3].jt = rel(clone3, enosys);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions the program uses, so the
    /// decisions are checked here; `tests/conformance.rs` checks them against the kernel.
    fn run(p: &[Insn], arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0_LO => arg0,
                        k => panic!("load of {k}"),
                    }
                }
                BPF_JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                BPF_JSET_K => pc += usize::from(if acc & i.k != 0 { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                c => panic!("opcode {c}"),
            }
        }
    }

    #[test]
    fn the_ptrace_family_is_denied_and_ordinary_calls_pass() {
        let p = program();
        let deny = RET_ERRNO | libc::EPERM as u32;
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_pidfd_getfd,
            libc::SYS_process_vm_writev,
            libc::SYS_process_vm_readv,
            libc::SYS_unshare,
        ] {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), deny, "{nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_pidfd_open,
        ] {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), RET_ALLOW, "{nr}");
        }
        assert_eq!(
            run(&p, 0x4000_0003, libc::SYS_read as u32, 0),
            deny,
            "another ABI"
        );
    }

    #[test]
    fn clone_makes_processes_but_no_namespaces() {
        let p = program();
        let clone = libc::SYS_clone as u32;
        let fork_flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u32;
        assert_eq!(run(&p, AUDIT_ARCH, clone, fork_flags), RET_ALLOW);
        assert_eq!(
            run(
                &p,
                AUDIT_ARCH,
                clone,
                fork_flags | libc::CLONE_NEWUSER as u32
            ),
            RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(
            run(&p, AUDIT_ARCH, libc::SYS_clone3 as u32, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_docker_profile_lists_the_same_calls() {
        let v: serde_json::Value = serde_json::from_str(&docker_profile()).unwrap();
        let names = v["syscalls"][0]["names"].as_array().unwrap();
        for n in ["ptrace", "pidfd_getfd", "process_vm_writev", "unshare"] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        assert_eq!(denied_numbers().len(), names.len());
    }
}
