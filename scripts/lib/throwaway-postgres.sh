# Sourced by scripts/test and scripts/bench-intake: a throwaway PostgreSQL
# cluster in a temporary directory on a free port of 127.0.0.1.
#
#   source scripts/lib/throwaway-postgres.sh
#   start_throwaway_postgres    # sets PG_URL (superuser postgres, trust auth)
#   stop_throwaway_postgres     # stops it and removes its directory (idempotent)
#
# It finds the server binaries (pg_ctl/initdb on PATH, else the newest
# /usr/lib/postgresql/*/bin; as root it installs the `postgresql` package when
# there are none), and runs the cluster as an unprivileged user when run as
# root (initdb refuses root). The caller defines `say` and `die`.

PG_TMP_DIR=
PG_URL=

find_pg_bin() {
    local initdb_path
    if command -v pg_ctl >/dev/null && initdb_path=$(command -v initdb); then
        dirname "$(readlink -f "$initdb_path")"
        return 0
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -n "$dir" && -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
        echo "$dir"
        return 0
    fi
    return 1
}

pg_as_owner() { (cd "$PG_TMP_DIR" && "${PG_RUN_AS[@]}" "$@"); }

start_throwaway_postgres() {
    if ! PG_BIN=$(find_pg_bin); then
        [[ $EUID -eq 0 ]] || die "no PostgreSQL server binaries found (pg_ctl, initdb); install the postgresql package"
        say "no PostgreSQL server binaries found: apt-get install -y postgresql"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
        PG_BIN=$(find_pg_bin) || die "postgresql is installed but pg_ctl/initdb are still missing"
    fi
    say "using PostgreSQL binaries in $PG_BIN ($("$PG_BIN/postgres" --version))"

    PG_RUN_AS=()
    if [[ $EUID -eq 0 ]]; then
        if id -u postgres >/dev/null 2>&1; then
            PG_OS_USER=postgres
        else
            PG_OS_USER=nobody
        fi
        PG_RUN_AS=(runuser -u "$PG_OS_USER" --)
        say "running as root: the cluster runs as OS user $PG_OS_USER"
    fi

    PG_TMP_DIR=$(mktemp -d -t hookwise-pg.XXXXXX)
    PG_DATA_DIR="$PG_TMP_DIR/data"
    local socket_dir="$PG_TMP_DIR/socket" log_file="$PG_TMP_DIR/postgres.log"
    mkdir -p "$socket_dir"
    if [[ ${#PG_RUN_AS[@]} -gt 0 ]]; then
        chown -R "$PG_OS_USER" "$PG_TMP_DIR"
        pg_as_owner test -w "$PG_TMP_DIR" \
            || die "$PG_OS_USER cannot write to $PG_TMP_DIR (set TMPDIR to a world-traversable directory)"
    fi

    say "initdb: throwaway cluster in $PG_DATA_DIR (superuser postgres, trust auth)"
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA_DIR" -U postgres -A trust -E UTF8 --locale=C \
        >"$PG_TMP_DIR/initdb.log" 2>&1 || { cat "$PG_TMP_DIR/initdb.log" >&2; die "initdb failed"; }

    local port= candidate attempt
    for attempt in $(seq 1 20); do
        candidate=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
        say "starting PostgreSQL on 127.0.0.1:$candidate (socket dir $socket_dir)"
        rm -f "$log_file"
        if pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -l "$log_file" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $candidate -k '$socket_dir' -c max_connections=300" \
            start >/dev/null; then
            port=$candidate
            break
        fi
        if grep -qi "could not bind\|address already in use" "$log_file" 2>/dev/null; then
            say "port $candidate was taken (attempt $attempt), trying another"
            continue
        fi
        cat "$log_file" >&2 || true
        die "PostgreSQL did not start"
    done
    [[ -n "$port" ]] || die "found no free port for PostgreSQL"

    for _ in $(seq 1 60); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
        sleep 0.5
    done
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        || { cat "$log_file" >&2; die "PostgreSQL is not accepting connections"; }
    PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_throwaway_postgres() {
    [[ -n "$PG_TMP_DIR" ]] || return 0
    if [[ -f "$PG_DATA_DIR/postmaster.pid" ]]; then
        say "stopping the PostgreSQL cluster"
        pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -m immediate -w -t 10 stop >/dev/null 2>&1 \
            || say "warning: could not stop the cluster in $PG_DATA_DIR"
    fi
    say "removing $PG_TMP_DIR"
    rm -rf "$PG_TMP_DIR"
    PG_TMP_DIR=
}
