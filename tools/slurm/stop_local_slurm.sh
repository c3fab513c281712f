#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by start_local_slurm.sh.
#
#   bash tools/slurm/stop_local_slurm.sh            # stop daemons, drop the /etc/slurm/slurm.conf
#                                                   # link, keep $SLURMLAB (state, logs)
#   bash tools/slurm/stop_local_slurm.sh --purge    # also delete $SLURMLAB
#
# Cancels the cluster's jobs, then stops slurmd, slurmctld and munged by the pid files under
# $SLURMLAB (a pid is only signalled if that process still has the expected name).
# Idempotent: with nothing running it just says so and exits 0.
set -uo pipefail

SLURMLAB="${SLURMLAB:-${TMPDIR:-/tmp}/archi-slurmlab}"
M="$SLURMLAB/munge"
S="$SLURMLAB/slurm"
CONF="$S/etc/slurm.conf"
SYS_CONF=/etc/slurm/slurm.conf
PURGE=0
[[ "${1:-}" == "--purge" ]] && PURGE=1

log() { echo "stop_local_slurm: $*"; }

alive_pid() { # pidfile name -> pid if alive with that name
    local pid
    [[ -r "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
    echo "$pid"
}

# stop several daemons at once (each takes ~2 s to exit after SIGTERM): pidfile:name ...
stop_all() {
    local item pf name pid i
    local -a pids=() names=() pfs=()
    for item in "$@"; do
        pf="${item%%:*}"
        name="${item##*:}"
        if pid="$(alive_pid "$pf" "$name")"; then
            kill -TERM "$pid" 2>/dev/null
            pids+=("$pid")
            names+=("$name")
        fi
        pfs+=("$pf")
    done
    for i in "${!pids[@]}"; do
        for _ in $(seq 1 150); do
            [[ -e "/proc/${pids[$i]}" ]] || break
            sleep 0.1
        done
        if [[ -e "/proc/${pids[$i]}" ]]; then
            kill -KILL "${pids[$i]}" 2>/dev/null
            sleep 0.3
            log "killed ${names[$i]} (pid ${pids[$i]}) after 15 s"
        else
            log "stopped ${names[$i]} (pid ${pids[$i]})"
        fi
    done
    for pf in "${pfs[@]}"; do rm -f "$pf"; done
}

stopped_any=0
for pf in "$S/run/slurmd.pid:slurmd" "$S/run/slurmctld.pid:slurmctld" "$M/run/munged.pid:munged"; do
    alive_pid "${pf%%:*}" "${pf##*:}" >/dev/null && stopped_any=1
done

if ((stopped_any)); then
    # cancel the jobs first, so that no slurmstepd / job process outlives slurmd
    if [[ -r "$CONF" ]] && alive_pid "$S/run/slurmctld.pid" slurmctld >/dev/null; then
        export SLURM_CONF="$CONF"
        jobs="$(timeout 10 squeue -h -t PD,R,S -o %i 2>/dev/null | tr '\n' ' ')"
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs >/dev/null 2>&1
            for _ in $(seq 1 40); do
                [[ -z "$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ]] && break
                sleep 0.5
            done
            log "cancelled the remaining jobs"
        fi
    fi
    stop_all "$S/run/slurmd.pid:slurmd" "$S/run/slurmctld.pid:slurmctld" "$M/run/munged.pid:munged"
else
    log "no daemon of $SLURMLAB is running"
fi

# Always drop our /etc/slurm/slurm.conf link: while it points at a stopped controller, every
# Snakemake start (the slurm executor plugin runs `scontrol show config`) waits ~9 s for it.
if [[ -L "$SYS_CONF" && "$(readlink "$SYS_CONF")" == "$CONF" ]]; then
    rm -f "$SYS_CONF"
fi

if ((PURGE)); then
    if [[ -d "$SLURMLAB" ]]; then
        rm -rf "$SLURMLAB"
        log "removed $SLURMLAB"
    fi
fi
exit 0
