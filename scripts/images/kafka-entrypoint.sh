#!/bin/sh
# tansu (a Kafka-wire-compatible broker, memory storage) behind apache/kafka's variables: it
# listens on 9092 and tells clients the PLAINTEXT address of KAFKA_ADVERTISED_LISTENERS.
set -eu
advertised=localhost:9092
for listener in $(echo "${KAFKA_ADVERTISED_LISTENERS:-}" | tr ',' ' '); do
  case $listener in PLAINTEXT://*) advertised=${listener#PLAINTEXT://} ;; esac
done
exec tansu broker --listener-url tcp://0.0.0.0:9092 --advertised-listener-url "tcp://$advertised" \
  --storage-engine memory://tansu/ "$@"
