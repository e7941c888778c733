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

# poll_until TIMEOUT COMPONENT CMD...: poll CMD every 0.5 s until it succeeds
# (status 0). Status 1 when TIMEOUT seconds pass, 2 as soon as the component's
# process dies (no point waiting for a corpse). COMPONENT may be "" when there
# is no process to watch. Prints nothing: the caller says what failed.
# The component must still be alive when CMD succeeds: another process on its
# port (one whose PID file was lost) may answer while ours dies on the bind.
poll_until() {
  local timeout=$1 comp=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $comp ]] && ! proc_alive "$comp"; then
      return 2
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  if [[ -n $comp ]] && ! proc_alive "$comp"; then
    return 2
  fi
}

# wait_until DESC TIMEOUT COMPONENT CMD...: poll_until, and on failure exit
# with the component's log tail, so an error is never just "timed out".
wait_until() {
  local desc=$1 timeout=$2 comp=$3 rc=0
  shift 3
  poll_until "$timeout" "$comp" "$@" || rc=$?
  ((rc)) || return 0
  if ((rc == 2)); then
    log "error: $comp exited while waiting for $desc"
  else
    log "error: timed out after ${timeout}s waiting for $desc"
  fi
  [[ -n $comp ]] && tail_log "$LOGS/$comp.log"
  exit 1
}

# start_proc NAME BINARY ARGS...: start a long-running component inside the
# cluster's network namespace, detached from our session, logging to
# $LOGS/NAME.log. nsenter --net (not `ip netns exec`, which remounts /sys and
# gives the process a mount namespace of its own, hiding the kubelet's tmpfs
# mounts from containerd). Neither setsid (we are not a process-group leader,
# job control being off) nor nsenter (no PID namespace) forks, so $! is the
# component's own PID.
#
# Three files identify the process, so that a PID file that outlived its
# process (a SIGKILL, a reboot) is never taken for a live component, and a
# reused PID is never signalled:
#   NAME.pid    the PID
#   NAME.exe    the binary it runs
#   NAME.start  the boot ID and the process's start time (field 22 of
#               /proc/PID/stat, set at fork and kept across exec): a PID is
#               only ours while both are the same.
start_proc() {
  local name=$1 bin=$2 pid
  shift 2
  bin=$(readlink -f "$bin")
  printf -- '--- %s: started by e2e/cluster\n' "$(date -u +%FT%TZ)" >>"$LOGS/$name.log"
  setsid nsenter --net="$(netns_of "$name")" -- "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PIDS/$name.pid"
  printf '%s\n' "$bin" >"$PIDS/$name.exe"
  printf '%s\n' "$(proc_identity "$pid")" >"$PIDS/$name.start"
}

# proc_identity PID: "BOOT_ID STARTTIME" of a live PID (empty if it is gone).
proc_identity() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # The command name (field 2) is in parentheses and may hold blanks: skip
  # past its closing one; what follows starts at field 3.
  read -ra fields <<<"${stat##*) }"
  printf '%s %s' "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" "${fields[19]-}"
}

# pid_is PID BINARY [IDENTITY]: true if PID is alive (not a zombie) and runs
# BINARY (or still is the nsenter/setsid that is about to exec it), and, when
# IDENTITY (from NAME.start) is given, is the very process that was started.
# PID files written before NAME.start existed are checked by binary only.
pid_is() {
  local pid=$1 want=$2 identity=${3-} exe
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [[ $exe == "$want" || $exe == */nsenter || $exe == */setsid ]] || return 1
  [[ -z $identity || $(proc_identity "$pid") == "$identity" ]]
}

proc_pid() { cat "$PIDS/$1.pid" 2>/dev/null; }

# proc_alive NAME: the process NAME's PID files describe is alive.
proc_alive() {
  local name=$1
  [[ -f $PIDS/$name.pid && -f $PIDS/$name.exe ]] || return 1
  pid_is "$(proc_pid "$name")" "$(cat "$PIDS/$name.exe")" "$(cat "$PIDS/$name.start" 2>/dev/null)"
}

# signal_proc NAME SIGNAL TIMEOUT: send SIGNAL to component NAME (only if its
# PID files say it is alive) and wait up to TIMEOUT s for it to go; false if
# it is still there.
signal_proc() {
  local name=$1 sig=$2 timeout=$3 i
  proc_alive "$name" || return 0
  kill "-$sig" "$(proc_pid "$name")" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    proc_alive "$name" || return 0
    sleep 0.1
  done
  return 1
}

# stop_proc NAME [TIMEOUT]: stop a component we started, by its PID files
# only: SIGTERM, then SIGKILL after TIMEOUT s. Removes the PID files.
stop_proc() {
  local name=$1 timeout=${2:-10}
  if ! signal_proc "$name" TERM "$timeout"; then
    log "$name (pid $(proc_pid "$name")) still running ${timeout}s after SIGTERM: SIGKILL"
    signal_proc "$name" KILL 5 || log "warning: $name (pid $(proc_pid "$name")) survived SIGKILL"
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.exe" "$PIDS/$name.start"
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
