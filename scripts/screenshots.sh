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
"$BIN" project create climate-models >/dev/null
"$BIN" quota set research-genomics 10GiB >/dev/null
python3 crates/berth/tests/portal/browser.py --base "$BERTH_URL" --user admin --password "$PASSWORD" --shots docs/screenshots
