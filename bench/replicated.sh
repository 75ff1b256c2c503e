#!/usr/bin/env bash
# Berth on PostgreSQL + S3 (SeaweedFS) beside Berth embedded (filesystem + SQLite), with
# bench/load.py: A = PostgreSQL + S3, B = embedded. Starts its own PostgreSQL (private port,
# temp dir, as the postgres user) and SeaweedFS (`weed mini`, loopback, telemetry off), and
# stops them on exit. Extra arguments go to load.py (e.g. --quick, --rounds 3).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p berth" >&2; exit 1; }
T=$(mktemp -d /tmp/berth-rbench.XXXXXX); chown postgres "$T"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port); S3PORT=$(free_port)
cleanup() {
  runuser -u postgres -- pg_ctl -D "$T/pg" -m fast stop >/dev/null 2>&1 || true
  [ -n "${WEED:-}" ] && kill "$WEED" 2>/dev/null || true
  sleep 1; rm -rf "$T"
}
trap cleanup EXIT
runuser -u postgres -- initdb -D "$T/pg" -A trust -U postgres --locale=C -E UTF8 >/dev/null
runuser -u postgres -- pg_ctl -D "$T/pg" -o "-p $PGPORT -k $T -c listen_addresses=127.0.0.1" -l "$T/pg.log" -w start >/dev/null
cat > "$T/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"bench","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
ports=(); for n in master.port volume.port filer.port admin.port webdav.port s3.port.iceberg s3.port.lance metricsPort debug.port; do ports+=("-$n=$(free_port)"); done
weed mini -dir="$T/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -admin.ui=false -bucket=berth \
  -s3.port="$S3PORT" -s3.config="$T/s3.json" "${ports[@]}" > "$T/weed.log" 2>&1 &
WEED=$!
until curl -s -o /dev/null "http://127.0.0.1:$S3PORT/berth"; do sleep 0.2; done; sleep 1
n=0
# Each A server gets its own database and prefix.
cat > "$T/a.sh" <<SH
#!/bin/sh
db=b\$(date +%s%N)
psql -q -h 127.0.0.1 -p $PGPORT -U postgres -c "CREATE DATABASE \$db" postgres
cat > "\$2/berth.toml" <<TOML
[metadata]
backend = "postgres"
url = "postgres://postgres@127.0.0.1:$PGPORT/\$db"
[storage]
backend = "s3"
endpoint = "http://127.0.0.1:$S3PORT"
bucket = "berth"
prefix = "\$db"
access_key_id = "bench"
secret_access_key = "benchsecret"
TOML
exec $PWD/$BIN serve --listen 127.0.0.1:\$1 --data-dir "\$2" --config "\$2/berth.toml"
SH
chmod +x "$T/a.sh"
python3 bench/load.py \
  --a-cmd "$T/a.sh {port} {data_dir}" \
  --b-cmd "$PWD/$BIN serve --listen 127.0.0.1:{port} --data-dir {data_dir}" \
  "$@"
