#!/usr/bin/env bash
# A throwaway cluster on loopback: PostgreSQL, three latchkey instances sharing
# it, and nginx in front of them, round-robin. X-Forwarded-For is set by nginx
# (never passed through from the client) and trusted only from nginx.
#
#   deploy/local-cluster.sh start   # prints the URL to use, e.g. http://127.0.0.1:8088
#   deploy/local-cluster.sh stop    # stops everything and removes its files
#
# Environment:
#   LATCHKEY_BIN          the binary (default: target/release/latchkey, built if missing)
#   LATCHKEY_CLUSTER_DIR  where everything lives (default: /tmp/latchkey-cluster)
#   LATCHKEY_CLUSTER_PORT nginx's port (default: a free one)
# After `start`, $LATCHKEY_CLUSTER_DIR/env holds DATABASE_URL, the instances'
# addresses, their metrics listeners' (never behind nginx) and nginx's URL,
# for `latchkey user add` and friends.
set -euo pipefail

dir=${LATCHKEY_CLUSTER_DIR:-/tmp/latchkey-cluster}
bin=${LATCHKEY_BIN:-target/release/latchkey}
instances=3

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() {
    local candidate
    for candidate in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" \
                     $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
            echo "$candidate"
            return
        fi
    done
    echo "PostgreSQL server binaries not found (install postgresql)" >&2
    exit 1
}

# initdb and pg_ctl refuse root: run them as postgres then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for() {
    local url=$1 tries=0
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 200 ]; then
            echo "no answer from $url" >&2
            exit 1
        fi
        sleep 0.1
    done
}

start() {
    command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx)" >&2; exit 1; }
    if [ ! -x "$bin" ]; then
        cargo build --release --quiet
    fi
    bin=$(realpath "$bin")
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"

    local pg pg_port
    pg=$(pg_bin)
    pg_port=$(free_port)
    as_pg "$pg/initdb" -D "$dir/pg" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
    as_pg "$pg/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w \
        -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE latchkey"
    local database_url="postgres://postgres@127.0.0.1:$pg_port/latchkey"
    # Every instance must share one key to read each other's cookies.
    local secret
    secret=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
    DATABASE_URL=$database_url "$bin" migrate >/dev/null

    local upstreams="" addresses="" metrics="" i port metrics_port
    for i in $(seq 1 "$instances"); do
        port=$(free_port)
        metrics_port=$(free_port)
        DATABASE_URL=$database_url \
        LATCHKEY_ADDR=127.0.0.1:$port \
        LATCHKEY_METRICS_ADDR=127.0.0.1:$metrics_port \
        LATCHKEY_SECRET_KEY=$secret \
        LATCHKEY_COOKIE_SECURE=false \
        LATCHKEY_TRUSTED_PROXIES=127.0.0.1 \
        LATCHKEY_BCRYPT_COST=${LATCHKEY_BCRYPT_COST:-12} \
        RUST_LOG=${RUST_LOG:-info} \
            nohup "$bin" serve >"$dir/instance-$i.log" 2>&1 &
        echo $! >"$dir/instance-$i.pid"
        upstreams="$upstreams        server 127.0.0.1:$port;"$'\n'
        addresses="$addresses http://127.0.0.1:$port"
        metrics="$metrics http://127.0.0.1:$metrics_port"
    done

    local port=${LATCHKEY_CLUSTER_PORT:-$(free_port)}
    cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/nginx-access.log;
    client_body_temp_path $dir/nginx-body;
    proxy_temp_path $dir/nginx-proxy;
    fastcgi_temp_path $dir/nginx-fastcgi;
    uwsgi_temp_path $dir/nginx-uwsgi;
    scgi_temp_path $dir/nginx-scgi;
    upstream latchkey {
$upstreams        keepalive 32;
    }
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 16k;
        location / {
            proxy_pass http://latchkey;
            # HTTP/1.1 with keep-alive to the instances (1.0 cannot send a bodiless POST).
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            # Replace, never append: the client cannot choose its address.
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
NGINX
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log"

    for address in $addresses; do
        wait_for "$address/readyz"
    done
    wait_for "http://127.0.0.1:$port/healthz"
    cat >"$dir/env" <<ENV
DATABASE_URL=$database_url
LATCHKEY_INSTANCES="${addresses# }"
LATCHKEY_METRICS="${metrics# }"
LATCHKEY_URL=http://127.0.0.1:$port
ENV
    echo "http://127.0.0.1:$port"
}

stop() {
    [ -d "$dir" ] || return 0
    if [ -f "$dir/nginx.pid" ]; then
        nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log" -s stop 2>/dev/null || true
    fi
    local pidfile
    for pidfile in "$dir"/instance-*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    if [ -d "$dir/pg" ]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
