#!/usr/bin/env bash
# Refresh docs/screenshots/: start Berth (target/debug/berth) on a scratch data directory
# with a few projects, and let the portal's browser test (crates/berth/tests/portal/browser.py,
# headless Chromium) sign in and save its screenshots there. Needs .ci/install.sh's chromium,
# chromium-driver and selenium; build first (cargo build -p berth).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug/berth
[ -x "$BIN" ] || { echo "build first: cargo build -p berth" >&2; exit 1; }
TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASSWORD=Screenshot-Admin-1
BERTH_ADMIN_PASSWORD=$PASSWORD "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" >"$TMP/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
export BERTH_URL="http://127.0.0.1:$PORT" BERTH_USERNAME=admin BERTH_PASSWORD=$PASSWORD
for _ in $(seq 50); do curl -fso /dev/null "$BERTH_URL/v2/" -w '' 2>/dev/null && break; curl -so /dev/null "$BERTH_URL/v2/" && break; sleep 0.1; done
"$BIN" project create library --public >/dev/null
"$BIN" project create research-genomics >/dev/null
"$BIN" quota set research-genomics 10GiB >/dev/null
# A few images, pushed over the plain Distribution API.
python3 - "$BERTH_URL" "$PASSWORD" <<'PY'
import base64, hashlib, http.client, json, os, sys, urllib.parse
url, pw = urllib.parse.urlparse(sys.argv[1]), sys.argv[2]
auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{pw}".encode()).decode()}
def req(method, path, body=None, headers={}):
    c = http.client.HTTPConnection(url.hostname, url.port)
    c.request(method, path, body=body, headers={**auth, **headers})
    r = c.getresponse(); r.read()
    if r.status >= 300: raise SystemExit(f"{method} {path}: {r.status}")
def blob(repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data, {"Content-Type": "application/octet-stream"})
    return d, len(data)
for repo, tags in [("library/app", ["v1", "v2", "latest"]), ("library/nginx", ["1.27"]), ("research-genomics/bwa", ["0.7.17"])]:
    for tag in tags:
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"t": tag}}}).encode()
        (cd, cs), (ld, ls) = blob(repo, cfg), blob(repo, os.urandom(200_000))
        m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]}
        req("PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(m).encode(),
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
PY
# A real Debian image, scanned on push against the vendored advisories, when the tests'
# cached layout is there (crates/berth/tests/it/support.rs builds it with debootstrap).
LAYOUT=/var/cache/berth-test/debian-minbase
if [ -f "$LAYOUT/index.json" ]; then
    env -u BERTH_URL -u BERTH_USERNAME -u BERTH_PASSWORD "$BIN" vulndb import testdata/vulndb/osv --data-dir "$TMP/data" >/dev/null
    curl -fs -u "admin:$PASSWORD" -X PUT -H 'content-type: application/json' \
        -d '{"metadata":{"auto_scan":"true","auto_sbom_generation":"true"}}' "$BERTH_URL/api/v2.0/projects/library"
    skopeo --insecure-policy copy -q --dest-tls-verify=false --dest-creds "admin:$PASSWORD" \
        "oci:$LAYOUT:bookworm" "docker://127.0.0.1:$PORT/library/debian:bookworm"
    for _ in $(seq 100); do
        curl -fs -u "admin:$PASSWORD" "$BERTH_URL/api/v2.0/projects/library/repositories/debian/artifacts/bookworm?with_scan_overview=true" \
            | grep -q '"scan_status":"Success"' && break
        sleep 0.3
    done
fi
python3 crates/berth/tests/portal/browser.py --base "$BERTH_URL" --user admin --password "$PASSWORD" --shots docs/screenshots
rm -rf docs/screenshots/downloads   # the robot credentials the test downloaded
# The journeys (they save the retention preview as policy.png).
curl -fs -u "admin:$PASSWORD" -H 'content-type: application/json' \
    -d '{"username":"una","email":"una@example.org","realname":"Una Example","password":"Una-Passw0rd-1"}' \
    "$BERTH_URL/api/v2.0/users" >/dev/null
python3 crates/berth/tests/portal/browser.py --base "$BERTH_URL" --user admin --password "$PASSWORD" \
    --journeys --shots docs/screenshots
# Another registry (Debian's docker-registry): an endpoint, a proxy cache of it, and a
# replication policy that pushes there.
UP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$TMP/up"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$TMP/up/data" "$UP_PORT" >"$TMP/up/config.yml"
docker-registry serve "$TMP/up/config.yml" >"$TMP/up/log" 2>&1 &
UP_PID=$!
trap 'kill $PID $UP_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do curl -so /dev/null "http://127.0.0.1:$UP_PORT/v2/" && break; sleep 0.1; done
skopeo --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false --src-creds "admin:$PASSWORD" \
    "docker://127.0.0.1:$PORT/library/nginx:1.27" "docker://127.0.0.1:$UP_PORT/library/nginx:1.27"
"$BIN" registry create dr-site "http://127.0.0.1:$UP_PORT" --type docker-registry --description "Disaster-recovery site" >/dev/null
"$BIN" registry ping dr-site >/dev/null
curl -fs -u "admin:$PASSWORD" -H 'content-type: application/json' \
    -d '{"project_name":"dr-cache","registry_id":1,"metadata":{"public":"true"}}' "$BERTH_URL/api/v2.0/projects"
curl -fso /dev/null "$BERTH_URL/v2/dr-cache/library/nginx/manifests/1.27"
echo '{"name":"to-dr-site","description":"Releases of library","dest_registry":{"id":1},"trigger":{"type":"event_based"},"filters":[{"type":"name","value":"library/**"},{"type":"tag","value":"v*"}]}' \
    | "$BIN" replication create - >/dev/null
"$BIN" replication run to-dr-site >/dev/null
# More pages, each as a whole page.
python3 - "$BERTH_URL" "$PASSWORD" <<'PY'
import json, os, sys, time, urllib.request, base64
sys.path.insert(0, "crates/berth/tests/portal")
from browser import browser, sign_in
base, pw = sys.argv[1], sys.argv[2]
def api(path):
    r = urllib.request.Request(base + "/api/v2.0" + path, headers={
        "Authorization": "Basic " + base64.b64encode(f"admin:{pw}".encode()).decode()})
    return json.load(urllib.request.urlopen(r))
lib = api("/projects/library")["project_id"]
pages = [("configuration.png", f"/harbor/projects/{lib}/configuration"),
         ("logs.png", f"/harbor/projects/{lib}/logs"),
         ("users.png", "/harbor/users"),
         ("registries.png", "/harbor/registries"),
         ("replication.png", "/harbor/replications"),
         ("replication-run.png", "/harbor/replications/executions/1"),
         ("vulnerability.png", "/harbor/vulnerability")]
try:
    d = api("/projects/library/repositories/debian/artifacts/bookworm")["digest"]
    pages.insert(0, ("artifact-scanned.png", f"/harbor/projects/{lib}/repositories/debian/artifacts-tab/artifacts/{d}"))
except Exception:
    pass
d = browser(width=1280, height=900)
try:
    sign_in(d, base, "admin", pw)
    for name, path in pages:
        d.get(base + path)
        time.sleep(0.3)
        d.set_window_size(1280, min(max(d.execute_script("return document.body.scrollHeight") + 20, 700), 2400))
        d.save_screenshot(os.path.join("docs/screenshots", name))
finally:
    d.quit()
PY
