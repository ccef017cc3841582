"""The OS sandbox a sealed run's child process lives in: Linux user, mount, network and PID namespaces.

The parent describes what the child may see as a `Layout` (read-only binds of
the system libraries, the Python installation and the packages on the import
path, the run's own folder read-write, empty file systems over whatever must
stay hidden) and starts the child with `command(layout_file)`: util-linux
`unshare --user --map-root-user --net --mount --pid --fork --kill-child` runs
this file as a script (standard library only), which builds the child's file
system on a fresh tmpfs, enters it with pivot_root (the machine's own root is
then unreachable), mounts a /proc of the new PID namespace only, drops every
capability (`setpriv`) and executes the child.  The child then has

- no network: a network namespace with a loopback device that is down;
- no view of anything not bound: not the data root, the result store, the
  image cache or the home folder, whatever their paths;
- no way to change what is bound (read-only mounts it has no capability to
  remount) and no process of the machine in sight (its PID namespace);
- no way to outlive its run: when the child (PID 1 of its namespace) exits or
  is killed, the kernel kills every process left in the namespace, threads
  and daemons included, and `unshare` kills the child when it is killed.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

UNSHARE = ("unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child")
SETPRIV = ("/usr/bin/setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--")
# What of the machine's root a Python process needs: libraries, the dynamic linker's configuration, time zones.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
)
SYSFS_CPU = ("/sys/devices/system/cpu", "/sys/devices/system/node")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
SCRATCH_MB = 512  # the child's /tmp and /dev/shm

# linux/mount.h, linux/sched.h, asm/unistd_64.h
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# statvfs flags a bind mount inherits and may not drop in a user namespace (the kernel locks them).
LOCKED_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


class SandboxError(RuntimeError):
    """The sandbox could not be built (the message names the step and the path)."""


@dataclass
class Layout:
    """The child's file system and process: built inside the namespaces by `enter`.

    binds: (machine path, path in the sandbox, writable); symlinks: (link target, path); masks: paths covered by an
    empty read-only file system (hidden parts of a bound folder); scratch: writable private file systems.
    """

    root: str  # an empty folder of the machine on which the child's root file system is mounted
    argv: list[str]
    env: dict[str, str]
    workdir: str = "/"
    binds: list[tuple[str, str, bool]] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    file_size_limit: int = 4 << 30  # bytes of any one file the child writes

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def command(layout_file: Path) -> list[str]:
    """The command that runs the child of `layout_file` inside its sandbox (the parent starts it): `unshare`
    dies with the process that started it (and then kills the child), whatever killed that process."""
    return [
        SETPRIV[0],
        "--pdeathsig",
        "KILL",
        "--",
        *UNSHARE,
        "--",
        sys.executable,
        "-I",
        "-S",
        __file__,
        str(layout_file),
    ]


def system_layout(root: Path, argv: list[str], env: dict[str, str], workdir: str) -> Layout:
    """A layout with the system's libraries, devices, /tmp and /dev/shm; callers add the rest."""
    layout = Layout(str(root), argv, env, workdir, scratch=["/tmp", "/dev/shm"])
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            layout.symlinks.append((os.readlink(path), path))
        elif os.path.isdir(path):
            layout.binds.append((path, path, False))
    layout.binds += [(p, p, False) for p in SYSTEM_FILES if os.path.exists(p)]
    # The CPU's topology and features: torch picks its kernels from them (and would compute otherwise without).
    layout.binds += [(p, p, False) for p in SYSFS_CPU if os.path.isdir(p)]
    layout.devices = [p for p in DEVICES if os.path.exists(p)]
    return layout


