#!/usr/bin/env python3
"""Abuse benchmark: every attack of the abuse-resistance issue against one live Berth.

For each attack it prints the bound, the server's peak RSS above idle (VmHWM, reset before
each attack through /proc/PID/clear_refs), the server CPU seconds it cost, and how a
background client pushing and pulling fared meanwhile (p99 latency, errors). Python 3.11
standard library only.

    cargo build --release -p berth
    python3 bench/abuse.py                 # target/release/berth
    python3 bench/abuse.py --berth-bin PATH
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ADMIN_PW = "Abuse-Bench-Admin-1"


def start(binary, data, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_") and k != "RUST_BACKTRACE"}
    env.update(BERTH_ADMIN_PASSWORD=ADMIN_PW, BERTH_AUTH_CREATE_PROJECTS_ON_PUSH="true", **env_extra)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir", data],
                         env=env, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("message") == "berth is serving":
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            host, port = v["addr"].rsplit(":", 1)
            return p, host, int(port)
    raise SystemExit("berth exited before serving")


def status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024
    return 0


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def basic(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def request(host, port, method, path, body=None, headers=None, user="admin", pw=ADMIN_PW, timeout=30, source=None):
    c = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0) if source else None)
    h = {"Authorization": basic(user, pw)} if user else {}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


class Background(threading.Thread):
    """Pushes a small blob and pulls a manifest in a loop, recording latencies and failures."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.lat, self.errors, self.stop, self.lock = [], 0, False, threading.Lock()

    def reset(self):
        with self.lock:
            self.lat, self.errors = [], 0

    def summary(self):
        with self.lock:
            lat = sorted(self.lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
            return p99, self.errors, len(lat)

    def run(self):
        i = 0
        while not self.stop:
            i += 1
            data = os.urandom(4096)
            d = "sha256:" + hashlib.sha256(data).hexdigest()
            for method, path, body in (("POST", f"/v2/bg/app/blobs/uploads/?digest={d}", data),
                                       ("GET", "/v2/bg/app/manifests/v1", None)):
                t = time.monotonic()
                try:
                    st, _ = request(self.host, self.port, method, path, body, timeout=10)
                    ok = st in (200, 201)
                except OSError:
                    ok = False
                with self.lock:
                    if ok:
                        self.lat.append(time.monotonic() - t)
                    else:
                        self.errors += 1
            time.sleep(0.02)


def push_image(host, port, repo, tag):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1000)
    descs = []
    for blob, mt in ((cfg, "application/vnd.oci.image.config.v1+json"), (layer, "application/vnd.oci.image.layer.v1.tar+gzip")):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        request(host, port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", blob)
        descs.append({"mediaType": mt, "digest": d, "size": len(blob)})
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": descs[0], "layers": descs[1:]}).encode()
    st, _ = request(host, port, "PUT", f"/v2/{repo}/manifests/{tag}", m,
                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, st


def parallel(n, fn):
    out = [None] * n
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn(i))) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def attack_login_flood(host, port):
    # From 200 addresses (127.0.1.x), as a botnet would, so per-address locks do not help.
    def one(i):
        try:
            return request(host, port, "GET", "/v2/", pw=f"wrong-{i}", source=f"127.0.{1 + i // 250}.{1 + i % 250}")[0]
        except OSError:
            return "error"
    res = parallel(200, one)
    return f"200 logins: {res.count(401)}x401 {res.count(429)}x429 {sum(1 for r in res if r not in (401, 429))} other"


def attack_stranger_lockout(host, port):
    for i in range(30):
        request(host, port, "GET", "/v2/", pw=f"guess-{i}", source="127.0.0.2")
    stranger = request(host, port, "GET", "/v2/", source="127.0.0.2")[0]
    owner = request(host, port, "GET", "/v2/")[0]
    return f"stranger now {stranger}, the admin elsewhere {owner}" + ("" if owner == 200 else "  ** LOCKED OUT **")


def attack_slow_loris(host, port, n=1100):
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        time.sleep(0.5)
        for s in socks:
            try:
                s.sendall(b"a")
            except OSError:
                pass
    closed = 0
    for s in socks:
        s.settimeout(0.05)
        try:
            closed += s.recv(1) == b""
        except socket.timeout:
            pass
        except OSError:
            closed += 1
        s.close()
    return f"{closed} of {n} slow connections closed by the server within 8 s"


def attack_trickle(host, port):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("POST", "/v2/trickle/app/blobs/uploads/", headers={"Authorization": basic("admin", ADMIN_PW)})
    r = c.getresponse()
    r.read()
    loc = r.getheader("Location")
    c.close()
    s = socket.create_connection((host, port))
    s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('admin', ADMIN_PW)}\r\n"
               "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n").encode())
    t = time.monotonic()
    s.settimeout(0.3)
    answer = b""
    while time.monotonic() - t < 20 and not answer:
        try:
            s.sendall(b"x")
            answer = s.recv(4096)
        except socket.timeout:
            pass
        except OSError:
            break
    s.close()
    line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return f"3 B/s upload to {loc} answered {line!r} after {time.monotonic() - t:.1f} s"


def attack_duplicate_json(host, port):
    doc = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Effect": "Allow", '
           '"Principal": "*", "Action": "ecr:BatchGetImage"}]}')
    res = parallel(50, lambda i: request(host, port, "PUT", "/api/v2.0/projects/bg/repositories/app/policy", doc,
                                         {"Content-Type": "application/json"})[0])
    return f"50 policies with a repeated key: {res.count(400)}x400"


