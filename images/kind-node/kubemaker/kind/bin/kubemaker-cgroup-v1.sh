#!/bin/sh
# kubelet.service's ExecStartPre (20-kubemaker-cgroup-v1.conf): on cgroup v1, the
# kubelet and kubelet.slice cgroups in every hierarchy that lacks them. A hierarchy
# that cannot take them (a read-only view of a co-mounted one, e.g. cpu,cpuacct next
# to cpu and cpuacct) is left alone: the kubelet looks at the writable ones.
[ -f /sys/fs/cgroup/cgroup.controllers ] && exit 0
for dir in /sys/fs/cgroup/*; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    [ "$(basename "$dir")" = unified ] && continue
    for cgroup in kubelet kubelet.slice; do
        [ -d "$dir/$cgroup" ] || mkdir "$dir/$cgroup" 2>/dev/null || true
    done
done
exit 0
