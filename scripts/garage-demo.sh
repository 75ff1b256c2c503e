#!/usr/bin/env bash
# Three Garage nodes + three Berth replicas on 127.0.0.x, one PostgreSQL, pushes round-robin;
# one Garage node and one Berth replica are SIGKILLed during the pushes; every acknowledged image
# is then pulled back through the survivors and verified byte for byte.
#
#   cargo install garage --locked --root /opt/berth-ci/garage   # ~25 min on 2 cores (AGPL)
#   cargo build --release -p berth
#   bash scripts/garage-demo.sh
#
# Needs root (PostgreSQL runs as the postgres user), skopeo, python3. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
GARAGE=${GARAGE:-$(command -v garage || echo /opt/berth-ci/garage/bin/garage)}
BERTH=${BERTH_BIN:-$PWD/target/release/berth}
[ -x "$GARAGE" ] || { echo "no garage binary (set GARAGE=...)" >&2; exit 1; }
[ -x "$BERTH" ] || { echo "build berth first: cargo build --release -p berth" >&2; exit 1; }
T=$(mktemp -d /tmp/berth-garage-demo.XXXXXX); chown postgres "$T"
PIDS=()
log() { printf '[demo %s] %s\n' "$(date +%T)" "$*"; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  runuser -u postgres -- pg_ctl -D "$T/pg" -m fast stop >/dev/null 2>&1 || true
  sleep 1; rm -rf "$T"
}
trap cleanup EXIT

log "PostgreSQL for metadata"
runuser -u postgres -- initdb -D "$T/pg" -A trust -U postgres --locale=C -E UTF8 >/dev/null
runuser -u postgres -- pg_ctl -D "$T/pg" -o "-p 55432 -k $T -c listen_addresses=127.0.0.1" -l "$T/pg.log" -w start >/dev/null
psql -q -h 127.0.0.1 -p 55432 -U postgres -c "CREATE DATABASE berth" postgres

log "three Garage nodes, replication factor 3"
SECRET=$(openssl rand -hex 32)
for i in 1 2 3; do
  mkdir -p "$T/g$i"
  cat > "$T/g$i/garage.toml" <<TOML
metadata_dir = "$T/g$i/meta"
data_dir = "$T/g$i/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1$i:3901"
rpc_public_addr = "127.0.0.1$i:3901"
rpc_secret = "$SECRET"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1$i:3900"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1$i:3903"
TOML
  "$GARAGE" -c "$T/g$i/garage.toml" server > "$T/g$i/log" 2>&1 &
  PIDS+=($!); eval "G$i=$!"
done
g() { "$GARAGE" -c "$T/g1/garage.toml" "$@"; }
for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
IDS=()
for i in 1 2 3; do IDS+=("$("$GARAGE" -c "$T/g$i/garage.toml" node id -q 2>/dev/null)"); done
for id in "${IDS[@]:1}"; do g node connect "$id" >/dev/null; done
for id in "${IDS[@]}"; do g layout assign -z dc1 -c 1G "${id%@*}" >/dev/null; done
g layout apply --version 1 >/dev/null
KEY_ID=GK$(openssl rand -hex 12); KEY_SECRET=$(openssl rand -hex 32)
g key import "$KEY_ID" "$KEY_SECRET" -n berth --yes >/dev/null
g bucket create berth >/dev/null
g bucket allow --read --write --owner berth --key berth >/dev/null
g status | sed 's/^/    /'

log "three Berth replicas on 127.0.0.21-23, each using its own Garage node"
for i in 1 2 3; do
  mkdir -p "$T/b$i"
  cat > "$T/b$i/berth.toml" <<TOML
listen = "127.0.0.2$i:5000"
log_format = "json"
[metadata]
backend = "postgres"
url = "postgres://postgres@127.0.0.1:55432/berth"
[storage]
backend = "s3"
endpoint = "http://127.0.0.1$i:3900"
region = "garage"
bucket = "berth"
path_style = true
TOML
  BERTH_STORAGE_ACCESS_KEY_ID=$KEY_ID BERTH_STORAGE_SECRET_ACCESS_KEY=$KEY_SECRET \
  BERTH_ADMIN_PASSWORD=Demo-Admin-Pw-1 BERTH_AUTH_CREATE_PROJECTS_ON_PUSH=true \
    "$BERTH" serve --config "$T/b$i/berth.toml" --data-dir "$T/b$i/data" > "$T/b$i/log" 2>&1 &
  PIDS+=($!); eval "B$i=$!"
