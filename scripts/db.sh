#!/usr/bin/env bash
# scripts/db.sh - throwaway PostgreSQL and MariaDB servers on loopback for the
# mlflow-secrets test suite.
#
#   scripts/db.sh up               install what is missing, start both, print exports
#   scripts/db.sh env              print the export lines of the running instances
#   scripts/db.sh status           one line per server: running or stopped
#   scripts/db.sh down             stop both servers and delete the data dir
#   scripts/db.sh stop-postgres    stop PostgreSQL, keep its data and port
#   scripts/db.sh start-postgres   start it again on the same port and data dir
#   scripts/db.sh stop-mysql       same for MariaDB
#   scripts/db.sh start-mysql
#
# Typical use:   eval "$(scripts/db.sh up)"   ...tests...   scripts/db.sh down
#
# stdout carries only the two `export ...` lines (for `up` and `env`); all
# progress and errors go to stderr.  See docs/databases.md.
#
# Environment:
#   MLFLOW_SECRETS_DB_DIR      base dir (default /tmp/mlflow-secrets-db)
#   MLFLOW_SECRETS_PG_PORT     fixed PostgreSQL port (default: a free one)
#   MLFLOW_SECRETS_MYSQL_PORT  fixed MariaDB port (default: a free one)
#   MLFLOW_SECRETS_DB_TIMEOUT  seconds to wait for a server (default 60)
#   MLFLOW_SECRETS_DB_CACHE    where pristine (password-free) data dirs are cached
#                              between runs to skip initdb / mariadb-install-db
#                              (default /var/cache/mlflow-secrets-db as root);
#                              `off` disables the cache
set -Eeuo pipefail

readonly PROG="scripts/db.sh"
readonly USAGE="usage: $PROG {up|env|status|down|stop-postgres|start-postgres|stop-mysql|start-mysql}"

DB_DIR="${MLFLOW_SECRETS_DB_DIR:-/tmp/mlflow-secrets-db}"
TIMEOUT="${MLFLOW_SECRETS_DB_TIMEOUT:-60}"
if [[ "$(id -u)" == 0 ]]; then
    CACHE_DIR="${MLFLOW_SECRETS_DB_CACHE:-/var/cache/mlflow-secrets-db}"
else
    CACHE_DIR="${MLFLOW_SECRETS_DB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets-db}"
fi

# Layout of the base dir.
MARKER="$DB_DIR/.mlflow-secrets-db"   # "this dir is ours, rm -rf is fine"
STATE="$DB_DIR/state"                 # ports, password, pg bin dir (sourced)
ENV_FILE="$DB_DIR/env"                # the two export lines
RUN="$DB_DIR/run"                     # sockets, pid files, logs, my.cnf
PGDATA="$DB_DIR/pgdata"
MYDATA="$DB_DIR/mysqldata"
PG_LOG="$RUN/postgres.log"
MY_LOG="$RUN/mariadb.log"
MY_CNF="$RUN/my.cnf"
MY_SOCK="$RUN/mysqld.sock"
MY_PID="$RUN/mariadbd.pid"            # written by mariadbd
MY_LAUNCH_PID="$RUN/mariadbd.launch.pid"  # written by us right after spawning
LOCK_FILE="${DB_DIR%/}.lock"

readonly DB_NAME="mlflow_secrets"
readonly DB_USER="mlflow"

# Filled by load_state / fresh up.
PG_INIT_PID=""
STOPPED_PIDS=()
PG_PORT=""
MYSQL_PORT=""
DB_PASSWORD=""
PG_BIN=""

# ---------------------------------------------------------------- helpers

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
# Anything that fails without a die() of its own still ends with one line
# saying what failed.
trap 'printf "%s: error: command failed (exit %s, line %s): %s\n" "$PROG" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

