//! Seccomp filters: the runtime default profile (the one containerd 1.6's
//! CRI plugin applies for `RuntimeDefault`, `contrib/seccomp`), and
//! `Localhost` profiles read from a file in the runtime spec's JSON form.
//!
//! The default denies (EPERM) every syscall it does not list; what it allows
//! grows with the container's bounding capabilities, as containerd's does.

use std::path::Path;

use berth_runtime::{RuntimeError, SeccompProfile};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

/// Syscalls every container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls a bounding capability unlocks.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and the query.
const PERSONAS: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// clone(2) flags that make namespaces; without CAP_SYS_ADMIN a clone
/// passing any of them fails.
const CLONE_NAMESPACE_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0200_0000 // CLONE_NEWCGROUP
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000; // CLONE_NEWNET

const ENOSYS: u32 = 38;

/// The architectures the filter covers and the syscalls only this one has.
#[cfg(target_arch = "x86_64")]
const ARCH: (&[&str], &[&str]) = (
    &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    &["arch_prctl", "modify_ldt"],
);
#[cfg(target_arch = "aarch64")]
const ARCH: (&[&str], &[&str]) = (
    &["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
    &[
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ],
);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: (&[&str], &[&str]) = (&[], &[]);

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

/// The runtime default profile for a process with these bounding
/// capabilities, on a kernel of this version (ptrace is allowed from 4.8).
pub(crate) fn default_profile(bounding: &[&str], kernel: Option<(u32, u32)>) -> Value {
    let (architectures, arch_syscalls) = ARCH;
    let mut syscalls = vec![allow(ALLOWED)];
    for persona in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}],
        }));
    }
    if kernel.is_some_and(|k| k >= (4, 8)) {
        syscalls.push(allow(&["ptrace"]));
    }
    if !arch_syscalls.is_empty() {
        syscalls.push(allow(arch_syscalls));
    }
    for (cap, names) in BY_CAPABILITY {
        if bounding.contains(cap) {
            syscalls.push(allow(names));
        }
    }
    if !bounding.contains(&"CAP_SYS_ADMIN") {
        // Threads and plain forks, but no new namespaces.
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
        // ENOSYS, not EPERM, so libcs fall back to clone.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

/// The `linux.seccomp` of a spec, if the profile sets one. Privileged
/// processes run unconfined whatever the profile says.
pub(crate) fn for_process(
    profile: &SeccompProfile,
    privileged: bool,
    bounding: &[&str],
) -> Result<Option<Value>, RuntimeError> {
    if privileged {
        return Ok(None);
    }
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(default_profile(
            bounding,
            berth_runtime::kernel_version(),
        ))),
        SeccompProfile::Localhost(path) => localhost(path).map(Some),
    }
}

/// A profile file, read and checked as containerd's `seccomp.WithProfile`
/// reads it (the runtime spec's `LinuxSeccomp`).
fn localhost(path: &Path) -> Result<Value, RuntimeError> {
    let bytes = std::fs::read(path).map_err(|e| {
        RuntimeError::other(format!(
            "cannot load seccomp profile {:?}: {e}",
            path.display()
        ))
    })?;
    let profile: LinuxSeccomp = serde_json::from_slice(&bytes).map_err(|e| {
        RuntimeError::other(format!(
            "decoding seccomp profile failed {:?}: {e}",
            path.display()
        ))
    })?;
    serde_json::to_value(profile).map_err(|e| RuntimeError::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(profile: &Value) -> Vec<Value> {
        profile["syscalls"].as_array().unwrap().clone()
    }

    fn allowed(profile: &Value, name: &str) -> bool {
        rules(profile).iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none()
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn the_default_profile_denies_by_default_and_grows_with_capabilities() {
        let plain = default_profile(&crate::capabilities::DEFAULT, Some((6, 1)));
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(allowed(&plain, "read") && allowed(&plain, "chroot"));
        assert!(allowed(&plain, "ptrace"));
        assert!(!allowed(&plain, "mount") && !allowed(&plain, "reboot"));
        let clone3 = rules(&plain)
            .into_iter()
            .find(|r| r["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);
        let admin = default_profile(&["CAP_SYS_ADMIN"], Some((4, 4)));
        assert!(allowed(&admin, "mount") && allowed(&admin, "clone3"));
        assert!(!allowed(&admin, "ptrace"), "ptrace needs kernel 4.8");
        assert!(!allowed(&admin, "chroot"));
        // It is a valid runtime-spec seccomp section.
        let parsed: LinuxSeccomp = serde_json::from_value(plain).unwrap();
        assert!(parsed.syscalls().as_ref().unwrap().len() > 5);
    }

    #[test]
    fn privileged_and_unconfined_processes_get_no_filter() {
        let caps = ["CAP_CHOWN"];
        assert_eq!(
            for_process(&SeccompProfile::RuntimeDefault, true, &caps).unwrap(),
            None
        );
        assert_eq!(
            for_process(&SeccompProfile::Unconfined, false, &caps).unwrap(),
            None
        );
        assert!(for_process(&SeccompProfile::RuntimeDefault, false, &caps)
            .unwrap()
            .is_some());
    }

    #[test]
    fn localhost_profiles_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let profile = for_process(&SeccompProfile::Localhost(good), false, &[])
            .unwrap()
            .unwrap();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(profile["syscalls"][0]["names"][0], "mkdir");

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#).unwrap();
        let err = for_process(&SeccompProfile::Localhost(bad), false, &[]).unwrap_err();
        assert!(
            err.message.starts_with("decoding seccomp profile failed"),
            "{err}"
        );
        let missing = dir.path().join("missing.json");
        let err = for_process(&SeccompProfile::Localhost(missing), false, &[]).unwrap_err();
        assert!(
            err.message.starts_with("cannot load seccomp profile"),
            "{err}"
        );
    }
}