done
for i in 1 2 3; do until curl -fs "http://127.0.0.2$i:5000/v2/" >/dev/null; do sleep 0.2; done; done

log "pushing round-robin; killing Garage node 3 and Berth replica 3 half-way"
cat > "$T/push.py" <<'PY'
import hashlib, http.client, json, os, sys, threading, time
replicas = ["127.0.0.21:5000", "127.0.0.22:5000", "127.0.0.23:5000"]
acked, lock = [], threading.Lock()
AUTH = {"Authorization": "Basic " + __import__("base64").b64encode(b"admin:Demo-Admin-Pw-1").decode()}
def req(host, method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, timeout=30)
    c.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    r = c.getresponse(); data = r.read(); c.close(); return r, data
def push_blob(host, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r, _ = req(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data)
    if r.status != 201: raise RuntimeError(f"blob {r.status}")
    return d
def worker(w, n):
    for i in range(n):
        host = replicas[(w + i) % len(replicas)]
        try:
            cfg = json.dumps({"architecture": "amd64", "os": "linux", "n": f"{w}-{i}"}).encode()
            layer = os.urandom(3 * 1024 * 1024 + i)
            cd, ld = push_blob(host, "demo/app", cfg), push_blob(host, "demo/app", layer)
            m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(layer)}]}).encode()
            r, _ = req(host, "PUT", f"/v2/demo/app/manifests/w{w}-{i}", m, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            if r.status == 201:
                with lock: acked.append((f"w{w}-{i}", "sha256:" + hashlib.sha256(m).hexdigest()))
        except Exception as e:
            pass  # a push through the killed replica fails; it was never acknowledged
ts = [threading.Thread(target=worker, args=(w, int(sys.argv[1]))) for w in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
json.dump(acked, open(sys.argv[2], "w"))
print(f"acknowledged {len(acked)} images")
PY
python3 "$T/push.py" 12 "$T/acked.json" &
PUSH=$!
sleep 4
kill -9 "$G3" "$B3"; log "SIGKILLed Garage node 3 (pid $G3) and Berth replica 3 (pid $B3)"
wait "$PUSH"

log "verifying every acknowledged image through both surviving replicas"
python3 - "$T/acked.json" <<'PY'
import hashlib, http.client, json, sys
acked = json.load(open(sys.argv[1]))
assert acked, "nothing was acknowledged"
for host in ["127.0.0.21:5000", "127.0.0.22:5000"]:
    for tag, digest in acked:
        c = http.client.HTTPConnection(host, timeout=60)
        c.request("GET", f"/v2/demo/app/manifests/{tag}", headers={**AUTH, "Accept": "application/vnd.oci.image.manifest.v1+json"})
        r = c.getresponse(); m = r.read()
        assert r.status == 200 and "sha256:" + hashlib.sha256(m).hexdigest() == digest, (host, tag, r.status)
        for l in json.loads(m)["layers"]:
            c.request("GET", f"/v2/demo/app/blobs/{l['digest']}", headers=AUTH); r = c.getresponse(); b = r.read()
            assert r.status == 200 and "sha256:" + hashlib.sha256(b).hexdigest() == l["digest"], (host, tag)
print(f"all {len(acked)} acknowledged images intact through both survivors")
PY

log "skopeo across the surviving replicas"
mkdir -p "$T/root/etc" && echo "garage demo" > "$T/root/etc/demo"
bash scripts/mkoci.sh "$T/root" "$T/oci" v1 >/dev/null
skopeo --insecure-policy copy -q --dest-creds admin:Demo-Admin-Pw-1 --dest-tls-verify=false "oci:$T/oci:v1" docker://127.0.0.21:5000/demo/skopeo:v1
skopeo --insecure-policy copy -q --src-creds admin:Demo-Admin-Pw-1 --src-tls-verify=false docker://127.0.0.22:5000/demo/skopeo:v1 "oci:$T/back:v1"
log "done: pushes survived losing one Garage node and one Berth replica"
