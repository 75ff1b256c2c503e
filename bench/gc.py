#!/usr/bin/env python3
"""Garbage-collection benchmark: a registry with N blobs, half of them garbage, collected once.

Starts Berth (target/release/berth) on a temporary data directory, with blobs on the
filesystem (`--backend fs`) or on S3 (`--backend s3`: SeaweedFS `weed mini` on loopback,
started here; metadata stays in embedded SQLite). Uploads N small blobs into ten
repositories, pushes manifests of 100 blobs each that reference all of them, deletes half of
the manifests (so half of the blobs are garbage), then times a dry run and a real run of
Harbor's `/system/gc` with time_window 0, and prints time, blobs and bytes freed.

    python3 bench/gc.py                       # 100,000 blobs on the filesystem
    python3 bench/gc.py --backend s3          # the same on SeaweedFS
    python3 bench/gc.py --blobs 2000          # a quick run

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

PASSWORD = "Bench-Admin-Password-1"
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                h = {"Authorization": AUTH, **(headers or {})}
                conn.request(method, path, body=body, headers=h)
                r = conn.getresponse()
                data = r.read()
                return r.status, dict(r.getheaders()), data
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")


def start_weed(tmp: str) -> tuple[subprocess.Popen, int]:
    s3port = free_port()
    conf = os.path.join(tmp, "s3.json")
    with open(conf, "w") as f:
        json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": "bench", "secretKey": "benchsecret"}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    ports = [f"-{n}={free_port()}" for n in ["master.port", "volume.port", "filer.port", "admin.port", "webdav.port",
                                              "s3.port.iceberg", "s3.port.lance", "metricsPort", "debug.port"]]
    os.makedirs(os.path.join(tmp, "weed"))
    weed = subprocess.Popen(
        ["weed", "mini", f"-dir={tmp}/weed", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
         "-admin.ui=false", "-bucket=berth", f"-s3.port={s3port}", f"-s3.config={conf}", *ports],
        stdout=open(os.path.join(tmp, "weed.log"), "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", s3port, timeout=2)
            c.request("GET", "/berth")
            if c.getresponse().status in (200, 403):
                time.sleep(1)
                return weed, s3port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("SeaweedFS did not start; see " + os.path.join(tmp, "weed.log"))


def start_berth(binary: str, data: str, config: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data]
    if config:
        cmd += ["--config", config]
    env = {**os.environ, "BERTH_ADMIN_PASSWORD": PASSWORD, "BERTH_AUTH_CREATE_PROJECTS_ON_PUSH": "true"}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(data + ".log", "w"))
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            return p, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("berth did not start; see " + data + ".log")


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def gc_run(c: Client, params: dict) -> tuple[float, dict]:
    body = json.dumps({"schedule": {"type": "Manual"}, "parameters": params}).encode()
    started = time.monotonic()
    st, h, data = c.request("POST", "/api/v2.0/system/gc/schedule", body, {"Content-Type": "application/json"})
    if st != 201:
        raise SystemExit(f"starting GC: {st} {data[:300]!r}")
    run = h.get("Location", h.get("location")).rsplit("/", 1)[1]
    while True:
        st, _, data = c.request("GET", f"/api/v2.0/system/gc/{run}")
        r = json.loads(data)
        if r["job_status"] not in ("Pending", "Running", "Stopping"):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    if r["job_status"] != "Success":
        raise SystemExit(f"GC ended {r['job_status']}: {r}")
    return elapsed, r["result"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", type=int, default=100_000)
    ap.add_argument("--blob-size", type=int, default=1024, help="bytes per blob (default 1024)")
    ap.add_argument("--backend", choices=["fs", "s3"], default="fs")
    ap.add_argument("--berth", default="target/release/berth")
    ap.add_argument("--threads", type=int, default=16)
    a = ap.parse_args()
    if not os.access(a.berth, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p berth ({a.berth} not found)")
    tmp = tempfile.mkdtemp(prefix="berth-gcbench-")
    procs: list[subprocess.Popen] = []
    try:
        config = None
        if a.backend == "s3":
            weed, s3port = start_weed(tmp)
            procs.append(weed)
            config = os.path.join(tmp, "berth.toml")
            with open(config, "w") as f:
                f.write(f'[storage]\nbackend = "s3"\nendpoint = "http://127.0.0.1:{s3port}"\nbucket = "berth"\n'
                        'prefix = "gcbench"\naccess_key_id = "bench"\nsecret_access_key = "benchsecret"\n')
        data = os.path.join(tmp, "data")
        berth, port = start_berth(a.berth, data, config)
        procs.append(berth)
        c = Client(port)

        per = 100
        n = a.blobs - a.blobs % per
        log(f"uploading {n} blobs of {a.blob_size} bytes ({a.backend}) with {a.threads} threads")
        seed = os.urandom(8)

        def blob(i: int) -> bytes:
            head = hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
            return (head * (a.blob_size // 32 + 1))[: a.blob_size]

        def upload(i: int) -> tuple[int, str]:
            b = blob(i)
            d = "sha256:" + hashlib.sha256(b).hexdigest()
            st, _, body = c.request("POST", f"/v2/bench/r{(i // per) % 10}/blobs/uploads/?digest={d}", b,
                                    {"Content-Type": "application/octet-stream"})
            if st != 201:
                raise SystemExit(f"upload {i}: {st} {body[:200]!r}")
            return i, d

        t0 = time.monotonic()
        digests = [""] * n
        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            for i, d in ex.map(upload, range(n), chunksize=64):
                digests[i] = d
        log(f"uploaded in {time.monotonic() - t0:.1f} s; pushing {n // per} manifests of {per} blobs")

        def push(m: int) -> tuple[int, str]:
            ds = digests[m * per:(m + 1) * per]
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ds[0],
                              "size": a.blob_size},
                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                               "size": a.blob_size} for d in ds[1:]]}
            body = json.dumps(doc).encode()
            st, _, resp = c.request("PUT", f"/v2/bench/r{m % 10}/manifests/m{m}", body, {"Content-Type": OCI_MANIFEST})
            if st != 201:
                raise SystemExit(f"manifest {m}: {st} {resp[:200]!r}")
            return m, "sha256:" + hashlib.sha256(body).hexdigest()

        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            manifests = dict(ex.map(push, range(n // per)))
        log("deleting every other manifest: half of the blobs become garbage")

        def delete(m: int) -> None:
            st, _, resp = c.request("DELETE", f"/v2/bench/r{m % 10}/manifests/{manifests[m]}")
            if st != 202:
                raise SystemExit(f"delete {m}: {st} {resp[:200]!r}")

        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            list(ex.map(delete, range(1, n // per, 2)))
        disk_before = du(os.path.join(data, "blobs")) if a.backend == "fs" else None

        dry_s, dry = gc_run(c, {"time_window": 0, "dry_run": True})
        log(f"dry run: {dry_s:.2f} s, would free {dry['blobs_deleted']} blobs")
        real_s, real = gc_run(c, {"time_window": 0})
        again_s, again = gc_run(c, {"time_window": 0})
        disk_after = du(os.path.join(data, "blobs")) if a.backend == "fs" else None

        print(f"\nGarbage collection of {n} blobs ({a.blob_size} B each), half garbage, backend {a.backend}:")
        print(f"  {'run':<22} {'seconds':>8} {'blobs freed':>12} {'bytes freed':>14} {'blobs/s':>10}")
        for name, s, r in [("dry run", dry_s, dry), ("collection", real_s, real), ("again (nothing left)", again_s, again)]:
            rate = r["blobs_deleted"] / s if s > 0 else 0
            print(f"  {name:<22} {s:>8.2f} {r['blobs_deleted']:>12} {r['bytes_freed']:>14} {rate:>10.0f}")
        if disk_before is not None:
            print(f"  blob storage on disk: {disk_before} bytes before, {disk_after} after")
        expect = n // 2
        if real["blobs_deleted"] != expect or again["blobs_deleted"] != 0:
            raise SystemExit(f"expected {expect} blobs freed then none, got {real['blobs_deleted']} and "
                             f"{again['blobs_deleted']}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