# Print the last lines of a log file to stderr (for failure messages).
tail_log() {
    local f="$1"
    if [[ -s "$f" ]]; then
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2 || true
        printf -- '----- end of %s -----\n' "$f" >&2
    fi
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# Run a command as the OS user that owns the PostgreSQL data dir.  initdb and
# postgres refuse to run as root, so as root we use the `postgres` account.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Is pid $1 alive and is its command name $2 (guards against pid reuse)?
# A zombie counts as gone: an exited server waits to be reaped by init, which
# in some containers takes a while.
pid_is() {
    local pid="$1" want="$2" comm stat
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { read -r comm <"/proc/$pid/comm" && read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    [[ "$comm" == "$want" ]] || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Is TCP port $1 in use (any local address, v4 or v6)?  With $2 = listen only
# LISTEN sockets count: the servers set SO_REUSEADDR, so the TIME_WAIT
# leftovers of their own last connections do not stop a restart.  Without it,
# any socket counts (used when picking a fresh port).
port_in_use() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" -v listen_only="${2:-}" '
        FNR > 1 && substr($2, length($2) - 4) == p && (listen_only == "" || $4 == "0A") { found = 1; exit }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A free loopback port, below the Linux ephemeral range (32768+) so that
# outgoing connections cannot grab it between our check and the bind.
pick_port() {
    local avoid="${1:-}" p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ "$p" == "$avoid" ]] && continue
        port_in_use "$p" && continue
        echo "$p"
        return 0
    done
    die "could not find a free TCP port on 127.0.0.1"
}

check_port_value() {
    local name="$1" val="$2"
    [[ "$val" =~ ^[0-9]+$ ]] && ((val >= 1 && val <= 65535)) \
        || die "$name must be a TCP port number, got '$val'"
}

random_hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# Serialise concurrent invocations (e.g. several test binaries calling `up`).
# fd 9 must never leak into the servers we spawn, or they would hold the lock
# forever: every spawn below closes it with 9>&-.
take_lock() {
    { mkdir -p "$(dirname "$LOCK_FILE")" && exec 9>>"$LOCK_FILE"; } 2>/dev/null \
        || die "cannot open the lock file $LOCK_FILE"
    flock -w 300 9 || die "timed out waiting for the lock $LOCK_FILE (another $PROG running?)"
}

load_state() {
    [[ -f "$STATE" ]] || return 1
    # shellcheck disable=SC1090
    . "$STATE"
    [[ -n "$PG_PORT" && -n "$MYSQL_PORT" && -n "$DB_PASSWORD" && -n "$PG_BIN" ]] \
        || die "state file $STATE is incomplete; run '$PROG down' then '$PROG up'"
}

write_state() {
    local tmp="$STATE.tmp"
    (
        umask 077
        {
            printf 'PG_PORT=%q\n' "$PG_PORT"
            printf 'MYSQL_PORT=%q\n' "$MYSQL_PORT"
            printf 'DB_PASSWORD=%q\n' "$DB_PASSWORD"
            printf 'PG_BIN=%q\n' "$PG_BIN"
        } >"$tmp"
        printf '%s\n' "$(export_lines)" >"$ENV_FILE.tmp"
    )
    mv -f "$tmp" "$STATE"
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

export_lines() {
    printf 'export MLFLOW_SECRETS_TEST_POSTGRES_URL=postgres://%s:%s@127.0.0.1:%s/%s\n' \
        "$DB_USER" "$DB_PASSWORD" "$PG_PORT" "$DB_NAME"
    printf 'export MLFLOW_SECRETS_TEST_MYSQL_URL=mysql://%s:%s@127.0.0.1:%s/%s\n' \
        "$DB_USER" "$DB_PASSWORD" "$MYSQL_PORT" "$DB_NAME"
}

# ---------------------------------------------------------------- packages

find_pg_bin() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" && -x "$d/pg_isready" && -x "$d/psql" ]] || continue
        if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)" == "$d" ]]; then
            best="$d"
        fi
    done
    [[ -n "$best" ]] || return 1
    echo "$best"
}

have_mariadb() {
    command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || return 1
    command -v mariadb-install-db >/dev/null 2>&1 || return 1
    command -v mariadb >/dev/null 2>&1 || return 1
    command -v mariadb-admin >/dev/null 2>&1 || return 1
}

mariadbd_path() {
    if [[ -x /usr/sbin/mariadbd ]]; then echo /usr/sbin/mariadbd; else command -v mariadbd; fi
}

