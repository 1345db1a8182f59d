#!/usr/bin/env bash
# Checks docs/openapi.yaml against the real server: starts the latchkey binary
# on a database with a seeded user (test_user / test_password) and a personal
# access token, and runs schemathesis over every operation with the checks
# not_a_server_error and response_schema_conformance. The cases take turns
# with no credentials, a fresh session and the token (docs/openapi_hooks.py).
# A second user (factor_user), given an authenticator app by the hooks,
# provides the logins that wait for a second factor.
#
#   docs/check-openapi.sh [--release] [DATABASE_URL]
#
# Without DATABASE_URL: a fresh SQLite database in a temporary directory.
# With a postgres:// URL: that database, which must hold no user test_user
# or factor_user (give it an empty one: CREATE DATABASE ...). The server runs from a
# temporary directory (no .env of yours is read) with only the variables set
# here.
#
# Environment:
#   LATCHKEY_BIN          the binary to run (default: target/debug/latchkey,
#                         or target/release/latchkey with --release; built
#                         with cargo if missing or stale)
#   SCHEMATHESIS          the schemathesis command (default: a venv in
#                         /tmp/latchkey-openapi-venv, made on first use)
#   OPENAPI_MAX_EXAMPLES  cases per operation and phase (default 50)
#   OPENAPI_SEED          the generator's seed (default 1: a repeatable run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SCHEMATHESIS_VERSION=4.32.5

profile=debug
if [ "${1:-}" = "--release" ]; then
    profile=release
    shift
fi
database_url=${1:-}
if [ $# -gt 1 ]; then
    echo "usage: docs/check-openapi.sh [--release] [DATABASE_URL]" >&2
    exit 2
fi
case "$database_url" in
    "" | postgres://* | postgresql://*) ;;
    *) echo "DATABASE_URL: a postgres:// URL, or nothing for a fresh SQLite database" >&2; exit 2 ;;
esac

bin=${LATCHKEY_BIN:-}
max_examples=${OPENAPI_MAX_EXAMPLES:-50}
seed=${OPENAPI_SEED:-1}
schemathesis=${SCHEMATHESIS:-}
# Nothing of the caller's configuration reaches the server.
for var in $(compgen -e); do
    case "$var" in LATCHKEY_* | DATABASE_URL | RUST_LOG | RUST_BACKTRACE | RUST_LIB_BACKTRACE) unset "$var" ;; esac
done

if [ -z "$bin" ]; then
    target=${CARGO_TARGET_DIR:-$root/target}
    bin=$target/$profile/latchkey
    flags=(--locked --bin latchkey)
    [ "$profile" = release ] && flags+=(--release)
    cargo build --quiet "${flags[@]}"
fi
[ -x "$bin" ] || { echo "no latchkey binary at $bin" >&2; exit 1; }

if [ -z "$schemathesis" ]; then
    venv=/tmp/latchkey-openapi-venv
    if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    schemathesis=$venv/bin/schemathesis
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export LATCHKEY_ADDR=127.0.0.1:$port
# Cheap hashes (a debug binary hashes slowly); the hook's logins come through
# a trusted proxy (see docs/openapi_hooks.py).
export LATCHKEY_BCRYPT_COST=4
export LATCHKEY_TRUSTED_PROXIES=127.0.0.1
export RUST_LOG=warn
if [ -n "$database_url" ]; then
    export DATABASE_URL=$database_url
    backend=postgres
    # Required on PostgreSQL; SQLite on loopback makes its own.
    LATCHKEY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(64))')
    export LATCHKEY_SECRET_KEY
else
    export DATABASE_URL=sqlite://$work/latchkey.db
    backend=sqlite
fi

cd "$work"
if ! printf 'test_password\n' | "$bin" user add test_user --password-stdin >/dev/null 2>"$work/seed.err"; then
    cat "$work/seed.err" >&2
    grep -q 'already exists' "$work/seed.err" \
        && echo "give the check an empty database: it seeds test_user itself" >&2
    exit 1
fi
factor_password=second-factor-passphrase
if ! printf '%s\n' "$factor_password" | "$bin" user add factor_user --password-stdin >/dev/null 2>"$work/seed.err"; then
    cat "$work/seed.err" >&2
    exit 1
fi
token=$("$bin" token create test_user --name openapi-check 2>"$work/token.err") \
    || { cat "$work/token.err" >&2; exit 1; }

"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$url/healthz" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null "$url/readyz"

echo "schemathesis $("$schemathesis" --version | awk '{print $NF}') against $bin on $backend ($url)"
# One worker: with more, Python 3.11 may fail inside hypothesis ("AST
# constructor recursion depth mismatch", a CPython threading bug), not in latchkey.
st_status=0
LATCHKEY_CHECK_URL=$url \
LATCHKEY_CHECK_USERNAME=test_user \
LATCHKEY_CHECK_PASSWORD=test_password \
LATCHKEY_CHECK_TOKEN=$token \
LATCHKEY_CHECK_FACTOR_USERNAME=factor_user \
LATCHKEY_CHECK_FACTOR_PASSWORD=$factor_password \
SCHEMATHESIS_HOOKS=$root/docs/openapi_hooks.py \
    "$schemathesis" run "$root/docs/openapi.yaml" --url "$url" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "$max_examples" --seed "$seed" \
    --workers 1 --generation-database none --no-color \
    || st_status=$?

# The server's warnings and errors, but for the forged cookies schemathesis sends.
grep ' WARN \| ERROR \|panicked' "$work/server.log" \
    | grep -v 'failed to pass cryptographic checks' >"$work/server.notes" || true
if [ -s "$work/server.notes" ]; then
    echo "--- server log ($backend), forged-cookie warnings left out" >&2
    tail -n 100 "$work/server.notes" >&2
fi
exit "$st_status"
