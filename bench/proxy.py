#!/usr/bin/env python3
"""Pull-through cache and replication benchmark, on one machine.

Part 1 compares Berth's proxy cache with a direct pull and with Distribution's own
pull-through mode. Part 2 (--images N, default 50) times a push-based replication of N
images (one --layer-mib layer each) from Berth to a fresh Distribution, side by side with
`skopeo copy` of the same images one by one, and prints images/s and MB/s.

Starts an upstream (Debian's `docker-registry`, CNCF Distribution 2.8) and pushes ROUNDS
distinct blobs of --mib MiB into it; then, for each side in turn,

- A: Berth (target/release/berth) with a registry endpoint for the upstream and a public
  proxy-cache project `cache<Mbit/s>`;
- B: a second `docker-registry` configured as a pull-through cache (`proxy.remoteurl`),

and pulls each blob three ways with curl (bytes discarded): straight from the upstream
(direct), through the cache when it does not hold the blob (cold), and again (warm). Prints
the median MiB/s per way and side, and the issue's targets: cold >= 80 % of direct, warm >=
direct. It does so once per upstream link (--links, Mbit/s): 0 is loopback, where the
upstream serves from its page cache faster than a cache can write to this disk; any other
figure puts a relay with one shared token bucket of that rate between both caches (and the
direct pull) and the upstream, as a network between a site and Docker Hub would be.

    python3 bench/proxy.py                 # 512 MiB blobs, 3 rounds, loopback and 1 Gbit/s
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
import socket
import statistics
import subprocess
import tempfile
import threading
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


class Link:
    """A TCP relay to `port` whose downloads share one token bucket of `mbit` Mbit/s: the
    upstream as a cache sees it over a real network (0: no relay, loopback speed)."""

    def __init__(self, port: int, mbit: int):
        self.mbit, self.port = mbit, port
        if mbit == 0:
            return
        self.rate = mbit * 1e6 / 8  # bytes per second
        self.tokens, self.stamp, self.lock = 0.0, time.monotonic(), threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(port,), daemon=True).start()

    def _take(self, n: int) -> None:
        """Wait until the link can carry `n` more bytes (bursts of at most 1 ms)."""
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.tokens + (now - self.stamp) * self.rate, self.rate / 1000 + n)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / self.rate
            time.sleep(wait)

    def _accept(self, upstream: int) -> None:
        while True:
            down, _ = self.listener.accept()
            up = socket.create_connection(("127.0.0.1", upstream))
            threading.Thread(target=self._pipe, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, shaped: bool) -> None:
        try:
            while data := src.recv(256 << 10):
                if shaped:
                    self._take(len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def cache_round(args, tmp: str, procs: list, c: Client, berth_port: int, up_port: int, mbit: int) -> dict:
    """Pull fresh blobs direct, cold and warm through both caches over one link; median MiB/s."""
    link = Link(up_port, mbit)
    name = "loopback" if mbit == 0 else f"{mbit} Mbit/s"
    upstream = f"http://127.0.0.1:{link.port}"
    sides = ["berth", "distribution"]
    blobs: dict[str, list[str]] = {}
    log(f"{name}: pushing {2 * args.rounds} blobs of {args.mib} MiB upstream")
    for side in sides:
        blobs[side] = []
        for i in range(args.rounds):
            data = os.urandom(args.mib << 20)
            blobs[side].append(push_blob(up_port, "library/app", data))
    st, h, _ = c.request("POST", "/api/v2.0/registries", json.dumps(
        {"name": f"up{mbit}", "type": "docker-registry", "url": upstream}).encode(),
        {"Content-Type": "application/json"})
    if st != 201:
        raise SystemExit(f"creating the endpoint: {st}")
    rid = int(h.get("Location", h.get("location")).rsplit("/", 1)[1])
    st, _, body = c.request("POST", "/api/v2.0/projects", json.dumps(
        {"project_name": f"cache{mbit}", "registry_id": rid, "metadata": {"public": "true"}}).encode(),
        {"Content-Type": "application/json"})
    if st != 201:
        raise SystemExit(f"creating the proxy project: {st} {body[:200]!r}")
    dist, dist_port = start_distribution(tmp, f"dist-proxy-{mbit}", upstream)
    procs.append(dist)
    via = {"berth": f"http://127.0.0.1:{berth_port}/v2/cache{mbit}/library/app/blobs/",
           "distribution": f"http://127.0.0.1:{dist_port}/v2/library/app/blobs/"}
    results: dict[tuple[str, str], list[float]] = {}
    for i in range(args.rounds):
        for side in sides:
            d = blobs[side][i]
            for way, url in [("direct", f"{upstream}/v2/library/app/blobs/{d}"),
                             ("cold", via[side] + d), ("warm", via[side] + d)]:
                secs = pull(url)
                results.setdefault((side, way), []).append(args.mib / secs)
                log(f"{name}, round {i + 1}: {side} {way}: {args.mib / secs:.0f} MiB/s")
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=512, help="size of each blob")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--berth-bin", default="target/release/berth")
    ap.add_argument("--links", default="0,1000",
                    help="upstream links in Mbit/s, comma-separated (0: loopback, no relay)")
    ap.add_argument("--images", type=int, default=50, help="images to replicate (0: skip part 2)")
    ap.add_argument("--layer-mib", type=int, default=4)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-proxy-")
    procs: list[subprocess.Popen] = []
    try:
        up, up_port = start_distribution(tmp, "upstream")
        procs.append(up)
        berth, berth_port = start_berth(args.berth_bin, os.path.join(tmp, "berth"), None)
        procs.append(berth)
        c = Client(berth_port)
        links = [int(x) for x in args.links.split(",")]
        meds = {mbit: cache_round(args, tmp, procs, c, berth_port, up_port, mbit) for mbit in links}
        print(f"\nPull-through cache, {args.mib} MiB blobs, median of {args.rounds} rounds (MiB/s)\n")
        print(f"{'upstream link':15}{'':14}{'direct':>10}{'cold':>10}{'warm':>10}{'cold/direct':>13}"
              f"{'warm/direct':>13}")
        for mbit, med in meds.items():
            for side in ["berth", "distribution"]:
                direct, cold, warm = med[(side, "direct")], med[(side, "cold")], med[(side, "warm")]
                link = "loopback" if mbit == 0 else f"{mbit} Mbit/s"
                print(f"{link:15}{side:14}{direct:10.0f}{cold:10.0f}{warm:10.0f}{cold / direct:13.2f}"
                      f"{warm / direct:13.2f}")
        print()
        for mbit, med in meds.items():
            link = "loopback" if mbit == 0 else f"{mbit} Mbit/s"
            b_direct = med[("berth", "direct")]
            cold_ok = med[("berth", "cold")] >= 0.8 * b_direct
            warm_ok = med[("berth", "warm")] >= b_direct
            print(f"{link:15}Berth cold >= 80 % of direct: {'[ok]' if cold_ok else '[MISS]'}   "
                  f"warm >= direct: {'[ok]' if warm_ok else '[MISS]'}   Berth / Distribution's proxy: "
                  f"cold {med[('berth', 'cold')] / med[('distribution', 'cold')]:.2f}x, "
                  f"warm {med[('berth', 'warm')] / med[('distribution', 'warm')]:.2f}x")
        if args.images > 0:
            replication(args, tmp, procs, c, berth_port)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def push_image(c: Client, repo: str, layer: bytes) -> int:
    """Push a one-layer image to Berth as `repo:v1`; its bytes."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "nonce": os.urandom(8).hex()}).encode()
    descs = []
    for data, mt in [(config, "application/vnd.oci.image.config.v1+json"),
                     (layer, "application/vnd.oci.image.layer.v1.tar")]:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        st, _, body = c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                                {"Content-Type": "application/octet-stream"})
        if st != 201:
            raise SystemExit(f"pushing a blob: {st} {body[:200]!r}")
        descs.append({"mediaType": mt, "digest": d, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descs[0], "layers": descs[1:]}).encode()
    st, _, body = c.request("PUT", f"/v2/{repo}/manifests/v1", manifest,
                            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if st != 201:
        raise SystemExit(f"pushing a manifest: {st} {body[:200]!r}")
    return len(config) + len(layer) + len(manifest)


def replication(args, tmp: str, procs: list, c: Client, berth_port: int) -> None:
    log(f"pushing {args.images} images of {args.layer_mib} MiB to Berth")
    total = 0
    repos = [f"fleet/svc{i:03}" for i in range(args.images)]
    for repo in repos:
        total += push_image(c, repo, os.urandom(args.layer_mib << 20))
    d1, p1 = start_distribution(tmp, "repl-target")
    d2, p2 = start_distribution(tmp, "skopeo-target")
    procs += [d1, d2]
    st, h, _ = c.request("POST", "/api/v2.0/registries", json.dumps(
        {"name": "target", "type": "docker-registry", "url": f"http://127.0.0.1:{p1}"}).encode(),
        {"Content-Type": "application/json"})
    rid = int(h.get("Location", h.get("location")).rsplit("/", 1)[1])
    st, h, _ = c.request("POST", "/api/v2.0/replication/policies", json.dumps(
        {"name": "bench", "dest_registry": {"id": rid}, "filters": [{"type": "name", "value": "fleet/**"}]}).encode(),
        {"Content-Type": "application/json"})
    pid = int(h.get("Location", h.get("location")).rsplit("/", 1)[1])
    t0 = time.monotonic()
    st, h, _ = c.request("POST", "/api/v2.0/replication/executions", json.dumps({"policy_id": pid}).encode(),
                         {"Content-Type": "application/json"})
    run = h.get("Location", h.get("location")).split("/api/v2.0", 1)[1]
    while True:
        st, _, body = c.request("GET", f"/api/v2.0{run}")
        e = json.loads(body)
        if e["status"] != "InProgress":
            break
        time.sleep(0.05)
    berth_s = time.monotonic() - t0
    if e["status"] != "Succeed":
        raise SystemExit(f"the replication failed: {e}")
    t0 = time.monotonic()
    auth = os.path.join(tmp, "auth.json")
    with open(auth, "w") as f:
        token = __import__("base64").b64encode(f"admin:{gcbench.PASSWORD}".encode()).decode()
        json.dump({"auths": {f"127.0.0.1:{berth_port}": {"auth": token}}}, f)
    for repo in repos:
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                        "--authfile", auth, f"docker://127.0.0.1:{berth_port}/{repo}:v1",
                        f"docker://127.0.0.1:{p2}/{repo}:v1"], check=True, capture_output=True)
    skopeo_s = time.monotonic() - t0
    mb = total / 1e6
    print(f"\nReplication of {args.images} images ({mb:.0f} MB) from Berth to Distribution\n")
    print(f"{'':22}{'seconds':>9}{'images/s':>10}{'MB/s':>8}")
    for name, secs in [("Berth replication", berth_s), ("skopeo copy, one by one", skopeo_s)]:
        print(f"{name:22}{secs:9.2f}{args.images / secs:10.1f}{mb / secs:8.0f}")
    print(f"\nBerth / skopeo: {skopeo_s / berth_s:.2f}x")


if __name__ == "__main__":
    main()
