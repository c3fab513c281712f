#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine, for integration tests and CI.
#
#   bash tools/slurm/start_local_slurm.sh          # idempotent; exits 0 when the cluster is up
#   source "$SLURMLAB/env.sh"                       # SLURMLAB, SLURM_CONF, ... for callers
#   bash tools/slurm/stop_local_slurm.sh            # stop the daemons again
#
# What it does (Debian 12, run as root, no systemd needed):
#   * installs slurmctld slurmd slurm-client munge with apt-get if any binary is missing;
#   * keeps all config, state, logs and pid files under $SLURMLAB
#     (default: ${TMPDIR:-/tmp}/archi-slurmlab);
#   * runs munged on its own socket, slurmctld and slurmd on loopback (ports $SLURMCTLD_PORT
#     and $SLURMD_PORT, default 6817/6818: tests pass free ones);
#   * no accounting daemon: Snakemake's SLURM plugin must use `slurm-status-command: squeue`,
#     which works because MinJobAge=300 keeps finished jobs visible to squeue;
#   * links /etc/slurm/slurm.conf to the generated config: the snakemake slurm-jobstep plugin
#     drops SLURM_CONF before calling srun inside a job, so srun must find the default path;
#   * sizes the node from the machine (CPUs from nproc, RealMemory = 90 % of MemTotal);
#   * waits for the node to be idle, runs a batch job (with an srun step inside it,
#     without SLURM_CONF) as a health check, prints and writes the caller's environment to
#     $SLURMLAB/env.sh.
# If the cluster is already up and healthy it says so and exits 0 without touching anything.
# On failure it prints one line starting with "start_local_slurm: ERROR:" and exits non-zero.
#
# Optional environment: SLURMLAB, SLURMCTLD_PORT, SLURMD_PORT, NODE_CPUS, NODE_MEM_MB (override detection),
# SLURM_START_TIMEOUT (seconds to wait for the node / health job, default 90).
set -euo pipefail

SLURMLAB="${SLURMLAB:-${TMPDIR:-/tmp}/archi-slurmlab}"
TIMEOUT="${SLURM_START_TIMEOUT:-90}"
CTLD_PORT="${SLURMCTLD_PORT:-6817}"
D_PORT="${SLURMD_PORT:-6818}"
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE=localhost
PARTITION=debug

M="$SLURMLAB/munge"
S="$SLURMLAB/slurm"
SOCK="$M/run/munge.socket.2"
CONF="$S/etc/slurm.conf"
SYS_CONF=/etc/slurm/slurm.conf

log() { echo "start_local_slurm: $*"; }
die() {
    echo "start_local_slurm: ERROR: $*" >&2
    exit 1
}
# Show the end of a log (to stderr) before failing, so CI output says why.
die_log() {
    local msg="$1" f
    shift
    for f in "$@"; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 15 "$f" >&2 || true
        fi
    done
    die "$msg"
}

# pid from a pid file, only if that process is alive and has the expected name
alive_pid() {
    local pidfile="$1" name="$2" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
    echo "$pid"
}

stop_pid() { # pidfile name
    local pid
    pid="$(alive_pid "$1" "$2")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        [[ -e "/proc/$pid" ]] || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
}

munge_ok() {
    [[ -S "$SOCK" ]] && munge -S "$SOCK" -n 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1
}

node_state() { # prints e.g. idle, mixed, allocated, down, drained (flags like * ~ # stripped)
    timeout 10 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 | tr -d '*~#!%$@^-' || true
}

write_env() {
    local tmp="$SLURMLAB/env.sh.tmp.$$"
    cat >"$tmp" <<EOF
# written by tools/slurm/start_local_slurm.sh; source it to talk to the local SLURM cluster
export SLURMLAB='$SLURMLAB'
export SLURM_CONF='$CONF'
export SLURM_LOCAL_PARTITION='$PARTITION'
export SLURM_LOCAL_CPUS='$CPUS'
export SLURM_LOCAL_MEM_MB='$MEM_MB'
EOF
    mv -f "$tmp" "$SLURMLAB/env.sh"
    echo "---- environment for callers (also in $SLURMLAB/env.sh) ----"
    grep '^export' "$SLURMLAB/env.sh"
}