def attack_pattern(host, port):
    pat = "ecr:" + "*a" * 1000 + "b"
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": [pat, "ecr:BatchGetImage"]}]})
    st, body = request(host, port, "PUT", "/api/v2.0/projects/bg/repositories/app/policy", doc,
                       {"Content-Type": "application/json"})
    t = time.monotonic()
    for _ in range(200):
        request(host, port, "GET", "/v2/bg/app/manifests/v1")
    per = (time.monotonic() - t) / 200 * 1000
    request(host, port, "DELETE", "/api/v2.0/projects/bg/repositories/app/policy")
    said = json.loads(body)["errors"][0]["message"][:70] if st >= 400 else ""
    return f"policy with a 2 KiB '*a*a…b' action: PUT {st} {said!r}; 200 pulls after: {per:.2f} ms each"


def attack_metric_labels(host, port):
    before = len(request(host, port, "GET", "/metrics", user=None)[1])
    for i in range(500):
        try:
            request(host, port, f"X{i}", f"/v2/no{i}/x", user=None)
        except OSError:
            pass
    after = len(request(host, port, "GET", "/metrics", user=None)[1])
    return f"500 invented methods and paths: /metrics {before} -> {after} bytes"


def push_layer_image(host, port, repo, layer):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    descs = []
    for blob, mt in ((cfg, "application/vnd.oci.image.config.v1+json"), (layer, "application/vnd.oci.image.layer.v1.tar+gzip")):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        st, _ = request(host, port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", blob, timeout=300)
        assert st == 201, st
        descs.append({"mediaType": mt, "digest": d, "size": len(blob)})
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": descs[0], "layers": descs[1:]}).encode()
    st, _ = request(host, port, "PUT", f"/v2/{repo}/manifests/v1", m,
                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, st


def targz(files):
    import gzip
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1)


def scan_and_wait(host, port, project, files):
    request(host, port, "POST", "/api/v2.0/projects",
            json.dumps({"project_name": project, "metadata": {"auto_scan": "true"}}), {"Content-Type": "application/json"})
    push_layer_image(host, port, f"{project}/app", targz(files))
    t = time.monotonic()
    path = f"/api/v2.0/projects/{project}/repositories/app/artifacts/v1"
    while time.monotonic() - t < 600:
        st, body = request(host, port, "GET", path)
        o = json.loads(body).get("scan_overview", {}).get("application/vnd.security.vulnerability.report; version=1.1", {})
        if o.get("scan_status") in ("Success", "Error"):
            summary = o.get("summary", {}).get("total", "")
            return f"scan {o['scan_status']} in {time.monotonic() - t:.1f} s {o.get('error', '')[:60]}{summary}"
        time.sleep(0.5)
    return "scan did not end in 600 s"


def attack_dpkg_status(host, port):
    stanza = "Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{i}-1\nDescription: " \
             + "x" * 180 + "\n\n"
    text = "".join(stanza.format(i=i) for i in range(450_000)).encode()
    return f"{len(text) >> 20} MiB dpkg status: " + scan_and_wait(host, port, "dpkg", [
        ("etc/os-release", b"ID=debian\nVERSION_ID=12\n"), ("var/lib/dpkg/status", text)])


def attack_gzip_bomb(host, port):
    zeros = b"\0" * (1 << 30)
    return "1 GiB of zeros in an executable: " + scan_and_wait(host, port, "bomb", [("usr/bin/zeros", zeros)])


ATTACKS = [
    ("login flood (200 concurrent wrong passwords)", "+300 MiB", attack_login_flood),
    ("stranger locks out an account", "owner unaffected", attack_stranger_lockout),
    ("slow-loris (1,100 connections)", "push/pull keep working", attack_slow_loris),
    ("trickled upload", "cut off after one window", attack_trickle),
    ("JSON with repeated keys", "400", attack_duplicate_json),
    ("pathological policy pattern", "linear matching", attack_pattern),
    ("metrics label flood", "bounded labels", attack_metric_labels),
    ("scan: 120 MiB dpkg status", "+512 MiB", attack_dpkg_status),
    ("scan: gzip bomb layer", "+512 MiB", attack_gzip_bomb),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth-bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "berth"))
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        env = {"BERTH_LIMITS_HEADER_READ_TIMEOUT": "5s", "BERTH_AUTH_LOGIN_MAX_FAILURES": "5"}
        proc, host, port = start(args.berth_bin, os.path.join(tmp, "data"), env)
        try:
            push_image(host, port, "bg/app", "v1")
            bg = Background(host, port)
            bg.start()
            time.sleep(1)
            idle = status(proc.pid, "VmRSS:")
            print(f"Berth {args.berth_bin} (header_read_timeout 5 s); idle RSS {idle} MiB\n")
            rows = [("attack", "bound", "peak RSS +MiB", "CPU s", "bg p99 ms", "bg errors", "what happened")]
            for name, bound, fn in ATTACKS:
                with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                    f.write("5")
                base_rss, cpu0 = status(proc.pid, "VmRSS:"), cpu_seconds(proc.pid)
                bg.reset()
                what = fn(host, port)
                peak = status(proc.pid, "VmHWM:") - base_rss
                p99, errors, n = bg.summary()
                rows.append((name, bound, str(peak), f"{cpu_seconds(proc.pid) - cpu0:.2f}", f"{p99:.1f}",
                             f"{errors}/{n + errors}", what))
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {what}", file=sys.stderr)
            bg.stop = True
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