# Install postgresql / mariadb-server (and clients) if they are missing.
# The Debian postinst scripts create a default cluster in /var/lib/postgresql
# and /var/lib/mysql and try to start the system services; while we install
# we put a policy-rc.d in place that denies all service starts (unless one
# already exists), so no system-wide server is left running.  Even if one were
# running it would not collide: ours use their own ports, sockets and dirs.
ensure_packages() {
    local pkgs=()
    find_pg_bin >/dev/null || pkgs+=(postgresql postgresql-client)
    have_mariadb || pkgs+=(mariadb-server mariadb-client)
    ((${#pkgs[@]} == 0)) && return 0

    is_root || die "missing packages (${pkgs[*]}) and not root: install them or run as root"
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${pkgs[*]}) and apt-get not found"

    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, added by mlflow-secrets %s\nexit 101\n' "$PROG" >"$policy"
        chmod 755 "$policy"
        added_policy=1
        # Remove it even if apt fails or we are interrupted.
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        trap 'exit 130' INT TERM
    fi

    local apt_log="${TMPDIR:-/tmp}/mlflow-secrets-db-apt.log"
    log "installing ${pkgs[*]} (apt log: $apt_log)"
    local rc=0
    {
        apt-get -o DPkg::Lock::Timeout=300 update \
            && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
                install -y --no-install-recommends "${pkgs[@]}"
    } </dev/null >"$apt_log" 2>&1 9>&- || rc=$?

    if ((added_policy)); then
        rm -f "$policy"
        trap - EXIT INT TERM
    fi
    if ((rc != 0)); then
        tail_log "$apt_log"
        die "apt-get install ${pkgs[*]} failed (exit $rc), see $apt_log"
    fi
    find_pg_bin >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
    have_mariadb || die "mariadb-server installed but mariadbd/mariadb-install-db/mariadb/mariadb-admin not found"
}

# ---------------------------------------------------------------- templates

# initdb and mariadb-install-db cost 1-7 s; a copy of their pristine output
# costs a fraction of that.  Templates hold no password (the passwords are set
# per run, after start) and live in $CACHE_DIR, keyed by server version and OS
# user.  Best effort: any problem falls back to the real init.

# template_dir KIND VERSION-STRING: path of the template, or nothing if disabled.
template_dir() {
    [[ "$CACHE_DIR" != off && -n "$2" ]] || return 0
    printf '%s/%s-v1-%s-%s\n' "$CACHE_DIR" "$1" "$(id -un)" "$(printf '%s' "$2" | tr -c 'A-Za-z0-9.+-' '_')"
}

# template_restore TEMPLATE DEST: copy a complete template into the empty DEST.
template_restore() {
    local tpl="$1" dest="$2"
    [[ -n "$tpl" && -f "$tpl/.complete" ]] || return 1
    if cp -a "$tpl/." "$dest/" 2>/dev/null && rm -f "$dest/.complete"; then
        return 0
    fi
    log "warning: copying the template $tpl failed; initialising from scratch"
    find "$dest" -mindepth 1 -delete 2>/dev/null || true
    return 1
}

# template_save SRC TEMPLATE: atomically publish SRC as the template.
template_save() {
    local src="$1" tpl="$2"
    [[ -n "$tpl" && ! -e "$tpl" ]] || return 0
    local tmp="$tpl.tmp.$$"
    if mkdir -p "$CACHE_DIR" 2>/dev/null && cp -a "$src/." "$tmp/" 2>/dev/null \
        && : >"$tmp/.complete" && mv -T "$tmp" "$tpl" 2>/dev/null; then
        return 0
    fi
    rm -rf -- "$tmp"
}

# ---------------------------------------------------------------- PostgreSQL

pg_pid() {
    local pid=""
    [[ -f "$PGDATA/postmaster.pid" ]] && pid="$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)"
    pid_is "$pid" postgres && echo "$pid"
}

pg_running() { pg_pid >/dev/null; }

pg_write_conf() {
    as_pg tee "$PGDATA/mlflow_secrets.conf" >/dev/null <<EOF
# Written by $PROG: throwaway test instance.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 300
timezone = 'UTC'
log_timezone = 'UTC'
# Durability against OS crashes is irrelevant for a throwaway test instance;
# speed is not.  synchronous_commit stays on: a commit has reached the kernel
# when it returns, so it survives a kill -9 of the server.
fsync = off
full_page_writes = off
EOF
}

# Superuser mlflow.  TCP connections need its password (scram-sha-256); the
# unix socket (0700, in the run dir owned by the postgres OS user) trusts
# local connections, which pg_setup uses to set the per-run password.
pg_init() {
    mkdir -p "$PGDATA" && chmod 700 "$PGDATA" || die "cannot create $PGDATA"
    if is_root; then
        chown postgres: "$PGDATA" || die "cannot chown $PGDATA to the postgres user"
    fi
    local tpl
    tpl="$(template_dir postgres "$("$PG_BIN/postgres" --version 2>/dev/null || true)")"
    if ! template_restore "$tpl" "$PGDATA"; then
        if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" --username="$DB_USER" \
            --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync \
            </dev/null >"$RUN/initdb.log" 2>&1 9>&-; then
            tail_log "$RUN/initdb.log"
            die "PostgreSQL initdb failed in $PGDATA (see $RUN/initdb.log)"
        fi
        printf "\ninclude 'mlflow_secrets.conf'\n" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null \
            || die "cannot write PostgreSQL config in $PGDATA"
        template_save "$PGDATA" "$tpl"
    fi
    pg_write_conf || die "cannot write PostgreSQL config in $PGDATA"
}

# Start PostgreSQL and wait until it accepts TCP connections.
# Returns 2 (without dying) if the port was taken, so `up` can pick another.
pg_start() {
    if pg_running; then
        log "PostgreSQL already running (pid $(pg_pid), port $PG_PORT)"
        return 0
    fi
    if port_in_use "$PG_PORT" listen; then
        log "PostgreSQL port $PG_PORT on 127.0.0.1 is already in use by another process"
        return 2
    fi
    : >>"$PG_LOG" && is_root && chown postgres "$PG_LOG"
    local rc=0
    as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$PG_LOG" -w -t "$TIMEOUT" -s \
        </dev/null >>"$RUN/pg_ctl.log" 2>&1 9>&- || rc=$?
    if ((rc != 0)); then
        if grep -q 'could not bind\|Address already in use' "$PG_LOG" 2>/dev/null; then
            log "PostgreSQL could not bind port $PG_PORT"
            return 2
        fi
        tail_log "$PG_LOG"
        die "PostgreSQL failed to start on 127.0.0.1:$PG_PORT (pg_ctl exit $rc, log $PG_LOG)"
    fi
    wait_pg
}

wait_pg() {
    local deadline=$((SECONDS + TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 </dev/null 9>&-; do
        if ! pg_running; then
            tail_log "$PG_LOG"
            die "PostgreSQL exited while starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$PG_LOG"
            die "PostgreSQL not accepting connections on 127.0.0.1:$PG_PORT after ${TIMEOUT}s (log $PG_LOG)"
        fi
        sleep 0.2
    done
}

pg_stop() {
    local pid
    pid="$(pg_pid)" || return 0
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 30 -s \
        </dev/null >>"$RUN/pg_ctl.log" 2>&1 9>&-; then
        log "PostgreSQL fast shutdown timed out, using immediate shutdown"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m immediate -w -t 10 -s \
            </dev/null >>"$RUN/pg_ctl.log" 2>&1 9>&- || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait_gone "$pid" postgres 15 || die "PostgreSQL (pid $pid) did not stop"
}

# Set the password and create the database over the unix socket (the SQL goes
# through stdin, so the password never shows up in ps), then check that the
# password works over TCP.
pg_setup() {
    local out
    if ! out="$(printf "ALTER ROLE %s PASSWORD '%s';\nCREATE DATABASE %s;\n" "$DB_USER" "$DB_PASSWORD" "$DB_NAME" \
        | as_pg env PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
            -h "$RUN" -p "$PG_PORT" -U "$DB_USER" -d postgres 2>&1 9>&-)"; then
        printf '%s\n' "$out" >&2
        die "PostgreSQL: setting the $DB_USER password / creating database $DB_NAME over $RUN failed"
    fi
    if ! out="$(PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" -c 'SELECT 1' </dev/null 2>&1 9>&-)"; then
        printf '%s\n' "$out" >&2
        die "PostgreSQL: password login as $DB_USER over 127.0.0.1:$PG_PORT failed"
    fi
}

# ---------------------------------------------------------------- MariaDB

my_pid() {
    local pid=""
    [[ -f "$MY_PID" ]] && pid="$(head -n 1 "$MY_PID" 2>/dev/null || true)"
    if ! pid_is "$pid" mariadbd; then
        [[ -f "$MY_LAUNCH_PID" ]] && pid="$(head -n 1 "$MY_LAUNCH_PID" 2>/dev/null || true)"
        pid_is "$pid" mariadbd || return 1
    fi
    echo "$pid"
}

my_running() { my_pid >/dev/null; }

# Our own option file; --defaults-file keeps /etc/mysql/my.cnf and ~/.my.cnf out.
my_write_conf() {
    cat >"$MY_CNF" <<EOF
# Written by $PROG: throwaway test instance.
[mysqld]
datadir = $MYDATA
socket = $MY_SOCK
pid-file = $MY_PID
log-error = $MY_LOG
port = $MYSQL_PORT
bind-address = 127.0.0.1
skip-name-resolve
skip-log-bin
default-storage-engine = InnoDB
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
default-time-zone = '+00:00'
max_connections = 300
# Durability is irrelevant for a throwaway test instance; speed is not.
# Commits reach the OS (they survive a mariadbd crash/kill -9), never fsync.
innodb_flush_log_at_trx_commit = 2
innodb_flush_method = nosync
innodb_doublewrite = 0
innodb_buffer_pool_size = 128M
innodb_log_file_size = 16M
innodb_buffer_pool_dump_at_shutdown = 0
innodb_buffer_pool_load_at_startup = 0

[client]
socket = $MY_SOCK
default-character-set = utf8mb4
EOF
}

my_init() {
    { mkdir -p "$MYDATA" && chmod 700 "$MYDATA" && my_write_conf; } || die "cannot create $MYDATA or $MY_CNF"
    local tpl
    tpl="$(template_dir mariadb "$("$(mariadbd_path)" --version 2>/dev/null | awk '{ print $3; exit }' || true)")"
    template_restore "$tpl" "$MYDATA" && return 0
    # Root (or, when not root, the invoking OS user) gets a unix_socket-auth
    # account on localhost; we use it once below to create the mlflow user.
    if ! mariadb-install-db --defaults-file="$MY_CNF" --user="$(id -un)" \
        --skip-test-db --skip-name-resolve --auth-root-authentication-method=socket \
        --innodb-flush-log-at-trx-commit=0 \
        </dev/null >"$RUN/mariadb-install-db.log" 2>&1 9>&-; then
        tail_log "$RUN/mariadb-install-db.log"
        die "mariadb-install-db failed in $MYDATA (see $RUN/mariadb-install-db.log)"
    fi
    template_save "$MYDATA" "$tpl"
}

my_start() {
    if my_running; then
        log "MariaDB already running (pid $(my_pid), port $MYSQL_PORT)"
        return 0
    fi
    if port_in_use "$MYSQL_PORT" listen; then
        log "MariaDB port $MYSQL_PORT on 127.0.0.1 is already in use by another process"
        return 2
    fi
    rm -f "$MY_PID" "$MY_LAUNCH_PID"
    local bin
    bin="$(mariadbd_path)"
    # setsid: own session, so a Ctrl-C at the terminal does not reach it (pg_ctl
    # does the same for the postmaster).  In a non-interactive shell the
    # background child is not a group leader, so setsid execs in place and $!
    # is the mariadbd pid.
    setsid "$bin" --defaults-file="$MY_CNF" --user="$(id -un)" \
        </dev/null >>"$MY_LOG" 2>&1 9>&- &
    local pid=$!
    echo "$pid" >"$MY_LAUNCH_PID"
    wait_my "$pid"
}

# Does MariaDB answer on its TCP port?  Before the mlflow user exists the
# server answers with "host not allowed" / "access denied"; that still means
# it is up (mariadb-admin exits 1 for it, so look at the message).
my_ping() {
    local out
    out="$(MYSQL_PWD="$DB_PASSWORD" mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 \
        -P "$MYSQL_PORT" --connect-timeout=2 -u "$DB_USER" ping </dev/null 2>&1 9>&-)" && return 0
    case "$out" in
        *"is not allowed to connect"* | *"Access denied"*) return 0 ;;
    esac
    return 1
}

# $1: pid of the mariadbd we just spawned (our child; until it has exec'd,
# its command name is still bash/setsid, so only check that it is alive).
wait_my() {
    local pid="$1" deadline=$((SECONDS + TIMEOUT))
    until my_ping; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true # reap it
            if grep -q 'Address already in use\|Do you already have another' "$MY_LOG" 2>/dev/null; then
                log "MariaDB could not bind port $MYSQL_PORT"
                return 2
            fi
            tail_log "$MY_LOG"
            die "MariaDB exited while starting on 127.0.0.1:$MYSQL_PORT (log $MY_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$MY_LOG"
            die "MariaDB not accepting connections on 127.0.0.1:$MYSQL_PORT after ${TIMEOUT}s (log $MY_LOG)"
        fi
        sleep 0.2
    done
}

my_stop() {
    local pid
    pid="$(my_pid)" || return 0
    # SIGTERM is mariadbd's clean shutdown (same as mariadb-admin shutdown),
    # and needs no credentials.
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" mariadbd 60; then
        log "MariaDB (pid $pid) ignored SIGTERM for 60s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" mariadbd 10 || die "MariaDB (pid $pid) did not stop"
    fi
    rm -f "$MY_LAUNCH_PID"
}

my_setup() {
    local out sql
    sql="
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4;
DELETE FROM mysql.global_priv WHERE User = '';
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
FLUSH PRIVILEGES;"
    if ! out="$(printf '%s\n' "$sql" | mariadb --defaults-file="$MY_CNF" --protocol=socket \
        -u "$(id -un)" --connect-timeout=10 2>&1 9>&-)"; then
        printf '%s\n' "$out" >&2
        die "MariaDB: creating user $DB_USER and database $DB_NAME over $MY_SOCK failed"
    fi
}

# ---------------------------------------------------------------- shared

# Wait until pid $1 (command $2) is gone; $3 seconds at most.
wait_gone() {
    local pid="$1" comm="$2" deadline=$((SECONDS + $3))
    while pid_is "$pid" "$comm"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.1
    done
    return 0
}

# Pids of any process whose command line names one of our data dirs: catches
# servers whose pid file is gone (crashed `up`, deleted files).
# (Builtins only: this loops over every process.)
stray_pids() {
    local d comm args
    for d in /proc/[0-9]*; do
        { read -r comm <"$d/comm"; } 2>/dev/null || continue
        [[ "$comm" == postgres || "$comm" == mariadbd ]] || continue
        pid_is "${d#/proc/}" "$comm" || continue # zombie
        { mapfile -d '' -t args <"$d/cmdline"; } 2>/dev/null || continue
        case " ${args[*]} " in
            *" -D $PGDATA "* | *" --defaults-file=$MY_CNF "*) echo "${d#/proc/}" ;;
        esac
    done
}

