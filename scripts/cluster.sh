#!/usr/bin/env bash
# Brings a three-node RabbitMQ cluster up on this machine, or tears it
# down: two more nodes beside the default rabbit@localhost (127.0.0.1:5672),
# each with its own node name, AMQP port, distribution port, data, log and
# configuration, joined to the default node.
#
#   scripts/cluster.sh up      # start rabbit2 (5673) and rabbit3 (5674), join them
#   scripts/cluster.sh down    # stop_app, reset, stop each; forget it on the default node
#   scripts/cluster.sh status  # cluster_status of the default node
#
# Run as root (the nodes run as the rabbitmq user, like the default one)
# or as the rabbitmq user. WARREN_CLUSTER_DIR (default /tmp/warren-cluster)
# holds the extra nodes' files; `down` removes it.
set -euo pipefail

base=${WARREN_CLUSTER_DIR:-/tmp/warren-cluster}
main=rabbit@localhost
# name amqp-port dist-port
nodes=("rabbit2@localhost 5673 25673" "rabbit3@localhost 5674 25674")

as_rabbitmq() {
  if [ "$(id -u)" = "$(id -u rabbitmq)" ]; then
    env "$@"
  else
    # su's shell sees the variables through env, in one quoted command line.
    su rabbitmq -s /bin/sh -c "$(printf '%q ' env "$@")"
  fi
}

ctl() { rabbitmqctl "$@"; }

up() {
  mkdir -p "$base"
  chown rabbitmq:rabbitmq "$base" 2>/dev/null || true
  for spec in "${nodes[@]}"; do
    read -r name port dist <<<"$spec"
    dir="$base/${name%@*}"
    if ctl -n "$name" ping >/dev/null 2>&1; then
      echo "$name is already running"
      continue
    fi
    mkdir -p "$dir/mnesia" "$dir/log"
    # The machine's rabbitmq.conf pins the listener to 5672: each node
    # gets its own file naming its own port.
    printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$port" >"$dir/rabbitmq.conf"
    echo '[].' >"$dir/enabled_plugins.erl"
    chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
    echo "starting $name on 127.0.0.1:$port (distribution port $dist)"
    as_rabbitmq HOME=/var/lib/rabbitmq \
      RABBITMQ_NODENAME="$name" RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" \
      RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
      RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins.erl" \
      /usr/lib/rabbitmq/bin/rabbitmq-server -detached
  done
  for spec in "${nodes[@]}"; do
    read -r name port dist <<<"$spec"
    dir="$base/${name%@*}"
    for _ in $(seq 1 60); do
      [ -s "$dir/pid" ] && break
      sleep 1
    done
    ctl -n "$name" wait --timeout 120 "$dir/pid" >/dev/null
    if ctl -n "$name" cluster_status 2>/dev/null | grep -q "$main"; then
      echo "$name is already in the cluster"
      continue
    fi
    ctl -n "$name" stop_app >/dev/null
    ctl -n "$name" join_cluster "$main" >/dev/null
    ctl -n "$name" start_app >/dev/null
    ctl -n "$name" await_startup >/dev/null
    echo "$name joined $main"
  done
}

down() {
  for spec in "${nodes[@]}"; do
    read -r name port dist <<<"$spec"
    if ctl -n "$name" ping >/dev/null 2>&1; then
      ctl -n "$name" stop_app >/dev/null 2>&1 || true
      ctl -n "$name" reset >/dev/null 2>&1 || true
      ctl -n "$name" stop >/dev/null 2>&1 || true
      echo "$name stopped and reset"
    fi
    ctl -n "$main" forget_cluster_node "$name" >/dev/null 2>&1 || true
  done
  rm -rf "$base"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) ctl -n "$main" cluster_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
