#!/usr/bin/env bash
# Helpers for the benches that start an HTTP server on 127.0.0.1 and measure it with
# `llmbench http`: a free port, and waiting until the server answers /health.
#   source benches/local_server.sh; PORT=$(free_port); ...; wait_healthy "$PORT"
free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# Waits up to two minutes for http://127.0.0.1:PORT/health to answer.
wait_healthy() {
  for _ in $(seq 1 600); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/health')" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "the server on port $1 never became healthy" >&2
  return 1
}
