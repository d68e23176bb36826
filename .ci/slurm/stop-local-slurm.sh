#!/usr/bin/env bash
# stop-local-slurm.sh - stop exactly the daemons start-local-slurm.sh started.
# (jobpool's copy; `.ci/run` calls it from an EXIT trap.)
#
# Reads the pid records in $LOCAL_SLURM_RUN_DIR (default /run/local-slurm),
# checks each pid still belongs to the expected program (/proc/PID/comm), sends
# SIGTERM, waits, and SIGKILLs only if it does not exit. Never kills by name.
# Before stopping slurmctld it cancels the jobs still queued/running on this
# private cluster so that no job processes are left behind.
#
#   LOCAL_SLURM_KEEP_MUNGE=1  leave munged running (used on config restarts)
#   LOCAL_SLURM_KEEP_DB=1     leave slurmdbd and mariadbd running (used on config restarts)
#   LOCAL_SLURM_STOP_WAIT     seconds to wait per daemon before SIGKILL (default 15)
set -uo pipefail

RUN_DIR=${LOCAL_SLURM_RUN_DIR:-/run/local-slurm}
STOP_WAIT=${LOCAL_SLURM_STOP_WAIT:-15}

log() { printf '[stop-local-slurm] %s\n' "$*" >&2; }

alive() {
  local pid=$1 name=$2
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  # a zombie (exited, not yet reaped) counts as gone
  [ "$(sed -e 's/^.*) //' -e 's/ .*//' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}
read_pid() { if [ -r "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# Cancel leftover jobs while slurmctld (ours) is still up.
ctld=$(read_pid "$RUN_DIR/slurmctld.pid")
if [ -n "$ctld" ] && alive "$ctld" slurmctld; then
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs still in the queue: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 40); do
      [ -z "$(squeue -h -o '%A' 2>/dev/null)" ] && break
      sleep 0.5
    done
    left=$(squeue -h -o '%A %T' 2>/dev/null | tr '\n' ';')
    [ -n "$left" ] && log "still in the queue after 20s: $left"
  fi
fi

# The daemons' own pid files. slurmctld/slurmdbd drop root before exiting and
# cannot remove theirs from /run; a stale /run/slurmctld.pid makes the Debian
# package's prerm call scancel and fail, so 'apt-get remove' breaks. Remove a
# pid file after its daemon has stopped if it still names that pid.
declare -A OWN_PIDFILE=(
  [slurmd]=/run/slurmd.pid [slurmctld]=/run/slurmctld.pid [slurmdbd]=/run/slurmdbd.pid
  [mariadbd]=/run/mysqld/mysqld.pid [munged]=/run/munge/munged.pid
)

stop_one() { # name
  local name=$1 rec="$RUN_DIR/$1.pid" pid n
  [ -f "$rec" ] || return 0   # not started by start-local-slurm.sh: leave it alone
  pid=$(read_pid "$rec")
  if [ -z "$pid" ] || ! alive "$pid" "$name"; then
    log "$name: recorded pid '${pid}' is no longer $name; removing stale record"
    rm -f "$rec"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  n=$(( STOP_WAIT * 10 ))
  while [ "$n" -gt 0 ] && alive "$pid" "$name"; do sleep 0.1; n=$((n - 1)); done
  if alive "$pid" "$name"; then
    log "$name (pid $pid) ignored SIGTERM for ${STOP_WAIT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  if alive "$pid" "$name"; then
    log "$name (pid $pid) is STILL running"
    return 1
  fi
  rm -f "$rec"
  local own=${OWN_PIDFILE[$name]:-}
  if [ -n "$own" ] && [ "$(read_pid "$own")" = "$pid" ]; then rm -f "$own"; fi
  log "stopped $name (pid $pid)"
}

rc=0
stop_one slurmd || rc=1
stop_one slurmctld || rc=1
if [ "${LOCAL_SLURM_KEEP_DB:-0}" != 1 ]; then
  stop_one slurmdbd || rc=1
  stop_one mariadbd || rc=1
fi
if [ "${LOCAL_SLURM_KEEP_MUNGE:-0}" != 1 ]; then
  stop_one munged || rc=1
fi
exit $rc
