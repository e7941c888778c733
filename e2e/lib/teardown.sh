# shellcheck shell=bash
# Stopping the cluster and removing every trace of it. `down` runs this
# gracefully; `up` runs it forcibly before starting an empty cluster (a new
# one, `up --fresh`, or a state that cannot be reused), to clear what an
# earlier run left (stale PID files, live container processes and shims,
# mounts, netns, store, cgroups, changed sysctls). `simulate-reboot` uses the
# same pieces to lose only what a reboot loses. Everything is found through what we recorded
# (PID files) or through state only our containerd writes (its state dir,
# runc root, its socket path): never by process name.
#
# Expects the globals of e2e/cluster, lib/common.sh and lib/images.sh.

# Pod processes' cgroups: containerd's CRI puts a container without a cgroup
# parent (the kubelet's cgroupsPerQOS is off) at /k8s.io/<container id>.
CGROUP_NS=k8s.io

our_container_ids() {
  {
    ls "$CTR_STATE/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null || true
    ls "$RUNC_ROOT/k8s.io" 2>/dev/null || true
  } | sort -u
}

# Delete pods while the kubelet still runs, so it tears down their sandboxes
# and networks through the CRI. The scheduler and controller-manager go first,
# or controllers would recreate what we delete. Best effort, bounded.
drain_pods() {
  proc_alive kube-apiserver && { proc_alive kubelet || proc_alive kubelet-2; } && [[ -f $STATE/admin.token ]] && api_ready || return 0
  stop_proc kube-scheduler 10
  stop_proc kube-controller-manager 10
  kc delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    [[ -z $(kc get pods --all-namespaces -o name 2>/dev/null) ]] && return 0
    sleep 0.5
  done
  log "warning: pods still present after 20s; killing their containers"
}

# Kill and delete what is left in containerd, while it still answers; the
# shims exit once their tasks are deleted.
remove_containers() {
  local ids id
  ids=$(timeout 10 "$RBIN/ctr" --address "$CTR_SOCK" -n k8s.io tasks ls -q 2>/dev/null) || true
  for id in $ids; do
    timeout 10 "$RBIN/ctr" --address "$CTR_SOCK" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $ids; do
    timeout 10 "$RBIN/ctr" --address "$CTR_SOCK" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
  done
  ids=$(timeout 10 "$RBIN/ctr" --address "$CTR_SOCK" -n k8s.io containers ls -q 2>/dev/null) || true
  for id in $ids; do
    timeout 10 "$RBIN/ctr" --address "$CTR_SOCK" -n k8s.io containers rm "$id" >/dev/null 2>&1 || true
  done
}

