"""A seccomp allow-list for candidates: what a Python and NumPy program needs, and nothing else.

Built once with libseccomp (through ``pyseccomp``) and exported as a BPF
program. Every backend installs it before any candidate code runs: the child
harness installs it itself (``prctl(PR_SET_SECCOMP)``, all backends), and
bubblewrap also installs it right before it execs the interpreter
(``bwrap --seccomp FD``).

The filter is an allow-list. A system call not named in ``ALLOWED_SYSCALLS``
answers ``ENOSYS``, as if this kernel did not have it: the C library falls
back where it can (``clone3`` → ``clone``), and a call added to a future
kernel is refused until someone reviews it. The calls in ``DENIED_SYSCALLS``
answer ``EPERM``, so a candidate that tries one gets the usual "operation not
permitted". A few allowed calls are allowed only with safe arguments:

* ``socket`` for ``AF_UNIX``, ``AF_INET`` and ``AF_INET6`` only, which fail
  cleanly in the sandbox's empty network namespace (bwrap, docker); every other
  family (vsock, netlink, packet, bluetooth, …) answers ``EAFNOSUPPORT``, on
  every backend. vsock in particular is not isolated by a network namespace and
  reaches the hypervisor on a VM host. ``socketpair`` is allowed for
  ``AF_UNIX`` only (multiprocessing uses it).
* ``clone`` without any namespace flag (threads and ``fork`` need it);
  ``clone3`` hides its flags in memory, so it answers ``ENOSYS`` and the C
  library falls back to ``clone``, where the flags show.
* ``personality`` only to query or to set the default Linux persona (what
  glibc and Python do); changing the execution domain, e.g. to turn off
  address-space randomisation, is refused.

``sched_setaffinity`` is not allowed: where no cpu cgroup exists, a run's CPU
share is a pin to its cores (see ``confine``), which a candidate must not undo.

The filter is defence in depth behind the namespaces, the unprivileged uid and
the dropped capabilities, not the only wall; the README lists what is allowed
and why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from functools import cache
from typing import Any

from evolve.errors import SandboxError

__all__ = ["ALLOWED_SOCKET_FAMILIES", "ALLOWED_SYSCALLS", "DENIED_SYSCALLS", "bpf_fd", "bpf_program"]

#: Allowed, grouped by what a candidate needs them for. Names this
#: architecture does not have are skipped.
ALLOWED_SYSCALLS = (
    # files and descriptors (the work directory, /tmp, /dev/shm, the read-only /usr)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "_llseek",
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "umask",
    "truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "fadvise64", "flock", "fcntl",
    "utime", "utimes", "utimensat", "futimesat", "getxattr", "lgetxattr", "fgetxattr",
    "listxattr", "llistxattr", "flistxattr",
    "dup", "dup2", "dup3", "pipe", "pipe2", "ioctl", "sendfile", "splice", "tee", "copy_file_range",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    # memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync", "mincore", "mlock", "mlock2", "munlock",
    "membarrier", "get_mempolicy",
    # processes, threads and their identity (no capability: a uid can only stay what it is)
    "clone", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal",
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
    "setsid", "setpgid", "getpgid", "getpgrp", "getsid", "capget",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl", "prctl", "seccomp",
    "futex", "futex_waitv", "sched_yield", "sched_getaffinity", "sched_getparam",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min", "sched_getattr",
    "sched_rr_get_interval", "getpriority", "setpriority", "getcpu",
    "getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname", "getrandom",
    # signals, time and waiting
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "restart_syscall",
    "alarm", "pause", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "eventfd", "eventfd2",
    "poll", "ppoll", "select", "_newselect", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2",
    # System V semaphores inside the sandbox's own IPC namespace (a few bytes each, capped by the kernel)
    "semget", "semop", "semtimedop", "semctl",
    # sockets of the allowed families (socket and socketpair themselves are checked by family below)
    "connect", "accept", "accept4", "bind", "listen", "getsockname", "getpeername", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt",
)

#: Denied with EPERM: debugging other processes, namespaces and mounts, kernel
#: modules, keyrings, clocks, raw I/O, NUMA placement, and interfaces with a
#: history of exploits. (Everything not allowed is refused anyway; these are
#: named so that a refusal reads as one.)
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "syslog", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "modify_ldt", "memfd_secret", "vhangup", "iopl", "ioperm", "mknod", "mknodat",
    # memory that no file-system size bounds: without a memory cgroup a candidate held 1.4 GB of memfds
    # and 512 MB of System V segments under a 512 MB limit (POSIX shared memory lives in the sized /dev/shm)
    "memfd_create", "shmget", "shmat", "shmdt", "shmctl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "mbind", "set_mempolicy", "migrate_pages", "move_pages", "lookup_dcookie", "fanotify_init",
    "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vm86", "vm86old",
)

#: The only socket families a candidate may create: they fail cleanly where there is no network.
ALLOWED_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
_MAX_FAMILY = 64  # above every AF_* the kernel defines (AF_MAX is 46)

# personality(2) values that leave the execution domain as it is: 0 (PER_LINUX),
# 8 (PER_LINUX32 on a 64-bit kernel), UNAME26 variants, and 0xffffffff (query).
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# clone(2) flags that create namespaces; a clone with none of them is a thread or a fork.
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def _add(filt: Any, action: Any, name: str, *args: Any) -> None:
    """Add one rule; a system call this architecture or libseccomp does not know is skipped.

    Skipping fails closed: what is not allowed is refused by the default action.
    """
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        filt.add_rule(action, name, *args)


@cache
def bpf_program() -> bytes:
    """The compiled filter for this machine's architecture.

    Raises:
        SandboxError: when libseccomp or pyseccomp is missing, or the filter does not compile.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise SandboxError(f"seccomp filters need libseccomp and the pyseccomp package: {exc}") from exc
    allow, deny = seccomp.ALLOW, seccomp.ERRNO(errno.EPERM)
    no_family = seccomp.ERRNO(errno.EAFNOSUPPORT)
    filt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.ENOSYS))
    for name in ALLOWED_SYSCALLS:
        if name != "clone":
            _add(filt, allow, name)
    for name in DENIED_SYSCALLS:
        _add(filt, deny, name)
    namespace_mask = 0
    for flag in _CLONE_NAMESPACE_FLAGS:
        namespace_mask |= flag
        _add(filt, deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    _add(filt, allow, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, namespace_mask, 0))
    _add(filt, seccomp.ERRNO(errno.ENOSYS), "clone3")
    for value in _PERSONALITIES:
        _add(filt, allow, "personality", seccomp.Arg(0, seccomp.EQ, value))
    for family in range(_MAX_FAMILY):
        if family in ALLOWED_SOCKET_FAMILIES:
            _add(filt, allow, "socket", seccomp.Arg(0, seccomp.EQ, family))
        else:
            _add(filt, no_family, "socket", seccomp.Arg(0, seccomp.EQ, family))
        _add(filt, allow if family == socket.AF_UNIX else no_family, "socketpair", seccomp.Arg(0, seccomp.EQ, family))
    for name in ("socket", "socketpair"):
        _add(filt, no_family, name, seccomp.Arg(0, seccomp.GE, _MAX_FAMILY))
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb") as sink:
            filt.export_bpf(sink)
        chunks = []
        while chunk := os.read(read_fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SandboxError("libseccomp exported an empty or malformed BPF program")
    return program


def bpf_fd() -> int:
    """A fresh readable fd holding the BPF program, positioned at its start. The caller closes it."""
    fd = os.memfd_create("evolve-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, bpf_program())
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
