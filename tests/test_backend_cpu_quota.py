"""fusednn.cpu_quota: the cores' worth of CPU time a control group allows, read from stand-in
/proc/self/mountinfo, /proc/self/cgroup and cgroup files (cgroup v1 and v2, nested groups, a
container's own group as the mount's root), and None wherever nothing limits or nothing can
be read."""
from __future__ import annotations

import pytest

from fusednn import cpu_quota

V2_MOUNT = "41 31 0:38 {root} {mount} rw,relatime - cgroup2 cgroup2 rw\n"
V1_MOUNTS = ("31 23 0:28 / {base} rw,relatime - tmpfs tmpfs rw,mode=755\n"
             "32 31 0:29 {root} {base}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
             "35 31 0:32 / {base}/memory rw,relatime - cgroup cgroup rw,memory\n")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def v2(tmp_path, groups: dict, own="/user.slice/job", root="/"):
    """A cgroup v2 tree under tmp_path/cg: groups maps a path to its cpu.max text."""
    mount = tmp_path / "cg"
    (mount / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (mount / "cgroup.controllers").write_text("cpu memory\n")  # the root has no cpu.max
    for group, text in groups.items():
        write(mount / group.lstrip("/") / "cpu.max", text)
    mountinfo = write(tmp_path / "mountinfo", V2_MOUNT.format(root=root, mount=mount))
    cgroup = write(tmp_path / "cgroup", f"0::{own}\n")
    return cpu_quota.cores_allowed(str(mountinfo), str(cgroup))




@pytest.mark.parametrize("groups, expected", [
    ({"/user.slice": "max 100000\n", "/user.slice/job": "250000 100000\n"}, 2.5),
    ({"/user.slice": "150000 100000\n", "/user.slice/job": "max 100000\n"}, 1.5),  # a parent
    ({"/user.slice": "300000 100000\n", "/user.slice/job": "50000 50000\n"}, 1.0),  # smallest
    ({"/user.slice": "max 100000\n", "/user.slice/job": "max 100000\n"}, None),
    ({"/user.slice/job": "max\n"}, None),
    ({"/user.slice/job": "oops 100000\n"}, None),
])
def test_cgroup_v2_limits_of_the_group_and_those_above_it(tmp_path, groups, expected):
    assert v2(tmp_path, groups) == expected


def test_cgroup_v2_in_a_container_whose_group_is_the_mount_s_root(tmp_path):
    """Without a cgroup namespace a container's /proc/self/cgroup names the host's path while
    its mount shows that group as the root; with one it names "/"."""
    mount = tmp_path / "cg"
    write(mount / "cpu.max", "200000 100000\n")
    mountinfo = write(tmp_path / "mountinfo",
                      V2_MOUNT.format(root="/docker/abc", mount=mount))
    for own in ("/docker/abc", "/"):
        cgroup = write(tmp_path / "cgroup", f"0::{own}\n")
        assert cpu_quota.cores_allowed(str(mountinfo), str(cgroup)) == 2.0


def test_cgroup_v1_cfs_quota_with_combined_controllers(tmp_path):
    base = tmp_path / "fs"
    cpu = base / "cpu,cpuacct"
    write(cpu / "cpu.cfs_quota_us", "-1\n")  # the hierarchy's root
    write(cpu / "cpu.cfs_period_us", "100000\n")
    write(cpu / "slurm" / "cpu.cfs_quota_us", "400000\n")
    write(cpu / "slurm" / "cpu.cfs_period_us", "100000\n")
    write(cpu / "slurm" / "job7" / "cpu.cfs_quota_us", "-1\n")
    write(cpu / "slurm" / "job7" / "cpu.cfs_period_us", "100000\n")
    mountinfo = write(tmp_path / "mountinfo", V1_MOUNTS.format(root="/", base=base))
    cgroup = write(tmp_path / "cgroup", "5:memory:/slurm/job7\n3:cpu,cpuacct:/slurm/job7\n")
    assert cpu_quota.cores_allowed(str(mountinfo), str(cgroup)) == 4.0
    write(cpu / "slurm" / "job7" / "cpu.cfs_quota_us", "150000\n")
    assert cpu_quota.cores_allowed(str(mountinfo), str(cgroup)) == 1.5
    cgroup = write(tmp_path / "cgroup", "3:cpu,cpuacct:/\n")  # the root: no limit
    assert cpu_quota.cores_allowed(str(mountinfo), str(cgroup)) is None


def test_nothing_readable_means_no_limit(tmp_path):
    missing = str(tmp_path / "missing")
    assert cpu_quota.cores_allowed(missing, missing) is None
    mountinfo = write(tmp_path / "mountinfo", "garbage\n\n1 2 3 - cgroup2\n")
    cgroup = write(tmp_path / "cgroup", "0::/gone\n")
    assert cpu_quota.cores_allowed(str(mountinfo), str(cgroup)) is None
    # A group listed but whose files are gone (the process moved): no limit, no error.
    assert v2(tmp_path, {}, own="/moved") is None


def test_this_machine_reads_without_error():
    """Whatever limits the machine running the tests: None or a positive number of cores."""
    allowed = cpu_quota.cores_allowed()
    assert allowed is None or allowed > 0