# A shim of ours: containerd-shim-runc-v2 started with `-address $CTR_SOCK`.
is_our_shim() {
  local pid=$1 exe args
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${exe##*/} == containerd-shim-runc-v2* ]] || return 1
  args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  grep -Fxq -- "$CTR_SOCK" <<<"$args"
}

# Shims are daemonized by containerd and outlive it (and a killed containerd
# records no PID for them). Ours carry our socket path as their -address, which
# no other containerd's shim can have; the task bundles in our state name the
# shim sockets (/run/containerd/s/..., a path containerd 1.6 hard-codes).
kill_shims() {
  local p pid f sock
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    if is_our_shim "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for f in "$CTR_STATE"/io.containerd.runtime.v2.task/*/*/address; do
    [[ -f $f ]] || continue
    sock=$(cat "$f" 2>/dev/null) || continue
    sock=${sock#unix://}
    [[ $sock == /run/containerd/s/* ]] && rm -f "$sock"
  done
  return 0
}

# Container processes survive their shim (they are re-parented to init), and
# a session's kill may miss them: they live in cgroups of their own. Kill
# everything in the cgroups of our containers.
kill_containers() {
  local id i procs
  for id in $(our_container_ids); do
    for ((i = 0; i < 50; i++)); do
      procs=$(cat /sys/fs/cgroup/*/"$CGROUP_NS/$id"/cgroup.procs 2>/dev/null | sort -u)
      [[ -n $procs ]] || break
      # shellcheck disable=SC2086 # a list of PIDs
      kill -KILL $procs 2>/dev/null || true
      sleep 0.1
    done
    [[ -z ${procs-} ]] || log "warning: processes of container $id survive: $procs"
  done
}

# The CRI's pod network namespaces (bind mounts at /run/netns/cni-*). Only
# our containerd creates them on this machine.
remove_pod_netns() {
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
}

# rmdir only removes empty cgroups, so nothing running is touched.
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/"$CGROUP_NS"; do
    [[ -d $d ]] || continue
    find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
}

remove_netns() {
  local n
  for n in "${NODES[@]}"; do
    use_node "$n"
    [[ -e $NODE_NETNS_PATH ]] || continue
    ip -n "$NODE_NETNS" link del cni0 2>/dev/null || true
    ip netns del "$NODE_NETNS" 2>/dev/null || {
      umount "$NODE_NETNS_PATH" 2>/dev/null || umount -l "$NODE_NETNS_PATH" 2>/dev/null || true
      rm -f "$NODE_NETNS_PATH"
    }
  done
  use_node 1
}

# stop_node N MODE: stop node N's kubelet and containerd, and kill what they leave.
stop_node() {
  use_node "$1"
  stop_proc "$KUBELET" 15
  if [[ $2 == graceful ]] && proc_alive "$CONTAINERD"; then
    remove_containers
  fi
  stop_proc "$CONTAINERD" 10
  kill_shims
  kill_containers
  use_node 1
}

# Every node's kubelet root and pod log directory, and the state.
node_dirs() {
  local n
  for n in "${NODES[@]}"; do
    use_node "$n"
    printf '%s\n' "$KUBELET_ROOT"
  done
  use_node 1
}

restore_sysctls() {
  [[ -f $SYSCTL_SAVE ]] || return 0
  local k v
  while IFS='=' read -r k v; do
    [[ -n $k ]] || continue
    printf '%s\n' "$v" >"/proc/sys/${k//.//}" 2>/dev/null || log "warning: could not restore $k=$v"
  done <"$SYSCTL_SAVE"
  rm -f "$SYSCTL_SAVE"
}

# teardown graceful|force [keep-logs]
teardown() {
  local mode=$1 keep=${2-}
  [[ $mode == graceful ]] && drain_pods
  local n roots
  for ((n = ${#NODES[@]}; n >= 1; n--)); do stop_node "$n" "$mode"; done
  mapfile -t roots < <(node_dirs)
  stop_proc kube-scheduler 10
  stop_proc kube-controller-manager 10
  stop_proc kube-apiserver 15
  stop_proc etcd 15
  # Secret/projected tmpfs volumes and the kubelet's self bind mount; the
  # containers' overlay rootfs and sandbox shm under our containerd state.
  unmount_under "$KUBELET_ROOT" "$STATE"
  remove_pod_netns
  remove_cgroups
  remove_netns
  restore_sysctls
  # libcni's result cache (its dir is not configurable through the CRI).
  rm -f /var/lib/cni/results/shellcar-*
  # --one-file-system: never reach into something that is still mounted.
  rm -rf --one-file-system "$KUBELET_ROOT" || log "warning: could not remove all of $KUBELET_ROOT"
  if [[ -d $STATE ]]; then
    if [[ $keep == keep-logs ]]; then
      # Keep the previous run's logs for post-mortems: $STATE/logs.prev.
      find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs ! -name logs.prev \
        -exec rm -rf --one-file-system {} + || log "warning: could not remove all of $STATE"
      if [[ -d $LOGS ]]; then
        rm -rf "$STATE/logs.prev"
        mv "$LOGS" "$STATE/logs.prev"
      fi
    else
      rm -rf --one-file-system "$STATE" || log "warning: could not remove all of $STATE"
    fi
  fi
}

# What a reboot takes and what it leaves, for testing `up` over kept state:
# every process of the cluster (components, shims, containers) dies by
# SIGKILL, and every mount, pod network namespace and the cluster's network
# namespace goes; the state, the kubelet's directory, the PID files (stale
# now) and the saved sysctls stay.
simulate_reboot() {
  local i c roots
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    signal_proc "$c" KILL 5 || log "warning: $c (pid $(proc_pid "$c")) survived SIGKILL"
  done
  on_nodes kill_shims
  on_nodes kill_containers
  mapfile -t roots < <(node_dirs)
  unmount_under "${roots[@]}" "$STATE"
  remove_pod_netns
  remove_cgroups
  remove_netns
}
