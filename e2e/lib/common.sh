# shellcheck shell=bash
# Helpers shared by e2e/cluster: logging, phase timing, bounded waits, and
# starting/stopping the processes we own through PID files.
#
# Expects the caller to have set: NETNS_PATH, LOGS, PIDS.

log() { printf '%s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# phase NAME FUNC [ARGS...]: run FUNC and print how long it took, so the cold,
# warm and recovery paths can be compared from the output alone.
phase() {
  local name=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "==> phase %s: %.1fs\n", n, b - a }' >&2
}

# tail_log FILE: show the end of a log after a failure, so an error is never
# just "timed out".
tail_log() {
  local f=$1
  [[ -n $f && -s $f ]] || return 0
  log "--- last 40 lines of $f:"
  tail -n 40 "$f" >&2
  log "---"
}

# wait_until DESC TIMEOUT COMPONENT CMD...: poll CMD until it succeeds. Fails
# with the component's log tail when TIMEOUT seconds pass or when the
# component's process dies (no point waiting for a corpse). COMPONENT may be ""
# when there is no process to watch.
wait_until() {
  local desc=$1 timeout=$2 comp=$3
  shift 3
  local deadline=$((SECONDS + timeout)) logf=""
  [[ -n $comp ]] && logf="$LOGS/$comp.log"
  until "$@" >/dev/null 2>&1; do
    if [[ -n $comp ]] && ! proc_alive "$comp"; then
      log "error: $comp exited while waiting for $desc"
      tail_log "$logf"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "error: timed out after ${timeout}s waiting for $desc"
      tail_log "$logf"
      exit 1
    fi
    sleep 0.5
  done
}

# start_proc NAME BINARY ARGS...: start a long-running component inside the
# cluster's network namespace, detached from our session, logging to
# $LOGS/NAME.log. nsenter --net (not `ip netns exec`, which remounts /sys and
# gives the process a mount namespace of its own, hiding the kubelet's tmpfs
# mounts from containerd). Neither setsid (we are not a process-group leader,
# job control being off) nor nsenter (no PID namespace) forks, so $! is the
# component's own PID.
start_proc() {
  local name=$1 bin=$2
  shift 2
  bin=$(readlink -f "$bin")
  setsid nsenter --net="$NETNS_PATH" -- "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  printf '%s\n' "$!" >"$PIDS/$name.pid"
  # Remember which binary the PID belongs to: after a crash or reboot the PID
  # may have been reused by something that is not ours.
  printf '%s\n' "$bin" >"$PIDS/$name.exe"
}

# pid_is PID BINARY: true if PID is alive and runs BINARY (or still is the
# nsenter/setsid that is about to exec it).
pid_is() {
  local pid=$1 want=$2 exe
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [[ $exe == "$want" || $exe == */nsenter || $exe == */setsid ]]
}

proc_pid() { cat "$PIDS/$1.pid" 2>/dev/null; }

proc_alive() {
  local name=$1
  [[ -f $PIDS/$name.pid && -f $PIDS/$name.exe ]] || return 1
  pid_is "$(proc_pid "$name")" "$(cat "$PIDS/$name.exe")"
}

# kill_pid_wait PID BINARY TIMEOUT: SIGTERM, then SIGKILL after TIMEOUT s.
kill_pid_wait() {
  local pid=$1 want=$2 timeout=$3 i
  pid_is "$pid" "$want" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    pid_is "$pid" "$want" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_is "$pid" "$want" || return 0
    sleep 0.1
  done
  log "warning: PID $pid ($want) survived SIGKILL"
}

# stop_proc NAME [TIMEOUT]: stop a component we started, by its PID file only.
stop_proc() {
  local name=$1 timeout=${2:-10}
  if [[ -f $PIDS/$name.pid && -f $PIDS/$name.exe ]]; then
    kill_pid_wait "$(proc_pid "$name")" "$(cat "$PIDS/$name.exe")" "$timeout"
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.exe"
}

# mounts_under DIR...: mount points at or below each DIR, deepest first (so
# nested mounts are released before their parents). /proc/self/mountinfo
# escapes blanks as \040; our paths have none.
mounts_under() {
  local d
  for d in "$@"; do
    d=${d%/}
    awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
  done | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2- | uniq
}

# unmount_under DIR...: release every mount below DIR. Several passes, since a
# path can carry stacked mounts (the kubelet bind-mounts its root onto itself).
unmount_under() {
  local m i
  for ((i = 0; i < 5; i++)); do
    [[ -n $(mounts_under "$@") ]] || return 0
    while read -r m; do
      [[ -n $m ]] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(mounts_under "$@")
  done
  [[ -z $(mounts_under "$@") ]] || log "warning: still mounted: $(mounts_under "$@" | tr '\n' ' ')"
}