stop_all() {
    [[ -n "$PG_BIN" ]] || PG_BIN="$(find_pg_bin || true)"
    local p strays
    if [[ -n "$PG_BIN" ]] && p="$(pg_pid)"; then
        log "stopping PostgreSQL (pid $p)"
        STOPPED_PIDS+=("$p")
        pg_stop
    fi
    if p="$(my_pid)"; then
        log "stopping MariaDB (pid $p)"
        STOPPED_PIDS+=("$p")
        my_stop
    fi
    strays="$(stray_pids)"
    if [[ -n "$strays" ]]; then
        for p in $strays; do
            STOPPED_PIDS+=("$p")
            log "killing leftover server process $p"
            kill -TERM "$p" 2>/dev/null || true
        done
        for p in $strays; do
            wait_gone "$p" postgres 15 && wait_gone "$p" mariadbd 15 || kill -KILL "$p" 2>/dev/null || true
        done
    fi
}

# Delete the base dir, but only if it is ours (marker file) or empty.
remove_dir() {
    [[ -e "$DB_DIR" ]] || return 0
    if [[ -f "$MARKER" ]]; then
        rm -rf -- "$DB_DIR"
    elif rmdir -- "$DB_DIR" 2>/dev/null; then
        :
    else
        die "$DB_DIR exists but was not created by $PROG (no $MARKER); refusing to delete it"
    fi
}

