#!/usr/bin/env bash
# Runs a command with a private moto server (DynamoDB, EventBridge, SQS) on a free loopback
# port, and stops it afterwards whatever happens. The AWS SDK finds it through the standard
# endpoint variables, so the code under test has no test branches.
#
# usage: tests/support/with-moto.sh COMMAND [ARGS...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
moto="$root/.venv/bin/moto_server"
[ -x "$moto" ] || { echo "with-moto: $moto missing; run 'make venv'" >&2; exit 2; }

port="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t moto.XXXXXX.log)"
"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
cleanup() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  if "$root/.venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "with-moto: moto failed to start:" >&2; cat "$log" >&2; exit 2; fi
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
echo "with-moto: moto server on $AWS_ENDPOINT_URL (pid $moto_pid)"
"$@"
