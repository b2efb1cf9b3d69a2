#!/usr/bin/env bash
# A real single-node Slurm cluster for the integration tests (Slurm 22.05 from Debian).
#
#   scripts/cluster.sh up      start munge, MariaDB, slurmdbd, slurmctld, slurmd (idempotent)
#   scripts/cluster.sh down    stop only the daemons that `up` started
#   scripts/cluster.sh status  say what runs; exit 0 when the cluster takes jobs
#
# Needs root (it writes /etc/slurm and starts daemons).  Parallel callers (pytest-xdist workers)
# serialise on a lock, so every one of them may call `up`.  Exit codes: 0 ok, 1 failed,
# 3 impossible here (not root, no apt) -- the test fixture skips on 3.
set -euo pipefail

STATE=${SLURMSWEEP_CLUSTER_STATE:-/var/lib/slurmsweep-cluster}
CLUSTER=slurmsweep
HOST=$(hostname -s)
DB_PASS=slurmsweep            # loopback-only MariaDB, test cluster: not a secret
MYSQL_SOCK=/run/mysqld/mysqld.sock
PACKAGES="slurm-wlm munge slurmdbd mariadb-server"

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "error: $1"; exit "${2:-1}"; }

# --- what `up` started, so that `down` stops only that ---------------------------------------
mark_started() { grep -qx "$1" "$STATE/started" 2>/dev/null || echo "$1" >>"$STATE/started"; }
we_started() { grep -qx "$1" "$STATE/started" 2>/dev/null; }

pid_alive() {  # pidfile -> 0 when that process lives
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # seconds description command...  -> polls every 0.2 s
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what (logs: $STATE/log)"
        sleep 0.2
    done
}

stop_pidfile() {  # name pidfile: TERM, wait up to 10 s, then KILL
    local name=$1 pidfile=$2 pid
    pid_alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

# --- install ----------------------------------------------------------------------------------
ensure_packages() {
    local missing=0 bin
    for bin in slurmctld slurmd slurmdbd munged mariadbd sacct; do
        command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || missing=1
    done
    ((missing)) || return 0
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it" 3
    say "installing $PACKAGES with apt (once)"
    apt-get update -qq || die "apt-get update failed: no package mirror reachable" 3
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >"$STATE/log/apt.log" 2>&1 \
        || die "apt-get install failed, see $STATE/log/apt.log" 3
}

# --- munge ------------------------------------------------------------------------------------
start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then say "munge already answers"; return; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force 9>&-
    mark_started munged
    wait_for 10 munged sh -c 'munge -n | unmunge'
}

# --- MariaDB on loopback ----------------------------------------------------------------------
mysql_up() { mysqladmin --socket="$MYSQL_SOCK" ping; }

