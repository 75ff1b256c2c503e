#!/usr/bin/env python3
"""Pull-through cache benchmark: Berth's proxy cache against a direct pull and against
Distribution's own pull-through mode, on one machine.

Starts an upstream (Debian's `docker-registry`, CNCF Distribution 2.8) and pushes ROUNDS
distinct blobs of --mib MiB into it; then, for each side in turn,

- A: Berth (target/release/berth) with a registry endpoint for the upstream and a public
  proxy-cache project `cache`;
- B: a second `docker-registry` configured as a pull-through cache (`proxy.remoteurl`),

and pulls each blob three ways with curl (bytes discarded): straight from the upstream
(direct), through the cache when it does not hold the blob (cold), and again (warm). Prints
the median MiB/s per way and side, and the issue's targets: cold >= 80 % of direct, warm >=
direct.

    python3 bench/proxy.py                 # 512 MiB blobs, 3 rounds
    python3 bench/proxy.py --mib 64        # a quick run

Python 3.11 standard library, curl and docker-registry.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse

_spec = importlib.util.spec_from_file_location("gcbench", os.path.join(os.path.dirname(__file__), "gc.py"))
gcbench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gcbench)
Client, log, start_berth, free_port = gcbench.Client, gcbench.log, gcbench.start_berth, gcbench.free_port


def start_distribution(tmp: str, name: str, proxy_of: str | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    root = os.path.join(tmp, name)
    os.makedirs(root)
    config = (
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if proxy_of:
        config += f"proxy:\n  remoteurl: {proxy_of}\n"
    path = os.path.join(root, "config.yml")
    with open(path, "w") as f:
        f.write(config)
    p = subprocess.Popen(["docker-registry", "serve", path], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(root, "log"), "w"))
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            return p, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"docker-registry ({name}) did not start")


def push_blob(port: int, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", f"/v2/{repo}/blobs/uploads/")
    r = c.getresponse()
    r.read()
    loc = urllib.parse.urlsplit(r.getheader("Location"))
    query = f"{loc.query}&digest={digest}" if loc.query else f"digest={digest}"
    c.request("PUT", f"{loc.path}?{query}", body=data,
              headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        raise SystemExit(f"pushing a blob upstream: {r.status}")
    return digest


def pull(url: str, user: str | None = None) -> float:
    """Seconds to GET `url` (following redirects), bytes discarded."""
    cmd = ["curl", "-sS", "-L", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url]
    if user:
        cmd[1:1] = ["-u", user]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"GET {url}: {out[0]}")
    return float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=512, help="size of each blob")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--berth-bin", default="target/release/berth")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-proxy-")
    procs: list[subprocess.Popen] = []
    try:
        up, up_port = start_distribution(tmp, "upstream")
        procs.append(up)
        sides = ["berth", "distribution"]
        blobs: dict[str, list[str]] = {}
        log(f"pushing {2 * args.rounds} blobs of {args.mib} MiB upstream")
        for side in sides:
            blobs[side] = []
            for i in range(args.rounds):
                data = os.urandom(args.mib << 20)
                blobs[side].append(push_blob(up_port, "library/app", data))
        berth, berth_port = start_berth(args.berth_bin, os.path.join(tmp, "berth"), None)
        procs.append(berth)
        c = Client(berth_port)
        st, h, _ = c.request("POST", "/api/v2.0/registries", json.dumps(
            {"name": "up", "type": "docker-registry", "url": f"http://127.0.0.1:{up_port}"}).encode(),
            {"Content-Type": "application/json"})
        if st != 201:
            raise SystemExit(f"creating the endpoint: {st}")
        rid = int(h.get("Location", h.get("location")).rsplit("/", 1)[1])
        st, _, body = c.request("POST", "/api/v2.0/projects", json.dumps(
            {"project_name": "cache", "registry_id": rid, "metadata": {"public": "true"}}).encode(),
            {"Content-Type": "application/json"})
        if st != 201:
            raise SystemExit(f"creating the proxy project: {st} {body[:200]!r}")
        dist, dist_port = start_distribution(tmp, "dist-proxy", f"http://127.0.0.1:{up_port}")
        procs.append(dist)
        via = {"berth": f"http://127.0.0.1:{berth_port}/v2/cache/library/app/blobs/",
               "distribution": f"http://127.0.0.1:{dist_port}/v2/library/app/blobs/"}
        results: dict[tuple[str, str], list[float]] = {}
        for i in range(args.rounds):
            for side in sides:
                d = blobs[side][i]
                for way, url in [("direct", f"http://127.0.0.1:{up_port}/v2/library/app/blobs/{d}"),
                                 ("cold", via[side] + d), ("warm", via[side] + d)]:
                    secs = pull(url)
                    results.setdefault((side, way), []).append(args.mib / secs)
                    log(f"round {i + 1}: {side} {way}: {args.mib / secs:.0f} MiB/s")
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"\nPull-through cache, {args.mib} MiB blobs, median of {args.rounds} rounds (MiB/s)\n")
        print(f"{'':14}{'direct':>10}{'cold':>10}{'warm':>10}{'cold/direct':>13}{'warm/direct':>13}")
        for side in sides:
            direct, cold, warm = med[(side, "direct")], med[(side, "cold")], med[(side, "warm")]
            print(f"{side:14}{direct:10.0f}{cold:10.0f}{warm:10.0f}{cold / direct:13.2f}{warm / direct:13.2f}")
        b_direct = med[("berth", "direct")]
        cold_ok = med[("berth", "cold")] >= 0.8 * b_direct
        warm_ok = med[("berth", "warm")] >= b_direct
        print(f"\nBerth cold >= 80 % of direct: {'[ok]' if cold_ok else '[MISS]'}   "
              f"warm >= direct: {'[ok]' if warm_ok else '[MISS]'}")
        print(f"Berth / Distribution's proxy: cold {med[('berth', 'cold')] / med[('distribution', 'cold')]:.2f}x, "
              f"warm {med[('berth', 'warm')] / med[('distribution', 'warm')]:.2f}x")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
