#!/usr/bin/env bash
# Start a single-node Slurm on this machine for the executor tests, if it is not running yet.
#
# Idempotent and safe to call many times (and concurrently: a lock serialises callers):
# writes a minimal slurm.conf for one node named after `hostname -s` with the CPUs and
# memory `slurmd -C` reports, then starts munged, slurmctld and slurmd in the background
# (as root) where they are not running, and waits until `sinfo` shows the node idle.
# Process tracking is proctrack/linuxproc and task/none: no cgroups needed (sandboxes and
# containers often lack a usable cgroup hierarchy). No accounting daemon: sacct has no data,
# the executor reads job states from squeue and scontrol.
#
# Needs root and Debian's packages slurmctld, slurmd, slurm-client and munge
# (listed in .ci/apt-packages.txt). Exit status non-zero with the reason on stderr otherwise.
set -euo pipefail

STATE=${COLONYMESH_SLURM_STATE:-/var/lib/colonymesh-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# colonymesh test cluster (.ci/slurm/start.sh)"
WAIT_S=${COLONYMESH_SLURM_WAIT_S:-60}

die() { echo "slurm/start.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (daemons and state directories need it)"
for tool in munged slurmctld slurmd sinfo scontrol; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install slurmctld slurmd slurm-client munge"
done

mkdir -p "$STATE"
exec 9>"$STATE/start.lock"
flock -w 120 9 || die "another start.sh holds $STATE/start.lock"

node_idle() {
  local state
  state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1) || return 1
  case "$state" in idle|idle\*|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}
running() { pgrep -x "$1" >/dev/null 2>&1; }

NODE=$(hostname -s)
if running munged && running slurmctld && running slurmd && node_idle; then
  exit 0
fi

# --- munge: one key, the daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
if ! running munged; then
  runuser -u munge -- /usr/sbin/munged 9>&- || die "munged did not start: $(tail -n 5 /var/log/munge/munged.log 2>/dev/null)"
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null || die "munge does not round-trip a credential"

# --- slurm.conf: ours, or a real cluster's that we must not touch
if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
  die "$CONF exists and was not written by this script; refusing to overwrite it"
fi
hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[ -n "$cpus" ] && [ -n "$mem" ] || die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
mem=$(( mem * 9 / 10 ))  # leave slack: slurmd drains a node that reports less than configured
mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log" /etc/slurm
cat >"$CONF.new" <<CONFEOF
$MARK
ClusterName=colonymesh
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=600
DefMemPerCPU=1024
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFEOF
mv "$CONF.new" "$CONF"

if ! running slurmctld; then
  slurmctld -c 9>&- 2>>"$STATE/log/slurmctld.stderr" || die "slurmctld did not start: $(tail -n 5 "$STATE/log/slurmctld.log" "$STATE/log/slurmctld.stderr" 2>/dev/null)"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
if ! running slurmd; then
  slurmd 9>&- 2>>"$STATE/log/slurmd.stderr" || die "slurmd did not start: $(tail -n 5 "$STATE/log/slurmd.log" "$STATE/log/slurmd.stderr" 2>/dev/null)"
fi

deadline=$(( $(date +%s) + WAIT_S ))
while ! node_idle; do
  state=$(sinfo --noheader --nodes="$NODE" --format='%T %E' 2>&1 | head -n1 || true)
  case "$state" in
    down*|drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "node $NODE not idle after ${WAIT_S}s (sinfo: $state); logs: $(tail -n 5 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" 2>/dev/null)"
  fi
  sleep 0.5
done
echo "slurm/start.sh: node $NODE idle (CPUs=$cpus RealMemory=${mem}M)"
