"""A seccomp deny-list for candidates: no tracing, no namespaces, no mounts, no kernel knobs.

Built once with libseccomp (through ``pyseccomp``) and exported as a BPF
program that bubblewrap installs right before it execs the candidate's
interpreter (``bwrap --seccomp FD``). Everything else is allowed: the filter
is defence in depth behind the namespaces, the unprivileged uid and the
dropped capabilities, not the only wall.
"""

from __future__ import annotations

import errno
import os
from functools import cache

from evolve.errors import SandboxError

__all__ = ["DENIED_SYSCALLS", "bpf_fd", "bpf_program"]

#: Denied with EPERM: debugging other processes, namespaces and mounts,
#: kernel modules and keyrings, and interfaces with a history of exploits.
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "syslog", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)

# clone(2) flags that create namespaces; clone3 hides its flags in memory, so
# it answers ENOSYS and the C library falls back to clone, where they show.
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


@cache
def bpf_program() -> bytes:
    """The compiled filter for this machine's architecture.

    Raises:
        SandboxError: when libseccomp or pyseccomp is missing.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise SandboxError(f"seccomp filters need libseccomp and the pyseccomp package: {exc}") from exc
    deny = seccomp.ERRNO(errno.EPERM)
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            continue  # a syscall this architecture or libseccomp does not know
    for flag in _CLONE_NAMESPACE_FLAGS:
        filt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    filt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
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
