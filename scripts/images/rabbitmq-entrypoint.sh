#!/bin/sh
# Debian's rabbitmq-server behind the official image's variables: a configuration file from
# RABBITMQ_NODE_PORT and RABBITMQ_DEFAULT_USER, _PASS and _VHOST, with guest allowed from outside
# the container (by default RabbitMQ admits guest only over loopback).
set -eu
export RABBITMQ_CONFIG_FILE="$HOME/rabbitmq.conf"
cat >"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = ${RABBITMQ_NODE_PORT:-5672}
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}
loopback_users.guest = false
EOF
exec rabbitmq-server "$@"