start_mariadb() {
    if mysql_up >/dev/null 2>&1; then say "MariaDB already answers"; else
        install -d -o mysql -g mysql -m 0755 /run/mysqld
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            say "initialising /var/lib/mysql"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/log/mariadb-install.log" 2>&1
        fi
        say "starting MariaDB on 127.0.0.1"
        # mariadbd stays in the foreground: detach it from our session so it outlives the caller.
        setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=127.0.0.1 \
            --socket="$MYSQL_SOCK" --pid-file=/run/mysqld/mysqld.pid \
            --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
            >>"$STATE/log/mariadb.log" 2>&1 </dev/null 9>&- &
        mark_started mariadb
        wait_for 30 MariaDB mysql_up
    fi
    mysql --socket="$MYSQL_SOCK" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

# --- configuration files ----------------------------------------------------------------------
write_if_changed() {  # path mode <content on stdin> -> returns 0 when the file changed
    local path=$1 mode=$2 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if cmp -s "$tmp" "$path" 2>/dev/null; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$path"
    say "wrote $path"
}

write_configs() {
    install -d -m 0755 /etc/slurm
    CONF_CHANGED=0
    write_if_changed /etc/slurm/slurmdbd.conf 600 <<EOF && CONF_CHANGED=1 || true
# Written by scripts/cluster.sh (slurmsweep test cluster).
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    write_if_changed /etc/slurm/slurm.conf 644 <<EOF && CONF_CHANGED=1 || true
# Written by scripts/cluster.sh (slurmsweep test cluster): one node, Mila-like partitions.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued (or preempted) job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=15
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
MpiDefault=none
# No cgroups in this container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
# Test speed: schedule on every event, backfill every second, kill quickly.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1,bf_continue,default_queue_depth=1000
KillWait=2
MinJobAge=300
InactiveLimit=0
MessageTimeout=20
SlurmdTimeout=120
# Arrays as large as a 10,000-trial sweep.
MaxArraySize=100001
MaxJobCount=200000
# Mila-like preemption: a higher PriorityTier partition requeues jobs of a lower one, no signal.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
# Pretend the 2-core box has 32 CPUs (and 250 GB) so ~100 one-CPU tasks run at once; memory is
# consumable so that --mem is a limit OverMemoryKill enforces.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
# Without cgroups, this is what turns a job over its --mem into OUT_OF_MEMORY.
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
NodeName=$HOST CPUs=32 RealMemory=256000 Gres=gpu:4 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES PriorityTier=2 PreemptMode=OFF OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP
PartitionName=long Nodes=$HOST PriorityTier=1 PreemptMode=REQUEUE OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP
PartitionName=unkillable Nodes=$HOST PriorityTier=3 PreemptMode=OFF OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP
EOF
    # Count= alone leaves the node INVALID on 22.05; device files make the GPUs real enough.
    write_if_changed /etc/slurm/gres.conf 644 <<EOF && CONF_CHANGED=1 || true
NodeName=$HOST Name=gpu File=/dev/fakegpu[0-3]
EOF
    local n
    for n in 0 1 2 3; do [[ -e /dev/fakegpu$n ]] || mknod /dev/fakegpu$n c 1 3; done
}

# --- Slurm daemons ----------------------------------------------------------------------------
start_daemon() {  # NAME: (re)start /usr/sbin/NAME unless it runs with the current configuration
    local name=$1
    # A config change (AccountingStorageType in particular) needs a restart, not a reconfigure.
    if pid_alive "$STATE/run/$name.pid" && ((CONF_CHANGED == 0)); then say "$name already runs"; else
        stop_pidfile "$name" "$STATE/run/$name.pid"
        say "starting $name on $HOST"
        "/usr/sbin/$name" 9>&-  # daemons must not inherit the lock
        mark_started "$name"
    fi
}

start_slurmdbd() {
    start_daemon slurmdbd
    wait_for 30 "slurmdbd (sacctmgr)" sacctmgr -n list cluster
    # The cluster and an account must exist before slurmctld registers, or sacct stays empty.
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>/dev/null) ]]; then
        say "registering cluster $CLUSTER"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P list account sweep format=account 2>/dev/null) ]]; then
        say "adding account sweep and user root"
        sacctmgr -i add account sweep Cluster="$CLUSTER" Description=tests Organization=slurmsweep >/dev/null
        sacctmgr -i add user root Account=sweep Cluster="$CLUSTER" >/dev/null || true
    fi
}

start_slurmctld() {
    start_daemon slurmctld
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
}

start_slurmd() {
    start_daemon slurmd
    wait_for 30 "node $HOST to register" node_usable
}

node_usable() {
    local state
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1)
    case $state in
        idle* | mix* | alloc* | comp*) return 0 ;;
        down* | drain* | drng* | fail*)
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
        *) return 1 ;;
    esac
}

# --- commands ---------------------------------------------------------------------------------
cmd_up() {
    local t0=$SECONDS
    ensure_packages
    start_munge
    start_mariadb
    write_configs
    start_slurmdbd
    start_slurmctld
    start_slurmd
    say "up in $((SECONDS - t0))s: $(sinfo -h -o '%P %a %D %t' | tr '\n' ';')"
}

cmd_down() {
    [[ -s $STATE/started ]] || { say "nothing started by up"; return 0; }
    we_started slurmd && stop_pidfile slurmd "$STATE/run/slurmd.pid"
    we_started slurmctld && stop_pidfile slurmctld "$STATE/run/slurmctld.pid"
    we_started slurmdbd && stop_pidfile slurmdbd "$STATE/run/slurmdbd.pid"
    we_started mariadb && stop_pidfile mariadb /run/mysqld/mysqld.pid
    we_started munged && stop_pidfile munged /run/munge/munged.pid
    rm -f "$STATE/started"
    say "down"
}

cmd_status() {
    local ok=0 name pidfile
    for name in slurmdbd slurmctld slurmd; do
        pidfile=$STATE/run/$name.pid
        if pid_alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; ok=1; fi
    done
    if mysql_up >/dev/null 2>&1; then echo "mariadb: running"; else echo "mariadb: stopped"; ok=1; fi
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munge: running"; else echo "munge: stopped"; ok=1; fi
    if ((ok == 0)); then sinfo -o '%P %a %D %t %G' || ok=1; fi
    return $ok
}

main() {
    local cmd=${1:-}
    case $cmd in up | down | status) ;; *) echo "usage: $0 up|down|status" >&2; exit 2 ;; esac
    if [[ $cmd == status ]]; then cmd_status; return; fi
    [[ $(id -u) == 0 ]] || die "must run as root to start Slurm daemons (uid $(id -u))" 3
    install -d -m 0755 "$STATE" "$STATE/log" "$STATE/run" "$STATE/slurmctld" "$STATE/slurmd"
    exec 9>"$STATE/lock"
    flock -w 300 9 || die "another cluster.sh holds $STATE/lock for over 300s"
    "cmd_$cmd"
}

main "$@"
