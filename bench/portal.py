#!/usr/bin/env python3
"""Portal benchmark: every page, server-rendered, at 10,000 repositories and 100,000 artifacts.

Starts Berth (target/release/berth) on a temporary data directory and pushes PROJECTS
projects of REPOS repositories of ARTIFACTS tagged artifacts each (by default 10 x 1,000 x 10:
10,000 repositories, 100,000 artifacts; every push is also an audit entry), then signs in
through the portal's form as the administrator and requests each page ROUNDS times in a row,
timing the whole response (sent to last byte, over loopback). Prints p50 and p99 per page and
whether the issue's target, under 50 ms, is met.

    python3 bench/portal.py                    # the full size (pushing takes a few minutes)
    python3 bench/portal.py --repos 100        # a quick run

Python 3.11 standard library only; shares its helpers with bench/gc.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse

_spec = importlib.util.spec_from_file_location("gcbench", os.path.join(os.path.dirname(__file__), "gc.py"))
gcbench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gcbench)
Client, log, start_berth, PASSWORD = gcbench.Client, gcbench.log, gcbench.start_berth, gcbench.PASSWORD
OCI_MANIFEST = gcbench.OCI_MANIFEST
TARGET_MS = 50.0


def sign_in(port: int) -> str:
    """The portal's form, as a browser fills it; returns the cookies to send."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/account/sign-in")
    r = c.getresponse()
    page = r.read().decode()
    csrf_cookie = next(v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie" and "berth_csrf" in v)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf": token, "username": "admin", "password": PASSWORD, "next": "/harbor/projects"})
    c.request("POST", "/account/sign-in", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf_cookie})
    r = c.getresponse()
    r.read()
    session = next(v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie" and "berth_session" in v)
    return f"{csrf_cookie}; {session}"


def timed(port: int, cookie: str, path: str, rounds: int) -> tuple[list[float], int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    size = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        c.request("GET", path, headers={"Cookie": cookie})
        r = c.getresponse()
        body = r.read()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status} {body[:300]!r}")
        size = len(body)
    return out, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=10)
    ap.add_argument("--repos", type=int, default=1000, help="repositories per project")
    ap.add_argument("--artifacts", type=int, default=10, help="tagged artifacts per repository")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--berth", default="target/release/berth")
    a = ap.parse_args()
    if not os.access(a.berth, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p berth ({a.berth} not found)")
    tmp = tempfile.mkdtemp(prefix="berth-portalbench-")
    proc = None
    try:
        data = os.path.join(tmp, "data")
        proc, port = start_berth(a.berth, data, None)
        c = Client(port)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"bench"}]}'
        layer = os.urandom(1024)
        cd = "sha256:" + hashlib.sha256(config).hexdigest()
        ld = "sha256:" + hashlib.sha256(layer).hexdigest()
        repos = [f"p{p}/team/app-{r:05d}" for p in range(a.projects) for r in range(a.repos)]
        total = len(repos) * a.artifacts
        log(f"pushing {len(repos)} repositories, {total} artifacts, with {a.threads} threads")

        def fill(repo: str) -> None:
            for blob, d in ((config, cd), (layer, ld)):
                st, _, body = c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", blob,
                                        {"Content-Type": "application/octet-stream"})
                if st != 201:
                    raise SystemExit(f"blob {repo}: {st} {body[:200]!r}")
            for i in range(a.artifacts):
                doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                                  "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                                   "size": len(layer)}],
                       "annotations": {"org.opencontainers.image.version": f"{repo}-{i}"}}
                st, _, body = c.request("PUT", f"/v2/{repo}/manifests/v{i}", json.dumps(doc).encode(),
                                        {"Content-Type": OCI_MANIFEST})
                if st != 201:
                    raise SystemExit(f"manifest {repo}:{i}: {st} {body[:200]!r}")

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            list(ex.map(fill, repos, chunksize=8))
        log(f"pushed in {time.monotonic() - t0:.0f} s")

        st, _, body = c.request("GET", "/api/v2.0/projects/p0")
        pid = json.loads(body)["project_id"]
        st, _, body = c.request("GET", "/api/v2.0/projects/p0/repositories/team%252Fapp-00000/artifacts/v0")
        digest = json.loads(body)["digest"]
        last = max(1, (a.repos + 49) // 50)
        pages = [
            ("projects", "/harbor/projects"),
            ("repositories, page 1", f"/harbor/projects/{pid}/repositories"),
            (f"repositories, page {last}", f"/harbor/projects/{pid}/repositories?page={last}"),
            ("repositories, search", f"/harbor/projects/{pid}/repositories?q=app-0042"),
            ("repository (artifacts)", f"/harbor/projects/{pid}/repositories/team%2Fapp-00000/artifacts-tab"),
            ("artifact", f"/harbor/projects/{pid}/repositories/team%2Fapp-00000/artifacts-tab/artifacts/{digest}"),
            ("members", f"/harbor/projects/{pid}/members"),
            ("robot accounts", f"/harbor/projects/{pid}/robot-account"),
            ("policy", f"/harbor/projects/{pid}/policy"),
            ("configuration", f"/harbor/projects/{pid}/configuration"),
            ("project logs", f"/harbor/projects/{pid}/logs"),
            ("project logs, filtered", f"/harbor/projects/{pid}/logs?operation=push&resource=p0%2Fteam%2Fapp-00042"),
            ("users", "/harbor/users"),
            ("jobs", "/harbor/jobs"),
            ("garbage collection", "/harbor/gc"),
            ("audit log", "/harbor/logs"),
            ("settings", "/harbor/settings"),
            ("profile", "/harbor/profile"),
        ]
        cookie = sign_in(port)
        print(f"\nPortal pages at {len(repos)} repositories and {total} artifacts "
              f"({a.rounds} requests each, one after another):")
        print(f"  {'page':<28} {'p50 ms':>8} {'p99 ms':>8} {'KiB':>6}")
        worst = 0.0
        for name, path in pages:
            ms, size = timed(port, cookie, path, a.rounds)
            ms.sort()
            p50 = statistics.median(ms)
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            worst = max(worst, p99)
            print(f"  {name:<28} {p50:>8.1f} {p99:>8.1f} {size / 1024:>6.1f}")
        target = "met" if worst < TARGET_MS else "MISSED"
        print(f"  target: every page under {TARGET_MS:.0f} ms (worst p99 {worst:.1f} ms): {target}")
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