# ---------------------------------------------------------------- commands

cmd_up() {
    take_lock
    ensure_packages

    if [[ -f "$STATE" ]]; then
        load_state
        if pg_running && my_running; then
            log "already up (PostgreSQL pid $(pg_pid), MariaDB pid $(my_pid))"
            export_lines
            return 0
        fi
        # A server was stopped (stop-postgres / stop-mysql, or a reboot):
        # start it again on its data dir.
        [[ -f "$PGDATA/PG_VERSION" && -d "$MYDATA/mysql" ]] \
            || die "$DB_DIR is incomplete; run '$PROG down' then '$PROG up'"
        pg_running || { log "starting PostgreSQL"; pg_start || die "PostgreSQL port $PG_PORT is taken"; }
        my_running || { log "starting MariaDB"; my_start || die "MariaDB port $MYSQL_PORT is taken"; }
        export_lines
        return 0
    fi

    # Fresh start.  Clean up leftovers of a failed or interrupted `up`.
    if [[ -e "$DB_DIR" ]]; then
        stop_all
        remove_dir
    fi

    local fixed_pg="${MLFLOW_SECRETS_PG_PORT:-}" fixed_my="${MLFLOW_SECRETS_MYSQL_PORT:-}"
    [[ -n "$fixed_pg" ]] && check_port_value MLFLOW_SECRETS_PG_PORT "$fixed_pg"
    [[ -n "$fixed_my" ]] && check_port_value MLFLOW_SECRETS_MYSQL_PORT "$fixed_my"
    [[ -n "$fixed_pg" && "$fixed_pg" == "$fixed_my" ]] \
        && die "MLFLOW_SECRETS_PG_PORT and MLFLOW_SECRETS_MYSQL_PORT are both $fixed_pg"

    [[ -n "$fixed_pg" ]] && port_in_use "$fixed_pg" listen \
        && die "MLFLOW_SECRETS_PG_PORT=$fixed_pg: port already in use on this machine"
    [[ -n "$fixed_my" ]] && port_in_use "$fixed_my" listen \
        && die "MLFLOW_SECRETS_MYSQL_PORT=$fixed_my: port already in use on this machine"

    PG_BIN="$(find_pg_bin)"
    DB_PASSWORD="$(random_hex)"
    PG_PORT="${fixed_pg:-$(pick_port)}"
    MYSQL_PORT="${fixed_my:-$(pick_port "$PG_PORT")}"

    # Unix sockets have a 107-byte path limit.
    ((${#RUN} + 20 < 107)) || die "MLFLOW_SECRETS_DB_DIR '$DB_DIR' is too long for unix socket paths"
    { mkdir -p "$DB_DIR" && chmod 755 "$DB_DIR" && : >"$MARKER" && mkdir -p "$RUN" && chmod 755 "$RUN"; } \
        || die "cannot create $DB_DIR"
    if is_root; then
        chown postgres: "$RUN" || die "cannot chown $RUN to the postgres user"
        if ! runuser -u postgres -- test -w "$RUN"; then
            remove_dir
            die "the postgres OS user cannot write $RUN; choose an MLFLOW_SECRETS_DB_DIR it can reach (e.g. under /tmp)"
        fi
    fi

    # If anything below fails, stop what we started (logs stay in $RUN).
    # (Not keyed on $?: when a signal kills us, $? here is not reliable.)
    trap '[[ -z "$PG_INIT_PID" ]] || kill "$PG_INIT_PID" 2>/dev/null || true
          stop_all >>"$RUN/abort.log" 2>&1 || true' EXIT

    # initdb and mariadb-install-db are independent: run them in parallel.
    log "initialising PostgreSQL and MariaDB data dirs in $DB_DIR"
    local rc=0
    pg_init &
    PG_INIT_PID=$!
    my_init
    wait "$PG_INIT_PID" || rc=$?
    PG_INIT_PID=""
    ((rc == 0)) || exit "$rc"

    local attempt
    for attempt in 1 2 3 4 5; do
        rc=0
        pg_start || rc=$?
        ((rc == 0)) && break
        [[ -z "$fixed_pg" && "$attempt" -lt 5 ]] \
            || die "PostgreSQL could not listen on 127.0.0.1:$PG_PORT (port in use; log $PG_LOG)"
        PG_PORT="$(pick_port "$MYSQL_PORT")"
        log "retrying PostgreSQL on port $PG_PORT"
        pg_write_conf
    done
    for attempt in 1 2 3 4 5; do
        rc=0
        my_start || rc=$?
        ((rc == 0)) && break
        [[ -z "$fixed_my" && "$attempt" -lt 5 ]] \
            || die "MariaDB could not listen on 127.0.0.1:$MYSQL_PORT (port in use; log $MY_LOG)"
        MYSQL_PORT="$(pick_port "$PG_PORT")"
        log "retrying MariaDB on port $MYSQL_PORT"
        my_write_conf
    done

    pg_setup
    my_setup
    write_state
    trap - EXIT
    log "up: PostgreSQL on 127.0.0.1:$PG_PORT, MariaDB on 127.0.0.1:$MYSQL_PORT (logs in $RUN, env in $ENV_FILE)"
    export_lines
}

cmd_env() {
    load_state || die "not up ($STATE missing); run '$PROG up'"
    PG_BIN="${PG_BIN:-$(find_pg_bin || true)}"
    pg_running || log "warning: PostgreSQL is stopped"
    my_running || log "warning: MariaDB is stopped"
    export_lines
}

cmd_status() {
    load_state || die "not up ($STATE missing)"
    if pg_running; then log "PostgreSQL running, pid $(pg_pid), 127.0.0.1:$PG_PORT"; else log "PostgreSQL stopped (port $PG_PORT)"; fi
    if my_running; then log "MariaDB running, pid $(my_pid), 127.0.0.1:$MYSQL_PORT"; else log "MariaDB stopped (port $MYSQL_PORT)"; fi
    if pg_running && my_running; then return 0; fi
    exit 1
}

cmd_down() {
    take_lock
    [[ -f "$STATE" ]] && load_state
    stop_all
    local left p deadline=$((SECONDS + 5))
    left="$(stray_pids)"
    [[ -z "$left" ]] || die "server processes still running after stop: $left"
    # The stopped servers are zombies until init reaps them (slow in some
    # containers); wait a little so that `pgrep` right after `down` is clean.
    for p in "${STOPPED_PIDS[@]}"; do
        while [[ -e "/proc/$p" ]] && ((SECONDS < deadline)); do sleep 0.1; done
    done
    if [[ -e "$DB_DIR" ]]; then
        remove_dir
        log "down: servers stopped, $DB_DIR removed"
    else
        log "down: nothing to do ($DB_DIR does not exist)"
    fi
}

cmd_stop_one() {
    take_lock
    load_state || die "not up ($STATE missing); nothing to stop"
    case "$1" in
        postgres) if pg_running; then pg_stop; log "PostgreSQL stopped"; else log "PostgreSQL already stopped"; fi ;;
        mysql) if my_running; then my_stop; log "MariaDB stopped"; else log "MariaDB already stopped"; fi ;;
    esac
}

cmd_start_one() {
    take_lock
    load_state || die "not up ($STATE missing); run '$PROG up' first"
    case "$1" in
        postgres)
            [[ -f "$PGDATA/PG_VERSION" ]] || die "no PostgreSQL data dir in $PGDATA; run '$PROG down' then '$PROG up'"
            pg_start || die "PostgreSQL cannot start: port $PG_PORT on 127.0.0.1 is taken by another process"
            log "PostgreSQL running on 127.0.0.1:$PG_PORT"
            ;;
        mysql)
            [[ -d "$MYDATA/mysql" ]] || die "no MariaDB data dir in $MYDATA; run '$PROG down' then '$PROG up'"
            my_start || die "MariaDB cannot start: port $MYSQL_PORT on 127.0.0.1 is taken by another process"
            log "MariaDB running on 127.0.0.1:$MYSQL_PORT"
            ;;
    esac
}

main() {
    [[ $# -eq 1 ]] || { echo "$USAGE" >&2; exit 2; }
    # Absolute paths only: the postgres user must resolve them from anywhere.
    [[ "$DB_DIR" == /* ]] || die "MLFLOW_SECRETS_DB_DIR must be an absolute path, got '$DB_DIR'"
    [[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "MLFLOW_SECRETS_DB_TIMEOUT must be a number of seconds, got '$TIMEOUT'"
    # The postgres user may not be able to enter the caller's cwd (e.g. /root).
    cd /
    case "$1" in
        up) cmd_up ;;
        env) cmd_env ;;
        status) cmd_status ;;
        down) cmd_down ;;
        stop-postgres) cmd_stop_one postgres ;;
        start-postgres) cmd_start_one postgres ;;
        stop-mysql | stop-mariadb) cmd_stop_one mysql ;;
        start-mysql | start-mariadb) cmd_start_one mysql ;;
        -h | --help | help) echo "$USAGE" ;;
        *) echo "$USAGE" >&2; exit 2 ;;
    esac
}

main "$@"