# ------------------------------------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || die "must run as root (slurmd needs root); current uid $(id -u)"
[[ "$SLURMLAB" == /* ]] || die "SLURMLAB must be an absolute path, got '$SLURMLAB'"
# a unix socket path must fit in 108 bytes
((${#SOCK} < 100)) || die "SLURMLAB path too long for the munge socket: $SOCK"
mkdir -p "$SLURMLAB"

# one bring-up at a time (e.g. parallel test workers); the daemons are started with 9>&-
# so that they do not inherit (and hold) this lock
exec 9>"$SLURMLAB/.start.lock"
flock -w 300 9 || die "timed out waiting for the lock $SLURMLAB/.start.lock"

# ---- packages ----------------------------------------------------------------------------
missing=0
for b in slurmctld slurmd sinfo squeue sbatch srun scontrol munged munge unmunge mungekey; do
    command -v "$b" >/dev/null 2>&1 || missing=1
done
if ((missing)); then
    log "installing ${PACKAGES[*]} with apt-get"
    command -v apt-get >/dev/null || die "SLURM binaries missing and apt-get not available"
    # never let the packages' init scripts start system daemons: we start our own
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    aptlog="$SLURMLAB/apt.log"
    ok=1
    apt-get update -q >"$aptlog" 2>&1 || ok=0
    if ((ok)); then
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$aptlog" 2>&1 || ok=0
    fi
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    ((ok)) || die_log "apt-get install ${PACKAGES[*]} failed (log: $aptlog)" "$aptlog"
    for b in slurmctld slurmd sinfo sbatch srun munged mungekey; do
        command -v "$b" >/dev/null 2>&1 || die "$b still missing after apt-get install"
    done
fi

# ---- resources of this machine ------------------------------------------------------------
CPUS="${NODE_CPUS:-$(nproc)}"
if [[ -n "${NODE_MEM_MB:-}" ]]; then
    MEM_MB="$NODE_MEM_MB"
else
    MEM_MB="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
fi
[[ "$CPUS" =~ ^[0-9]+$ && "$CPUS" -ge 1 ]] || die "could not detect the number of CPUs ($CPUS)"
[[ "$MEM_MB" =~ ^[0-9]+$ && "$MEM_MB" -ge 100 ]] || die "could not detect memory ($MEM_MB MB)"
# memory for a job that does not ask (otherwise CR_Core_Memory gives it the whole node)
DEF_MEM_PER_CPU=$((MEM_MB / CPUS / 4))
((DEF_MEM_PER_CPU > 2048)) && DEF_MEM_PER_CPU=2048

# ---- the config we want --------------------------------------------------------------------
mkdir -p "$M/run" "$M/log" "$M/lib" "$S/etc" "$S/state" "$S/spool" "$S/log" "$S/run"
chmod 700 "$M/lib" "$M/log"
chmod 755 "$M" "$M/run"
new_conf="$S/etc/slurm.conf.new.$$"
cat >"$new_conf" <<EOF
# One-node SLURM cluster for local tests (generated by tools/slurm/start_local_slurm.sh)
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in unprivileged containers; --mem is used for scheduling only
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
# no slurmdbd: sacct cannot work. Finished jobs stay visible to squeue for 300 s,
# which the squeue-based status polling of the Snakemake slurm plugin relies on.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    mv -f "$new_conf" "$CONF"
    conf_changed=1
else
    rm -f "$new_conf"
fi
chmod 644 "$CONF"
export SLURM_CONF="$CONF"

link_ok() { [[ -L "$SYS_CONF" && "$(readlink "$SYS_CONF")" == "$CONF" ]]; }

# ---- already up? ---------------------------------------------------------------------------
if ((conf_changed == 0)) && link_ok && munge_ok &&
    alive_pid "$M/run/munged.pid" munged >/dev/null &&
    alive_pid "$S/run/slurmctld.pid" slurmctld >/dev/null &&
    alive_pid "$S/run/slurmd.pid" slurmd >/dev/null &&
    timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    st="$(node_state)"
    case "$st" in
    idle | mixed | allocated | completing)
        log "cluster already up and healthy (node $NODE $st, $SLURMLAB); nothing to do"
        write_env
        exit 0
        ;;
    esac
fi

# ---- ports: a daemon of another cluster (e.g. another $SLURMLAB) would make ours fail -------
port_busy() { command -v ss >/dev/null && [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }
if ! alive_pid "$S/run/slurmctld.pid" slurmctld >/dev/null && port_busy "$CTLD_PORT"; then
    die "port $CTLD_PORT is already in use (another slurmctld, e.g. of another SLURMLAB?); stop it first or set SLURMCTLD_PORT"
fi
if ! alive_pid "$S/run/slurmd.pid" slurmd >/dev/null && port_busy "$D_PORT"; then
    die "port $D_PORT is already in use (another slurmd, e.g. of another SLURMLAB?); stop it first or set SLURMD_PORT"
fi

# ---- munge ---------------------------------------------------------------------------------
if [[ ! -s "$M/munge.key" ]]; then
    mungekey --create --keyfile="$M/munge.key" >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none ||
        die "cannot create the munge key $M/munge.key"
fi
chmod 400 "$M/munge.key"
if ! munge_ok; then
    stop_pid "$M/run/munged.pid" munged
    rm -f "$SOCK" "$SOCK.lock"
    munged --key-file="$M/munge.key" --socket="$SOCK" --pid-file="$M/run/munged.pid" \
        --log-file="$M/log/munged.log" --seed-file="$M/lib/munged.seed" >"$M/log/munged.start" 2>&1 9>&- ||
        die_log "munged did not start" "$M/log/munged.start" "$M/log/munged.log"
    for _ in $(seq 1 50); do
        munge_ok && break
        sleep 0.1
    done
    munge_ok || die_log "munged started but munge/unmunge fails on $SOCK" "$M/log/munged.log"
    log "munged started ($SOCK)"
fi

# ---- /etc/slurm/slurm.conf -> our config (needed by srun inside jobs) ---------------------
mkdir -p /etc/slurm
if ! link_ok; then
    if [[ -e "$SYS_CONF" && ! -L "$SYS_CONF" ]]; then
        mv -f "$SYS_CONF" "$SYS_CONF.orig.$(date +%Y%m%d%H%M%S)"
        log "moved the existing real $SYS_CONF aside"
    fi
    ln -sfn "$CONF" "$SYS_CONF"
fi

# ---- slurmctld and slurmd -----------------------------------------------------------------
if ((conf_changed)); then
    # new or changed config: (re)start both daemons so they read it
    stop_pid "$S/run/slurmd.pid" slurmd
    stop_pid "$S/run/slurmctld.pid" slurmctld
fi
if ! alive_pid "$S/run/slurmctld.pid" slurmctld >/dev/null; then
    slurmctld -f "$CONF" >"$S/log/slurmctld.start" 2>&1 9>&- ||
        die_log "slurmctld did not start" "$S/log/slurmctld.start" "$S/log/slurmctld.log"
    log "slurmctld started"
fi
up=0
for _ in $(seq 1 $((TIMEOUT * 5))); do
    if timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
        up=1
        break
    fi
    sleep 0.2
done
((up)) || die_log "slurmctld does not answer (scontrol ping) after ${TIMEOUT}s" "$S/log/slurmctld.log"

if ! alive_pid "$S/run/slurmd.pid" slurmd >/dev/null; then
    slurmd -f "$CONF" -N "$NODE" >"$S/log/slurmd.start" 2>&1 9>&- ||
        die_log "slurmd did not start" "$S/log/slurmd.start" "$S/log/slurmd.log"
    log "slurmd started"
fi

# ---- wait for the node to be idle ----------------------------------------------------------
t0=$SECONDS
nudged=0
st=""
while ((SECONDS - t0 < TIMEOUT)); do
    st="$(node_state)"
    case "$st" in
    idle | mixed | allocated | completing) break ;;
    inval) break ;; # config does not match the hardware: resume cannot fix it
    down | drained | draining | drain | fail | failing)
        if ((nudged == 0 && SECONDS - t0 >= 2)); then
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            nudged=1
        fi
        ;;
    esac
    sleep 0.5
done
case "$st" in
idle | mixed | allocated | completing) ;;
*)
    reason="$(sinfo -h -R -n "$NODE" -o '%E' 2>/dev/null | head -n1)"
    die_log "node $NODE is '${st:-unknown}' after $((SECONDS - t0))s${reason:+ (reason: $reason)}" \
        "$S/log/slurmd.log" "$S/log/slurmctld.log"
    ;;
esac

# ---- health check: a batch job with an srun step that does not see SLURM_CONF --------------
# (polled with squeue every 0.25 s: `sbatch --wait` polls slowly and costs ~7 s more)
hc_out="$S/log/healthcheck.out"
rm -f "$hc_out"
jobid="$(timeout 30 sbatch --parsable -J healthcheck -p "$PARTITION" -n1 -c1 --mem=50 -t 2 \
    -D "$SLURMLAB" -o "$hc_out" \
    --wrap 'env -u SLURM_CONF srun -n1 hostname && echo healthcheck-ok' 2>"$S/log/healthcheck.sbatch")" ||
    die_log "sbatch of the health-check job failed" "$S/log/healthcheck.sbatch"
jobid="${jobid%%;*}"
t0=$SECONDS
jst=""
while ((SECONDS - t0 < TIMEOUT)); do
    jst="$(timeout 10 squeue -h -j "$jobid" -t all -o '%T' 2>/dev/null | head -n1)"
    case "$jst" in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) break ;;
    esac
    sleep 0.25
done
if [[ "$jst" != COMPLETED ]] || ! grep -q healthcheck-ok "$hc_out" 2>/dev/null; then
    timeout 5 scancel "$jobid" >/dev/null 2>&1 || true
    die_log "health-check job $jobid (sbatch with an srun step) ended as '${jst:-still queued after ${TIMEOUT}s}'" \
        "$hc_out" "$S/log/slurmd.log"
fi

log "cluster up: $(sinfo -h -o '%P %a %D %T %c CPUs %m MB' | head -n1) (health-check job $jobid ok)"
write_env
