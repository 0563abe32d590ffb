#!/usr/bin/env bash
# A one-node Slurm "cluster" on this machine, for tests/test_slurm.py (and for trying the slurm profile).
#
#   tests/slurm/cluster.sh up      install slurm-wlm + munge if missing, configure, start, wait until idle
#   tests/slurm/cluster.sh down    cancel every job, stop the daemons this script started, remove its state
#   tests/slurm/cluster.sh status  what runs, and sinfo
#
# Needs root and Debian/Ubuntu (apt-get). No systemd: the daemons are started directly.
# The node has CPUs=$(nproc), memory below what is there, and one fake GPU (gres gpu:1 backed by
# /dev/null) so that `--gpus=1` / `--gres=gpu:1` jobs are scheduled as on a GPU cluster.
# No accounting (no slurmdbd): query job status with squeue (`--slurm-status-command squeue`).
# Config lives in /etc/slurm and ports 6817/6818 are fixed: one test cluster per machine at a time.
# Facts behind these choices: ../shared/docs/SLURM.md.
set -euo pipefail

STATE_DIR=${VIDENHANCE_SLURM_STATE:-/tmp/videnhance-slurm}   # scratch: spool, state, logs, pid files
CONF_DIR=/etc/slurm
MARKER="# written by videnhance tests/slurm/cluster.sh"
NODE=$(hostname -s)
PARTITION=debug
WAIT_S=${VIDENHANCE_SLURM_WAIT:-30}   # bound for every wait below

say() { echo "cluster.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_from() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds or time is up
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "timed out after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and writes /etc/slurm)"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is missing"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

munge_works() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
    if munge_works 2>/dev/null; then
        say "munged already running (not started here, so not stopped by 'down')"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_for "$WAIT_S" "munged" munge_works || die "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid"   # ours: 'down' stops it
}

render_slurm_conf() {
    local cpus mem_total mem
    cpus=$(nproc)
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    mem=$((mem_total * 8 / 10))   # RealMemory must not exceed what slurmd finds, or the node is invalid
    cat <<EOF
$MARKER (state in $STATE_DIR)
ClusterName=videnhance-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue (the status command without accounting) and to scontrol
# (what the tests read) this long; keep it well above 3x the first status-check delay.
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

render_gres_conf() {
    cat <<EOF
$MARKER
# A pretend GPU: scheduling only (jobs see CUDA_VISIBLE_DEVICES=0). A gres needs a device file.
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null
EOF
}

config_current() {
    [[ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" == "$(render_slurm_conf)" ]] &&
        [[ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" == "$(render_gres_conf)" ]]
}

write_config() {
    if [[ -e $CONF_DIR/slurm.conf ]] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf exists and was not written by this script; not touching a real cluster's config"
    fi
    mkdir -p "$CONF_DIR" "$STATE_DIR"/{state,spool,log}
    render_slurm_conf >"$CONF_DIR/slurm.conf"
    render_gres_conf >"$CONF_DIR/gres.conf"
}

node_idle() { sinfo -h -n "$NODE" -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }
ctld_answers() { scontrol ping | grep -q UP; }

cluster_up() {
    local ctld slurmd_pid
    ctld=$(pid_from "$STATE_DIR/slurmctld.pid")
    slurmd_pid=$(pid_from "$STATE_DIR/slurmd.pid")
    if pid_alive "$ctld" && pid_alive "$slurmd_pid" && config_current && node_idle 2>/dev/null; then
        say "already up (node $NODE)"
        return
    fi
    if [[ -d $STATE_DIR ]]; then
        say "found a partial or outdated cluster; taking it down first"
        cluster_down
    fi
    install_packages
    mkdir -p "$STATE_DIR"
    write_config
    start_munge
    slurmctld -i
    wait_for "$WAIT_S" "slurmctld" ctld_answers || die "slurmctld did not start (see $STATE_DIR/log/slurmctld.log)"
    slurmd -N "$NODE"
    if ! wait_for "$WAIT_S" "node $NODE to be idle" node_idle; then
        sinfo -N -l >&2 || true
        tail -n 20 "$STATE_DIR/log/slurmd.log" "$STATE_DIR/log/slurmctld.log" >&2 || true
        die "the node did not come up"
    fi
    say "up: node $NODE, partition $PARTITION, $(nproc) CPUs, gres gpu:1, state in $STATE_DIR"
}

# stop_pidfile NAME FILE: TERM the process in FILE, wait, then KILL
stop_pidfile() {
    local name=$1 pid
    pid=$(pid_from "$2")
    if ! pid_alive "$pid"; then
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_alive "$pid"; then
        say "$name ($pid) ignored TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

cluster_down() {
    if [[ -s $STATE_DIR/slurmctld.pid ]] && pid_alive "$(pid_from "$STATE_DIR/slurmctld.pid")"; then
        local jobs
        jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: $(echo $jobs)"
            timeout 10 scancel $jobs 2>/dev/null || true
            wait_for 15 "jobs to end" bash -c '[[ -z $(squeue -h -t R,CG,PD -o %i) ]]' || true
        fi
    fi
    stop_pidfile slurmd "$STATE_DIR/slurmd.pid"
    stop_pidfile slurmctld "$STATE_DIR/slurmctld.pid"
    stop_pidfile munged "$STATE_DIR/munged.pid"   # only present when 'up' started it
    rm -rf "$STATE_DIR"
    say "down"
}

cluster_status() {
    local name
    for name in munged slurmctld slurmd; do
        local pid
        pid=$(pid_from "$STATE_DIR/$name.pid")
        if pid_alive "$pid"; then echo "$name: running ($pid)"; else echo "$name: not running (from here)"; fi
    done
    timeout 10 sinfo 2>/dev/null || echo "sinfo: no answer"
}

case "${1:-}" in
up) need_root; cluster_up ;;
down) need_root; cluster_down ;;
status) cluster_status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
