#!/usr/bin/env bash
# Make sure the services the variant tests talk to are up, then print their URLs as
# `export NAME=value` lines on stdout (progress and errors go to stderr), so a caller can do
#
#     services_env=$(scripts/services.sh) && eval "$services_env"
#
# Usage: scripts/services.sh [SERVICE...]   SERVICE: postgres, redis, kafka, rabbitmq, nats
#        (default: postgres redis)
#
# PostgreSQL, Redis, RabbitMQ and NATS: a server that answers is left alone; one that is stopped is
# started with the same command the machine uses; one that is not installed is installed with
# apt-get first.
# Kafka: a fresh broker for each call, on a free port (see ensure_kafka), to be stopped by the caller.
# A URL already set in the environment (TEST_DATABASE_URL, TEST_REDIS_URL,
# TEST_KAFKA_BOOTSTRAP_SERVERS, TEST_RABBITMQ_URL, TEST_NATS_URL, as CI's service containers
# provide) is trusted as is: that
# service is not checked or started here.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PG_PORT=5432
readonly REDIS_PORT=6379
readonly RABBITMQ_PORT=5672
readonly NATS_PORT=4222
readonly WAIT_S=${SERVICES_WAIT_S:-60}

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
apt_install() {
  log "installing $* with apt-get"
  # apt-get fails at once on a lock another apt-get holds: runs of several checkouts take turns.
  exec 8>"${TMPDIR:-/tmp}/fastapi-outbox-template-apt.lock"
  flock 8
  if [[ $apt_updated == false ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    apt_updated=true
  fi
  # Package scripts may fail to start the service where there is no init system; we start it below.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
  exec 8>&-
}

# wait_for NAME COMMAND...: retry COMMAND once a second until it succeeds or WAIT_S runs out.
wait_for() {
  local name=$1 deadline=$((SECONDS + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$name is not ready after ${WAIT_S}s (checked with: $*)"
    sleep 1
  done
}

pg_ready() { pg_isready -q -h "$HOST" -p "$PG_PORT"; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  local installed=false version
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql postgresql-client
    installed=true
  fi
  version=$(pg_version) || true
  [[ -n $version ]] || die "no PostgreSQL cluster under /etc/postgresql"
  if [[ $installed == true ]]; then
    # A fresh cluster asks for a password over TCP; the tests connect as postgres without one.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' |
      as_root sh -c "cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba'"
  fi
  local rc=0
  pg_isready -q -h "$HOST" -p "$PG_PORT" || rc=$?
  case $rc in
    0)
      [[ $installed == false ]] || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >&2
      log "PostgreSQL is up on $HOST:$PG_PORT"
      ;;
    1) # still starting up
      wait_for PostgreSQL pg_ready
      log "PostgreSQL is up on $HOST:$PG_PORT"
      ;;
    *)
      log "starting PostgreSQL $version"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
      wait_for PostgreSQL pg_ready
      log "PostgreSQL started on $HOST:$PG_PORT"
      ;;
  esac
  psql -w -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null ||
    die "PostgreSQL on $HOST:$PG_PORT refuses user postgres without a password (needs trust auth)"
  TEST_DATABASE_URL="postgresql://postgres@$HOST:$PG_PORT/postgres"
}

redis_ready() { [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if redis_ready; then
    log "Redis is up on $HOST:$REDIS_PORT"
  else
    log "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
    wait_for Redis redis_ready
    log "Redis started on $HOST:$REDIS_PORT"
  fi
  TEST_REDIS_URL="redis://$HOST:$REDIS_PORT/0"
}

# A TCP connection and the AMQP greeting's answer ("AMQP" and a version): the broker accepts clients.
rabbitmq_ready() {
  python3 - "$HOST" "$RABBITMQ_PORT" <<'PY'
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as conn:
    conn.sendall(b"AMQP\x00\x00\x09\x01")
    sys.exit(0 if conn.recv(8) else 1)
PY
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if rabbitmq_ready; then
    log "RabbitMQ is up on $HOST:$RABBITMQ_PORT"
  else
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached >&2
    wait_for RabbitMQ rabbitmq_ready
    log "RabbitMQ started on $HOST:$RABBITMQ_PORT"
  fi
  # guest/guest, which RabbitMQ accepts on loopback only: the tests connect over 127.0.0.1.
  TEST_RABBITMQ_URL="amqp://guest:guest@$HOST:$RABBITMQ_PORT/"
}

# Port 4222 answers with the server's INFO line; JetStream is asked for at start (-js).
nats_ready() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$NATS_PORT && head -c 4 <&3" 2>/dev/null | grep -q INFO; }

ensure_nats() {
  [[ -x /usr/sbin/nats-server ]] || apt_install nats-server
  if nats_ready; then
    log "NATS is up on $HOST:$NATS_PORT"
  else
    log "starting NATS with JetStream"
    as_root mkdir -p /var/lib/nats-server
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a "$HOST" -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log >&2
    wait_for NATS nats_ready
    log "NATS started on $HOST:$NATS_PORT"
  fi
  TEST_NATS_URL="nats://$HOST:$NATS_PORT"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Kafka-compatible broker (tansu), for the kafka variant: scripts/kafka.sh owns it. Each call
# starts a broker of its own on a free port, printed as KAFKA_RUN_PORT for the caller to stop
# (`KAFKA_PORT=$KAFKA_RUN_PORT scripts/kafka.sh stop`): tansu keeps every topic and consumer group
# in memory for as long as it runs, and one that served earlier runs for hours can wedge a group.
ensure_kafka() {
  local kafka_sh port
  kafka_sh="$(dirname "${BASH_SOURCE[0]}")/kafka.sh"
  [[ -f $kafka_sh ]] || die "kafka was asked for but $kafka_sh does not exist"
  port=$(free_port)
  KAFKA_PORT=$port bash "$kafka_sh" start </dev/null >&2
  TEST_KAFKA_BOOTSTRAP_SERVERS=$HOST:$port
  printf 'export KAFKA_RUN_PORT=%s\n' "$port"
  # tansu has no idempotent producer. Say so rather than let each suite probe for it: the probe's
  # producer starts fine and fails only later, in the background, so it can guess wrong.
  printf 'export TEST_KAFKA_IDEMPOTENCE=false\n'
}

# ensure SERVICE VARIABLE: start SERVICE unless VARIABLE is preset, then print VARIABLE's export.
ensure() {
  local service=$1 var=$2
  if [[ -n ${!var:-} ]]; then
    log "$service: using $var from the environment"
  else
    "ensure_$service"
  fi
  printf 'export %s=%q\n' "$var" "${!var}"
}

TEST_DATABASE_URL=${TEST_DATABASE_URL:-}
TEST_REDIS_URL=${TEST_REDIS_URL:-}
TEST_KAFKA_BOOTSTRAP_SERVERS=${TEST_KAFKA_BOOTSTRAP_SERVERS:-}
TEST_RABBITMQ_URL=${TEST_RABBITMQ_URL:-}
TEST_NATS_URL=${TEST_NATS_URL:-}
(($# > 0)) || set -- postgres redis
for service in "$@"; do
  case $service in
    postgres) ensure postgres TEST_DATABASE_URL ;;
    redis) ensure redis TEST_REDIS_URL ;;
    kafka) ensure kafka TEST_KAFKA_BOOTSTRAP_SERVERS ;;
    rabbitmq) ensure rabbitmq TEST_RABBITMQ_URL ;;
    nats) ensure nats TEST_NATS_URL ;;
    *) die "unknown service '$service' (known: postgres, redis, kafka, rabbitmq, nats)" ;;
  esac
done
