"""The CPU time a Linux control group allows this process, in cores: what a container run
with `docker run --cpus=2`, a Kubernetes CPU limit or a Slurm/systemd CPUQuota gives it.

Why: OpenMP (and so fd.get_num_threads()) counts the CPUs the process may be scheduled on,
which in a container are all of the host's; with a quota of 2 cores on a 64-core host,
64 threads spend the quota within the first milliseconds of each period (spinning at
barriers included) and are then stopped until the next. fusednn.shared_cores caps the
kernels' threads at the quota rounded up, as Java and .NET do for their thread counts.

Read from /proc/self/cgroup and /proc/self/mountinfo: cgroup v2's cpu.max ("max" or
"quota period") or cgroup v1's cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us, in the
process's own group and every group above it up to the mounted root (a parent's limit
binds its children); the smallest of them. None where nothing limits the process or the
files cannot be read (other systems).
"""
from __future__ import annotations

import os

_MOUNTINFO = "/proc/self/mountinfo"
_CGROUP = "/proc/self/cgroup"
# The file that holds a group's quota, by cgroup version (v1 keeps the period apart).
_QUOTA_FILE = {1: "cpu.cfs_quota_us", 2: "cpu.max"}


def cores_allowed(mountinfo: str = _MOUNTINFO, cgroup: str = _CGROUP):
    """The cores' worth of CPU time per second the control groups allow (2.5 for a quota
    of 250 ms every 100 ms), or None without a limit."""
    limits = [limit for directory, version in _cpu_group_directories(mountinfo, cgroup)
              for limit in _limits_up_to_root(directory, version)]
    return min(limits) if limits else None


def _cpu_group_directories(mountinfo: str, cgroup: str) -> list:
    """(directory of this process's group, 1 or 2) for each mounted hierarchy with the cpu
    controller."""
    try:
        with open(cgroup) as f:
            groups = [line.rstrip("\n").split(":", 2) for line in f]
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return []
    found = []
    for fields in mounts:
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash + 3 >= len(fields) or dash < 5:
            continue
        root, mount_point, fs_type = fields[3], fields[4], fields[dash + 1]
        options = fields[dash + 3].split(",")
        if fs_type == "cgroup2":
            paths = [g[2] for g in groups if len(g) == 3 and g[0] == "0" and g[1] == ""]
            version = 2
        elif fs_type == "cgroup" and "cpu" in options:
            paths = [g[2] for g in groups if len(g) == 3 and "cpu" in g[1].split(",")]
            version = 1
        else:
            continue
        for path in paths:
            found.append((_directory(mount_point, root, path), version))
    return found


def _directory(mount_point: str, root: str, path: str) -> str:
    """The directory of group `path` under a mount of hierarchy directory `root` (a
    container sees its own group as the mount's root)."""
    if root != "/" and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root):]
    return os.path.join(mount_point, path.lstrip("/"))


def _limits_up_to_root(directory: str, version: int) -> list:
    """The limits, in cores, of `directory`'s group and of the groups above it that exist."""
    limits = []
    while True:
        limit = _limit(directory, version)
        if limit is not None:
            limits.append(limit)
        parent = os.path.dirname(directory)
        if parent == directory or not os.path.exists(os.path.join(parent, _QUOTA_FILE[version])):
            return limits
        directory = parent


def _limit(directory: str, version: int):
    try:
        with open(os.path.join(directory, _QUOTA_FILE[version])) as f:
            text = f.read()
        if version == 2:
            quota, period = (text.split() + ["100000"])[:2]
            if quota == "max":
                return None
        else:
            quota = text.strip()
            with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
                period = f.read().strip()
        quota, period = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


__all__ = ["cores_allowed"]