def covered(path: str, roots: list[str]) -> bool:
    """Whether `path` lies inside (or is) one of `roots`."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def bind_folders(layout: Layout, folders: list[str]) -> None:
    """Read-only binds of `folders` at their own paths, skipping those inside a folder already bound."""
    bound = [target for _, target, _ in layout.binds]
    for folder in sorted(set(folders), key=len):
        if os.path.isdir(folder) and not covered(folder, bound):
            layout.binds.append((folder, folder, False))
            bound.append(folder)


def hide(layout: Layout, paths: list[str]) -> None:
    """Cover every folder of `paths` that lies inside a bound folder with an empty file system."""
    bound = [target for _, target, _ in layout.binds]
    for path in paths:
        if os.path.isdir(path) and covered(path, bound) and path not in layout.masks:
            layout.masks.append(path)


# ---------------------------------------------------------------- inside the namespaces (standard library only)

_libc = ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)} (errno {err})")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call(
        _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
        f"mount {source or fstype} on {target}",
    )


def locked_flags(path: str) -> int:
    """The flags of the mount holding `path` that a remount inside a user namespace must keep."""
    found = os.statvfs(path).f_flag
    return sum(ms for st, ms in LOCKED_FLAGS if found & st)


def mountpoint(path: str, is_dir: bool) -> None:
    """An empty folder or file at `path` of the new root, to mount on."""
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            open(path, "w").close()


def bind(source: str, target: str, writable: bool, nodev: bool = True) -> None:
    """Bind `source` at `target` (read-only unless `writable`), without set-uid programs or devices."""
    mountpoint(target, os.path.isdir(source))
    mount(source, target, None, MS_BIND)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (MS_NODEV if nodev else 0) | (0 if writable else MS_RDONLY)
    mount(None, target, None, flags | locked_flags(source))


def tmpfs(target: str, writable: bool, size_mb: int) -> None:
    mountpoint(target, True)
    flags = MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
    mount("tmpfs", target, "tmpfs", flags, f"size={size_mb}m,mode=1777" if writable else "size=4k,mode=755")


def build(layout: Layout) -> None:
    """The child's file system on a fresh tmpfs at `layout.root`, entered with pivot_root.

    Mounts go in order of their paths, so a folder is mounted before anything inside it (a bind inside /tmp
    lands on the private /tmp, a mask on the folder it hides a part of).
    """
    root = layout.root.rstrip("/")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here propagates back to the machine
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    steps = [
        (target, lambda s=source, t=target, w=writable: bind(s, root + t, w))
        for source, target, writable in layout.binds
    ]
    steps += [(path, lambda p=path: tmpfs(root + p, False, 0)) for path in layout.masks]
    steps += [(path, lambda p=path: tmpfs(root + p, True, SCRATCH_MB)) for path in layout.scratch]
    steps += [("/dev", lambda: mount("tmpfs", mkdir(root + "/dev"), "tmpfs", MS_NOSUID, "size=1m,mode=755"))]
    steps += [(device, lambda d=device: bind(d, root + d, True, nodev=False)) for device in layout.devices]
    for _, step in sorted(steps, key=lambda s: s[0]):
        step()
    for link, path in layout.symlinks:
        os.symlink(link, root + path)
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{fd}", f"{root}/dev/{name}")
    os.symlink("/proc/self/fd", f"{root}/dev/fd")
    mount("proc", mkdir(root + "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's only
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise SandboxError(f"pivot_root: no system call number known for {platform.machine()}")
    os.chdir(root)
    _call(_libc.syscall(number, b".", b"."), "pivot_root")
    _call(_libc.umount2(b".", MNT_DETACH), "detaching the machine's root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def enter(layout: Layout) -> None:
    """Build the file system, limit file sizes, drop every capability and become the child (never returns)."""
    build(layout)
    resource.setrlimit(resource.RLIMIT_FSIZE, (layout.file_size_limit, layout.file_size_limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past the limit is an error (EFBIG), not a crash
    os.chdir(layout.workdir)
    os.execve(SETPRIV[0], [*SETPRIV, *layout.argv], layout.env)


def main(argv: list[str]) -> int:
    layout = Layout(**json.loads(Path(argv[1]).read_text()))
    try:
        enter(layout)
    except (SandboxError, OSError) as exc:
        print(f"fairbench sandbox: {exc}", file=sys.stderr)
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
