#!/usr/bin/env python3
"""Scanner cost: the advisory index of the whole vendored pack, 1,000 scans, and the
re-evaluation of 1,000 stored inventories after an import — on one live Berth.

Prints: the server's RSS idle, after the index of the whole pack (testdata/vulndb, 39,268
records) is loaded, and its peak (VmHWM) over the run; the scan time per image (wall time of
N scans of small images with ~120 Debian and npm packages each, one layer, auto-scan on push);
and the time from an import to the end of the re-evaluation of all N inventories (the
`vulndb-reevaluate` job: creation to finish). Targets (scanner-accuracy issue): index under
200 MiB, re-evaluation of 1,000 inventories under 5 s. Python 3.11 standard library only.

    cargo build --release -p berth
    python3 bench/scanner.py                  # target/release/berth, N = 1000
    python3 bench/scanner.py --images 200 --berth-bin PATH
"""

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import parallel, push_layer_image as push, request, start, status, targz  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK = os.path.join(ROOT, "testdata", "vulndb", "osv")


def debian_names(n):
    """Source package names the Debian advisories of the pack name (so that scans match)."""
    names = []
    with gzip.open(os.path.join(PACK, "Debian", "debian-12.jsonl.gz"), "rt") as f:
        for line in f:
            for a in json.loads(line).get("affected", []):
                names.append(a["package"]["name"])
    return sorted(set(names))[:n]


def image_files(i, names, rng):
    status = "".join(
        f"Package: {n}\nStatus: install ok installed\nArchitecture: amd64\n"
        f"Version: {rng.randint(0, 3)}.{rng.randint(0, 20)}-{rng.randint(1, 5)}\n\n"
        for n in rng.sample(names, 100)
    )
    files = [("etc/os-release", b"ID=debian\nVERSION_ID=12\n"), ("var/lib/dpkg/status", status.encode())]
    for n, v in (("lodash", "4.17.15"), ("minimist", "1.2.0"), ("handlebars", "4.0.11"), ("jquery", "3.4.1")):
        files.append((f"app/node_modules/{n}/package.json", json.dumps({"name": n, "version": v}).encode()))
    for k in range(16):
        files.append((f"app/node_modules/pkg{k}/package.json", json.dumps({"name": f"pkg{k}", "version": f"1.{i}.{k}"}).encode()))
    return files


def jobs(host, port, kind):
    st, body = request(host, port, "GET", f"/api/v2.0/jobservice/jobs?kind={kind}&limit=1000")
    assert st == 200, body
    return json.loads(body)


def wait_scans(host, port, n, deadline=1800):
    """Until n scan jobs ended (the listing shows at most 1,000) and none is queued or running."""
    t = time.monotonic()
    while time.monotonic() - t < deadline:
        ended = sum(1 for j in jobs(host, port, "scan") if j["status"] in ("succeeded", "failed"))
        busy = [j for j in jobs(host, port, "scan") if j["status"] in ("queued", "running")]
        if ended >= min(n, 1000) and not busy:
            return
        time.sleep(0.5)
    raise SystemExit(f"scans did not finish in {deadline} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--berth-bin", default=os.path.join(ROOT, "target", "release", "berth"))
    ap.add_argument("--images", type=int, default=1000)
    a = ap.parse_args()
    rng = random.Random(7)
    names = debian_names(400)
    with tempfile.TemporaryDirectory() as data:
        p, host, port = start(a.berth_bin, data, {})
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_") and k != "RUST_BACKTRACE"}
            idle = status(p.pid, "VmRSS")
            t = time.monotonic()
            subprocess.run([a.berth_bin, "vulndb", "import", PACK, "--data-dir", data], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            import_s = time.monotonic() - t
            request(host, port, "POST", "/api/v2.0/projects",
                    json.dumps({"project_name": "sc", "metadata": {"auto_scan": "true"}}),
                    {"Content-Type": "application/json"})
            # The first scan loads the index.
            push(host, port, "sc/first", targz(image_files(0, names, rng)))
            wait_scans(host, port, 1)
            indexed, hwm_index = status(p.pid, "VmRSS"), status(p.pid, "VmHWM")
            layers = [targz(image_files(i, names, rng)) for i in range(a.images)]
            t = time.monotonic()
            parallel(8, lambda k: [push(host, port, f"sc/app{i}", layers[i]) for i in range(k, a.images, 8)])
            wait_scans(host, port, a.images + 1)
            scans_s = time.monotonic() - t
            hwm_scans = status(p.pid, "VmHWM")
            st, body = request(host, port, "GET", "/api/v2.0/projects/sc/repositories/app1/artifacts/v1?with_scan_overview=true")
            o = json.loads(body)["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"]
            # An import re-evaluates every stored inventory (no layer is read).
            with tempfile.TemporaryDirectory() as extra:
                rec = {"id": "BENCH-1", "modified": "2026-12-01T00:00:00Z", "affected": [
                    {"package": {"ecosystem": "npm", "name": "pkg0"}, "versions": ["1.0.0"]}]}
                open(os.path.join(extra, "bench.json"), "w").write(json.dumps(rec))
                before = len(jobs(host, port, "vulndb-reevaluate"))
                t = time.monotonic()
                subprocess.run([a.berth_bin, "vulndb", "import", extra, "--data-dir", data], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                while True:
                    js = [j for j in jobs(host, port, "vulndb-reevaluate") if j["status"] == "succeeded"]
                    if len(js) > before:
                        break
                    time.sleep(0.05)
                wall = time.monotonic() - t
                j = max(js, key=lambda j: j["finish_time"] or 0)
                job_s = (j["finish_time"] - j["creation_time"]) / 1000
            peak, after_rss = status(p.pid, "VmHWM"), status(p.pid, "VmRSS")
            st, body = request(host, port, "GET",
                               "/api/v2.0/projects/sc/repositories/app1/artifacts/v1/additions/vulnerabilities")
            report_kib = len(body) >> 10
        finally:
            p.terminate()
            p.wait()
    print(f"pack import (offline CLI):            {import_s:.1f} s")
    print(f"RSS idle:                             {idle} MiB")
    print(f"RSS with the whole pack's index:      {indexed} MiB (+{indexed - idle} MiB; target: under 200 MiB)")
    print(f"scans of {a.images} images:{'':<15}{scans_s:.1f} s, {1000 * scans_s / a.images:.1f} ms per image "
          f"(~120 packages, {o['summary']['total']} findings in one)")
    print(f"re-evaluation of {a.images + 1} inventories:   {job_s:.2f} s (job), {wall:.2f} s from the import "
          f"(target: under 5 s for 1,000)")
    print(f"peak RSS (VmHWM): {hwm_index} MiB after the first scan, {hwm_scans} MiB after the scans, "
          f"{peak} MiB after the re-evaluation (RSS then {after_rss} MiB); one report: {report_kib} KiB")


if __name__ == "__main__":
    main()
