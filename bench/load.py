#!/usr/bin/env python3
"""Load benchmark: Berth (A) against CNCF Distribution 2.8 (B, Debian `docker-registry`).

Both registries run side by side on 127.0.0.1, each in its own temporary directory, and every
measurement alternates A B A B for --rounds rounds. The table shows the median per server, the
ratio A/B and the target from the performance issue. Python 3.11 standard library only; uses the
external tools `wrk`, `ab` (apache2-utils) and `openssl`. See bench/README.md.

    python3 bench/load.py                      # Berth (target/release/berth) vs docker-registry
    python3 bench/load.py --quick              # smoke run with small sizes
    python3 bench/load.py --self-test --quick  # docker-registry on both sides (no Berth needed)
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

MB = 1_000_000  # throughput figures are in MB/s = 10^6 bytes per second
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
TOOLS = {"wrk": "wrk", "ab": "ab", "openssl": "openssl"}

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCTET = "application/octet-stream"


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Cleanup: every server and temp dir is registered here and removed on exit, even on error.

_SERVERS: list["Server"] = []
_DIRS: list[str] = []
_KEEP_DIRS = False


def cleanup() -> None:
    if _SERVERS or _DIRS:
        log("cleanup: stopping servers, removing temp dirs")
    for srv in list(_SERVERS):
        try:
            srv.stop()
        except Exception as exc:  # keep cleaning up the rest
            log(f"stopping {srv.label}: {exc}")
    _SERVERS.clear()
    if _KEEP_DIRS:
        for d in _DIRS:
            log(f"kept {d}")
    else:
        # In parallel: unlinking registry trees is slow on some disks (ext4 mounted with discard).
        threads = [threading.Thread(target=shutil.rmtree, args=(d,), kwargs={"ignore_errors": True})
                   for d in _DIRS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    _DIRS.clear()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through finally blocks, then atexit


atexit.register(cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)

try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _child_setup() -> None:
    # Servers die with us even if we are SIGKILLed (PR_SET_PDEATHSIG = 1).
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)


def make_temp_dir(prefix: str, root: str | None) -> str:
    d = tempfile.mkdtemp(prefix=prefix, dir=root)
    _DIRS.append(d)
    return d


# --------------------------------------------------------------------------------------------
# /proc helpers (the server's whole process tree, in case the command is a wrapper).


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) onwards


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st:
                children.setdefault(int(st[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        st = _proc_stat(pid)
        if st:
            ticks += int(st[11]) + int(st[12])  # utime (14) + stime (15)
    return ticks / CLK_TCK


def status_kib(root: int, key: str) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data_dir}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


class Server:
    """One registry process on 127.0.0.1:<free port> with its own temp dir."""

    def __init__(self, key: str, label: str, kind: str, binary: str | None, template: str | None,
                 tmp_root: str | None, start_timeout: float):
        self.key, self.label, self.kind = key, label, kind
        self.binary, self.template = binary, template
        self.tmp_root, self.start_timeout = tmp_root, start_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.dir = ""
        self.argv: list[str] = []
        self._log = None

    def _argv(self, data_dir: str, config: str) -> list[str]:
        if self.template:
            return [a.format(port=self.port, data_dir=data_dir, dir=self.dir, config=config)
                    for a in shlex.split(self.template)]
        if self.kind == "berth":
            return [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir]
        return [self.binary, "serve", config]

    def start(self, again: bool = False) -> float:
        """Spawn the server and return seconds from spawn to the first successful GET /v2/.
        With `again`, start it once more on the data dir of its last run (after `stop`)."""
        if again:
            data_dir = os.path.join(self.dir, "data")
        else:
            self.dir = make_temp_dir(f"bench-{self.key}-", self.tmp_root)
            data_dir = os.path.join(self.dir, "data")
            os.mkdir(data_dir)
        self.port = free_port()
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:  # Distribution's config; templates may use it as {config}
            f.write(DISTRIBUTION_CONFIG.format(data_dir=data_dir, port=self.port))
        self.argv = self._argv(data_dir, config)
        self._log = open(os.path.join(self.dir, "server.log"), "ab")
        _SERVERS.append(self)
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self._log,
                                     env=dict(os.environ, **BERTH_ENV),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_child_setup)
        # Popen returns once the child has exec'd (its error pipe closes on exec): the clock
        # starts at exec, as the performance issue defines it, not at Python's fork (1-3 ms
        # here, with the preexec hook forcing a full fork of this process).
        t0 = time.perf_counter()
        deadline = t0 + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode} during startup\n"
                                 f"  argv: {shlex.join(self.argv)}\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v2/")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status in (200, 401):
                    return time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                pass
            if time.perf_counter() > deadline:
                raise BenchError(f"{self.label} did not answer GET /v2/ within {self.start_timeout}s\n"
                                 f"  argv: {shlex.join(self.argv)}\n{self.log_tail()}")
            time.sleep(0.0005)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.label} is not running (exit {self.proc.returncode if self.proc else '?'})\n"
                             f"{self.log_tail()}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss_mib(self) -> float:
        return status_kib(self.proc.pid, "VmRSS") / 1024

    def hwm_mib(self) -> float:
        return status_kib(self.proc.pid, "VmHWM") / 1024

    def reset_hwm(self) -> bool:
        """Reset the peak RSS (VmHWM) to the current RSS (needs root or the same user)."""
        ok = True
        for pid in process_tree(self.proc.pid):
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                ok = False
        return ok

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
            return "\n".join("  | " + l for l in lines) or "  (server log empty)"
        except OSError:
            return "  (no server log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        if self in _SERVERS:
            _SERVERS.remove(self)

    def discard(self) -> None:
        """Stop and delete the temp dir now (throwaway instances)."""
        self.stop()
        if self.dir and self.dir in _DIRS and not _KEEP_DIRS:
            shutil.rmtree(self.dir, ignore_errors=True)
            _DIRS.remove(self.dir)


# --------------------------------------------------------------------------------------------
# HTTP client helpers (keep-alive http.client)


def loc_path(location: str) -> str:
    u = urllib.parse.urlsplit(location)
    return u.path + (f"?{u.query}" if u.query else "")


def add_query(path: str, key: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{key}={urllib.parse.quote(value, safe=':')}"


# Berth requires credentials (Distribution, run without auth, ignores them): every request of
# the benchmark carries the admin's Basic credentials, as a CI job after `docker login` would,
# and Berth creates the benchmark's projects on first push.
BENCH_ADMIN_PASSWORD = "Bench-Admin-Pw-1"
AUTH_HEADER = "Basic " + __import__("base64").b64encode(f"admin:{BENCH_ADMIN_PASSWORD}".encode()).decode()
BERTH_ENV = {"BERTH_ADMIN_PASSWORD": BENCH_ADMIN_PASSWORD, "BERTH_AUTH_CREATE_PROJECTS_ON_PUSH": "true"}


class Conn:
    def __init__(self, port: int, blocksize: int = MiB):
        self.port, self.blocksize = port, blocksize
        self.c: http.client.HTTPConnection | None = None

    def conn(self) -> http.client.HTTPConnection:
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600, blocksize=self.blocksize)
        return self.c

    def close(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                expect: tuple[int, ...] | None = None):
        headers = dict(headers or {})
        headers.setdefault("Authorization", AUTH_HEADER)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        retry = not hasattr(body, "read")  # a file body cannot be replayed
        for attempt in (0, 1):
            try:
                c = self.conn()
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or not retry:
                    raise
        if r.will_close:
            self.close()
        if expect and r.status not in expect:
            raise BenchError(f"{method} {path[:120]} -> {r.status} (expected {expect}): {data[:300]!r}")
        return r.status, r.headers, data

    def send_file(self, method: str, path: str, f, offset: int, count: int, headers: dict,
                  expect: tuple[int, ...]):
        """A request whose body is `count` bytes of file `f` from `offset`, sent with sendfile(2)
        as a client streaming a layer from disk would (http.client would copy it twice)."""
        c = self.conn()
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in dict(headers, **{"Authorization": AUTH_HEADER, "Content-Length": str(count)}).items():
            c.putheader(k, v)
        c.endheaders()
        sent = c.sock.sendfile(f, offset, count)  # os.sendfile, waiting while the socket is full
        if sent != count:
            raise BenchError(f"{method} {path[:120]}: the file ended after {sent} of {count} bytes")
        r = c.getresponse()
        data = r.read()
        if r.will_close:
            self.close()
        if r.status not in expect:
            raise BenchError(f"{method} {path[:120]} -> {r.status} (expected {expect}): {data[:300]!r}")
        return r.status, r.headers, data


# --------------------------------------------------------------------------------------------
# Registry operations


def push_blob_monolithic(c: Conn, repo: str, path: str, size: int, digest: str) -> None:
    _, h, _ = c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}, expect=(202,))
    url = add_query(loc_path(h["Location"]), "digest", digest)
    with open(path, "rb") as f:
        c.send_file("PUT", url, f, 0, size, {"Content-Type": OCTET}, expect=(201,))


def push_blob_chunked(c: Conn, repo: str, path: str, size: int, digest: str, chunk: int) -> None:
    _, h, _ = c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}, expect=(202,))
    loc = loc_path(h["Location"])
    off = 0
    with open(path, "rb") as f:
        while off < size:
            n = min(chunk, size - off)
            end = off + n - 1
            _, h, _ = c.send_file("PATCH", loc, f, off, n, {"Content-Type": OCTET, "Content-Range": f"{off}-{end}"},
                                  expect=(202,))
            loc = loc_path(h["Location"])
            off = end + 1
    c.request("PUT", add_query(loc, "digest", digest), b"", {"Content-Length": "0"}, expect=(201,))


def push_small_blob(c: Conn, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, h, _ = c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}, expect=(202,))
    c.request("PUT", add_query(loc_path(h["Location"]), "digest", digest), data,
              {"Content-Type": OCTET}, expect=(201,))
    return digest


def check_blob(c: Conn, repo: str, digest: str, size: int) -> None:
    _, h, _ = c.request("HEAD", f"/v2/{repo}/blobs/{digest}", expect=(200,))
    if int(h.get("Content-Length", -1)) != size:
        raise BenchError(f"HEAD blob {digest}: Content-Length {h.get('Content-Length')} != {size}")


def pull_blob_verified(port: int, repo: str, digest: str, size: int, bufsize: int = MiB) -> int:
    """GET the blob, hash every byte, raise unless length and sha256 match. Returns bytes read."""
    path = f"/v2/{repo}/blobs/{digest}"
    host = "127.0.0.1"
    headers = {"Authorization": AUTH_HEADER}  # for the registry only, not a presigned redirect target
    for _ in range(5):  # follow redirects (a registry may redirect blob GETs)
        c = http.client.HTTPConnection(host, port, timeout=600)
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        if r.status in (301, 302, 303, 307, 308):
            loc = r.headers["Location"]
            r.read()
            c.close()
            u = urllib.parse.urlsplit(loc)
            if u.hostname:
                host, port = u.hostname, u.port or 80
            path = loc_path(loc)
            headers = {}
            continue
        break
    if r.status != 200:
        raise BenchError(f"GET {path} -> {r.status}: {r.read()[:300]!r}")
    h = hashlib.sha256()
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    n = 0
    while True:
        k = r.readinto(mv)
        if not k:
            break
        h.update(mv[:k])
        n += k
    c.close()
    got = "sha256:" + h.hexdigest()
    if n != size or got != digest:
        raise BenchError(f"pull verification failed for {digest}: got {n} bytes, {got}")
    return n


def oci_manifest(cfg_digest: str, cfg_size: int, layer_digest: str, layer_size: int,
                 annotations: dict | None = None) -> bytes:
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    if annotations:
        m["annotations"] = annotations
    return json.dumps(m, separators=(",", ":")).encode()


CONFIG_BLOB = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def push_image_blobs(c: Conn, repo: str, layer: bytes) -> tuple[str, str]:
    return push_small_blob(c, repo, CONFIG_BLOB), push_small_blob(c, repo, layer)


# --------------------------------------------------------------------------------------------
# Load tools


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_tool(argv: list[str], timeout: float) -> str:
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    if p.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} exited {p.returncode}:\n{p.stdout[-2000:]}")
    return p.stdout


def wrk_get(url: str, conns: int, duration: float, headers: dict) -> dict:
    argv = [TOOLS["wrk"], "-t", str(min(conns, NCPU)), "-c", str(conns), "-d", f"{duration:g}s", "--latency",
            "--timeout", "10s"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = run_tool(argv + [url], timeout=duration + 60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not rps or not p99:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise BenchError(f"wrk got {non2xx.group(1)} non-2xx/3xx responses from {url}:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock and (int(sock.group(1)) or int(sock.group(4))):
        raise BenchError(f"wrk socket errors ({sock.group(0)}) on {url}")
    return {"rps": float(rps.group(1)), "p99_ms": _ms(*p99.groups())}


def ab_head(url: str, conns: int, duration: float, headers: dict, tmp: str) -> dict:
    csv = os.path.join(tmp, f"ab-{conns}.csv")
    # -t first: it implies -n 50000, which the following -n raises (ab allocates n records).
    argv = [TOOLS["ab"], "-q", "-i", "-k", "-c", str(conns), "-t", f"{max(1, round(duration))}",
            "-n", str(max(200_000, int(250_000 * duration))), "-s", "30", "-e", csv]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = run_tool(argv + [url], timeout=duration + 60)
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    done = re.search(r"Complete requests:\s+(\d+)", out)
    if not rps or not done:
        raise BenchError(f"cannot parse ab output:\n{out}")
    if int(done.group(1)) == 0:
        raise BenchError(f"ab completed no requests:\n{out}")
    bad = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if bad:
        raise BenchError(f"ab got {bad.group(1)} non-2xx responses from {url}:\n{out}")
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if failed and int(failed.group(1)):
        raise BenchError(f"ab reports {failed.group(1)} failed requests on {url}:\n{out}")
    p99 = None
    try:
        with open(csv) as f:  # -e gives the percentiles with fractional milliseconds
            for line in f:
                if line.startswith("99,"):
                    p99 = float(line.split(",")[1])
    except OSError:
        pass
    if p99 is None:  # fall back to the whole-millisecond table
        m = re.search(r"^\s*99%\s+(\d+)", out, re.M)
        if not m:
            raise BenchError(f"cannot find p99 in ab output:\n{out}")
        p99 = float(m.group(1))
    return {"rps": float(rps.group(1)), "p99_ms": p99, "requests": int(done.group(1))}


def openssl_sha256_mbps(seconds: int) -> float | None:
    try:
        out = run_tool([TOOLS["openssl"], "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", str(seconds)],
                       timeout=seconds + 60)
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        log(f"openssl speed failed: {exc}")
        return None
    val = None
    for line in out.splitlines():
        if line.lower().startswith("sha256") or line.lower().startswith("sha2-256"):
            m = re.search(r"([\d.]+)k\s*$", line)
            if m:
                val = float(m.group(1)) * 1000 / MB  # openssl's "k" is 1000 bytes/s
    return val


# --------------------------------------------------------------------------------------------
# Results


class Results:
    def __init__(self):
        self.metrics: dict[str, dict] = {}
        self.sections: list[tuple[str, list[str]]] = []
        self.errors: list[str] = []
        self.notes: list[str] = []

    def define(self, section: str, mid: str, label: str, unit: str, fmt: str = "{:.1f}",
               target: str = "", check=None) -> None:
        for name, mids in self.sections:
            if name == section:
                mids.append(mid)
                break
        else:
            self.sections.append((section, [mid]))
        self.metrics[mid] = {"label": label, "unit": unit, "fmt": fmt, "target": target, "check": check,
                             "A": [], "B": []}

    def add(self, mid: str, side: str, value: float) -> None:
        self.metrics[mid][side].append(value)

    @staticmethod
    def median(vals):
        return statistics.median(vals) if vals else None

    def summary(self, mid: str) -> dict:
        m = self.metrics[mid]
        a, b = self.median(m["A"]), self.median(m["B"])
        ratio = a / b if a is not None and b not in (None, 0) else None
        status = ""
        if m["check"] and a is not None and b is not None:
            status = "ok" if m["check"](a, b, ratio) else "MISS"
        return {"label": m["label"], "unit": m["unit"], "A": {"rounds": m["A"], "median": a},
                "B": {"rounds": m["B"], "median": b}, "ratio": ratio, "target": m["target"],
                "status": status}

    def print_tables(self, labels: dict) -> None:
        w = 46
        print()
        print(f"A = {labels['A']}")
        print(f"B = {labels['B']}")
        for section, mids in self.sections:
            print()
            print(f"== {section} ==")
            print(f"{'':{w}} {'A':>11} {'B':>11} {'A/B':>7}  target")
            for mid in mids:
                s = self.summary(mid)
                fmt = self.metrics[mid]["fmt"]
                fa = fmt.format(s["A"]["median"]) if s["A"]["median"] is not None else "-"
                fb = fmt.format(s["B"]["median"]) if s["B"]["median"] is not None else "-"
                fr = f"{s['ratio']:.2f}" if s["ratio"] is not None else "-"
                tgt = s["target"] + (f"  [{s['status']}]" if s["status"] else "")
                print(f"{s['label'] + ' (' + s['unit'] + ')':{w}} {fa:>11} {fb:>11} {fr:>7}  {tgt}")
        if self.notes:
            print()
            for n in self.notes:
                print(f"note: {n}")
        if self.errors:
            print()
            for e in self.errors:
                print(f"ERROR: {e}")

    def to_json(self) -> dict:
        return {mid: self.summary(mid) for _, mids in self.sections for mid in mids}


def ratio_at_least(x):
    return lambda a, b, r: r is not None and r >= x


def a_less_than_b(a, b, r):
    return a < b and not math.isclose(a, b, rel_tol=1e-9)


def a_below(x):
    return lambda a, b, r: a < x


def a_at_least(x):
    return lambda a, b, r: a >= x


def ratio_at_most(x):
    return lambda a, b, r: r is not None and r <= x


def start_cpu_hog() -> subprocess.Popen:
    """A process that keeps one core busy until stopped (a stand-in for a loaded machine)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL,
                            preexec_fn=_child_setup)


def stop_process(p: subprocess.Popen) -> None:
    p.kill()
    p.wait()


# --------------------------------------------------------------------------------------------
# Benchmark


def run_together(n: int, work) -> float:
    """Run work(k, start) on n threads, k = 0..n-1. Each sets itself up (a connection, say), calls
    start() once, then does the measured work. Returns the seconds from when all have started
    to when the last one ends; raises the first error (which also stops the others waiting)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)

    def run(k: int) -> None:
        try:
            work(k, barrier.wait)
        except BaseException as exc:
            errors.append(exc)
            try:
                barrier.abort()
            except Exception:
                pass

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return dt


def make_random_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left:
            block = os.urandom(min(left, 4 * MiB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return "sha256:" + h.hexdigest()


class Bench:
    def __init__(self, args):
        self.args = args
        self.res = Results()
        self.run_id = os.urandom(3).hex()
        self.tmp = make_temp_dir("bench-work-", args.tmp_dir)
        self.servers: dict[str, Server] = {}

    # -- helpers ---------------------------------------------------------------------------

    def new_server(self, side: str) -> Server:
        a = self.args
        if side == "A":
            if a.self_test:
                return Server("A", "A", "distribution", a.registry_bin, a.a_cmd, a.tmp_dir, a.start_timeout)
            return Server("A", "A", "berth", a.berth_bin, a.a_cmd, a.tmp_dir, a.start_timeout)
        return Server("B", "B", "distribution", a.registry_bin, a.b_cmd, a.tmp_dir, a.start_timeout)

    def alternate(self, fn) -> None:
        """Run fn(server, round) as A B A B ...; fn records its own metrics."""
        for r in range(self.args.rounds):
            for side in ("A", "B"):
                srv = self.servers[side]
                srv.check_alive()
                fn(srv, r)

    def repo(self, what: str, r: int) -> str:
        return f"bench/{what}-{self.run_id}-r{r}"

    def section(self, name: str, fn) -> None:
        log(f"--- {name}")
        try:
            fn()
        except BenchError as exc:
            self.res.errors.append(f"{name}: {exc}")
            log(f"ERROR in {name}: {exc}")
        except Exception as exc:
            self.res.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"ERROR in {name}:\n{traceback.format_exc()}")

    # -- measurements ----------------------------------------------------------------------

    def m_startup(self) -> None:
        R = self.res
        R.define("Startup and memory", "startup_ms", "start on an empty data dir to first GET /v2/", "ms",
                 "{:.1f}", "A < 100 ms", a_below(100))
        R.define("Startup and memory", "restart_ms", "start on an existing data dir", "ms", "{:.1f}",
                 "A < 10 ms", a_below(10))
        R.define("Startup and memory", "idle_rss_mib", "idle RSS", "MiB", "{:.1f}",
                 "A < 30 MiB", a_below(30))
        for r in range(self.args.rounds):
            for side in ("A", "B"):
                srv = self.new_server(side)
                try:
                    t = srv.start()
                    time.sleep(self.args.idle_settle)
                    srv.check_alive()
                    rss = srv.rss_mib()
                    srv.stop()
                    t2 = srv.start(again=True)
                finally:
                    srv.discard()
                R.add("startup_ms", side, t * 1000)
                R.add("restart_ms", side, t2 * 1000)
                R.add("idle_rss_mib", side, rss)
                log(f"{side} round {r}: start {t * 1000:.1f} ms (empty), {t2 * 1000:.1f} ms (existing), "
                    f"idle RSS {rss:.1f} MiB")

    def m_push(self) -> None:
        a, R = self.args, self.res
        sec = f"Blob push ({a.blob_mib} MiB random blob)"
        R.define(sec, "push_mono_mbps", "push monolithic", "MB/s", "{:.1f}", "A/B >= 3", ratio_at_least(3))
        R.define(sec, "push_chunked_mbps", f"push chunked {a.chunk_mib} MiB PATCH", "MB/s", "{:.1f}",
                 "A/B >= 3", ratio_at_least(3))
        R.define(sec, "push_cpu_s_per_gib", "server CPU per GiB pushed (mono)", "s/GiB", "{:.2f}")
        R.define(sec, "push_rss_above_mib", "peak RSS during a push, above before", "MiB", "{:.1f}",
                 "A <= 64 MiB", a_below(64.01))
        if a.busy:
            secb = f"Blob push ({a.blob_mib} MiB) beside a CPU hog (one process spinning on one core)"
            R.define(secb, "push_busy_mono_mbps", "push monolithic, busy", "MB/s", "{:.1f}", "A/B >= 3",
                     ratio_at_least(3))
            R.define(secb, "push_busy_chunked_mbps", f"push chunked {a.chunk_mib} MiB PATCH, busy", "MB/s",
                     "{:.1f}", "A/B >= 3", ratio_at_least(3))

        def one(srv: Server, r: int, busy: bool = False):
            c = Conn(srv.port)
            hog = start_cpu_hog() if busy else None
            try:
                for mode in ("mono", "chunked"):
                    repo = self.repo(f"push-{mode}{'-busy' if busy else ''}", r)
                    srv.reset_hwm()
                    rss0 = srv.rss_mib()
                    cpu0, t0 = srv.cpu(), time.perf_counter()
                    if mode == "mono":
                        push_blob_monolithic(c, repo, self.blob_path, self.blob_size, self.blob_digest)
                    else:
                        push_blob_chunked(c, repo, self.blob_path, self.blob_size, self.blob_digest,
                                          a.chunk_mib * MiB)
                    dt, cpu = time.perf_counter() - t0, srv.cpu() - cpu0
                    above = srv.hwm_mib() - rss0
                    check_blob(c, repo, self.blob_digest, self.blob_size)
                    mbps = self.blob_size / dt / MB
                    R.add(f"push_{'busy_' if busy else ''}{mode}_mbps", srv.key, mbps)
                    if not busy:
                        R.add("push_rss_above_mib", srv.key, above)
                        if mode == "mono":
                            R.add("push_cpu_s_per_gib", srv.key, cpu / (self.blob_size / GiB))
                        self.pull_repo[srv.key] = repo
                    log(f"{srv.key} round {r}: push {mode}{' (busy)' if busy else ''} {mbps:.1f} MB/s, "
                        f"server CPU {cpu:.2f} s, peak RSS +{above:.1f} MiB")
            finally:
                c.close()
                if hog:
                    stop_process(hog)

        self.alternate(one)
        if a.busy:
            self.alternate(lambda srv, r: one(srv, r, busy=True))

        if self.sha_mbps:
            sec2 = f"Push as a fraction of openssl sha256 ({self.sha_mbps:.0f} MB/s, 16 KiB blocks, 1 core)"
            R.define(sec2, "push_mono_sha_frac", "push monolithic / sha256 speed", "fraction", "{:.2f}",
                     "A >= 0.6", a_at_least(0.6))
            R.define(sec2, "push_chunked_sha_frac", "push chunked / sha256 speed", "fraction", "{:.2f}",
                     "A >= 0.6", a_at_least(0.6))
            for mode in ("mono", "chunked"):
                for side in ("A", "B"):
                    for v in R.metrics[f"push_{mode}_mbps"][side]:
                        R.add(f"push_{mode}_sha_frac", side, v / self.sha_mbps)

    def m_pull(self) -> None:
        a, R = self.args, self.res
        sec = f"Blob pull ({a.blob_mib} MiB, every byte sha256-verified by the client)"
        R.define(sec, "pull_mbps", "pull", "MB/s", "{:.1f}", "A/B >= 1.2", ratio_at_least(1.2))
        R.define(sec, "pull_cpu_s_per_gib", "server CPU per GiB pulled", "s/GiB", "{:.3f}",
                 "A <= 0.2", a_below(0.2001))
        R.define(sec, "pull_peak_rss_mib", "peak RSS during the pull", "MiB", "{:.1f}",
                 "A/B <= 1.5", ratio_at_most(1.5))

        for side in ("A", "B"):  # m_push leaves the blob in pull_repo; push it if that section failed
            if side not in self.pull_repo:
                c = Conn(self.servers[side].port)
                repo = self.repo("pull", 0)
                push_blob_monolithic(c, repo, self.blob_path, self.blob_size, self.blob_digest)
                c.close()
                self.pull_repo[side] = repo

        def one(srv: Server, r: int):
            srv.reset_hwm()
            cpu0, t0 = srv.cpu(), time.perf_counter()
            n = pull_blob_verified(srv.port, self.pull_repo[srv.key], self.blob_digest, self.blob_size)
            dt, cpu = time.perf_counter() - t0, srv.cpu() - cpu0
            peak = srv.hwm_mib()
            R.add("pull_mbps", srv.key, n / dt / MB)
            R.add("pull_cpu_s_per_gib", srv.key, cpu / (n / GiB))
            R.add("pull_peak_rss_mib", srv.key, peak)
            log(f"{srv.key} round {r}: pull {n / dt / MB:.1f} MB/s, server CPU {cpu:.2f} s, "
                f"peak RSS {peak:.1f} MiB")

        self.alternate(one)

    def m_concurrent_pull(self) -> None:
        a, R = self.args, self.res
        sec = f"Concurrent pulls ({a.concurrent_mib} MiB blob, every one verified)"
        for n in a.concurrency:
            R.define(sec, f"cpull_mbps_c{n}", f"{n} concurrent pulls, aggregate", "MB/s", "{:.1f}",
                     "A/B >= 1.5", ratio_at_least(1.5))
            R.define(sec, f"cpull_cpu_s_per_gib_c{n}", f"server CPU per GiB, {n} pulls", "s/GiB", "{:.3f}",
                     "A <= 0.2", a_below(0.2001))
            R.define(sec, f"cpull_peak_rss_mib_c{n}", f"peak RSS during {n} pulls", "MiB", "{:.1f}",
                     "A/B <= 1.5", ratio_at_most(1.5))
        path = os.path.join(self.tmp, "concurrent.blob")
        size = a.concurrent_mib * MiB
        digest = make_random_file(path, size)
        repo = self.repo("concurrent", 0)
        for side in ("A", "B"):
            c = Conn(self.servers[side].port)
            try:
                push_blob_monolithic(c, repo, path, size, digest)
                check_blob(c, repo, digest, size)
            finally:
                c.close()
        os.unlink(path)

        def one(srv: Server, r: int, n: int):
            total = [0]
            lock = threading.Lock()

            def worker(_k: int, start) -> None:
                start()
                got = pull_blob_verified(srv.port, repo, digest, size)
                with lock:
                    total[0] += got

            srv.reset_hwm()
            cpu0 = srv.cpu()
            try:
                dt = run_together(n, worker)
            except Exception as exc:
                raise BenchError(f"concurrent pull on {srv.key}: {exc}") from exc
            cpu = srv.cpu() - cpu0
            peak = srv.hwm_mib()
            R.add(f"cpull_mbps_c{n}", srv.key, total[0] / dt / MB)
            R.add(f"cpull_cpu_s_per_gib_c{n}", srv.key, cpu / (total[0] / GiB))
            R.add(f"cpull_peak_rss_mib_c{n}", srv.key, peak)
            log(f"{srv.key} round {r}: {n} concurrent pulls {total[0] / dt / MB:.1f} MB/s, "
                f"server CPU {cpu:.2f} s, peak RSS {peak:.1f} MiB")

        for n in a.concurrency:
            self.alternate(lambda srv, r: one(srv, r, n))

    def m_manifest(self) -> None:
        a, R = self.args, self.res
        sec = f"Manifest GET (wrk) and HEAD (ab -k), {a.duration:g} s per run"
        conns = a.connections
        for cn in conns:
            hi = cn == max(conns)
            R.define(sec, f"get_rps_c{cn}", f"GET req/s, {cn} conns", "req/s", "{:.0f}", "A/B >= 5",
                     ratio_at_least(5))
            R.define(sec, f"get_p99_c{cn}", f"GET p99, {cn} conns", "ms", "{:.2f}",
                     "A < 5 ms" if hi else "", a_below(5) if hi else None)
        for cn in conns:
            hi = cn == max(conns)
            R.define(sec, f"head_rps_c{cn}", f"HEAD req/s, {cn} conns", "req/s", "{:.0f}", "A/B >= 5",
                     ratio_at_least(5))
            R.define(sec, f"head_p99_c{cn}", f"HEAD p99, {cn} conns", "ms", "{:.2f}",
                     "A < 5 ms" if hi else "", a_below(5) if hi else None)

        repo = f"bench/manifest-{self.run_id}"
        headers = {"Accept": OCI_MANIFEST, "Authorization": AUTH_HEADER}
        for side in ("A", "B"):
            srv = self.servers[side]
            c = Conn(srv.port)
            try:
                layer = os.urandom(1024)
                cd, ld = push_image_blobs(c, repo, layer)
                body = oci_manifest(cd, len(CONFIG_BLOB), ld, len(layer))
                c.request("PUT", f"/v2/{repo}/manifests/latest", body, {"Content-Type": OCI_MANIFEST},
                          expect=(201,))
                _, h, data = c.request("GET", f"/v2/{repo}/manifests/latest", headers=headers, expect=(200,))
                if data != body:
                    raise BenchError(f"{side}: manifest GET returned different bytes")
                c.request("HEAD", f"/v2/{repo}/manifests/latest", headers=headers, expect=(200,))
            finally:
                c.close()

        def one(srv: Server, r: int):
            url = f"http://127.0.0.1:{srv.port}/v2/{repo}/manifests/latest"
            for cn in conns:
                g = wrk_get(url, cn, a.duration, headers)
                R.add(f"get_rps_c{cn}", srv.key, g["rps"])
                R.add(f"get_p99_c{cn}", srv.key, g["p99_ms"])
                hd = ab_head(url, cn, a.duration, headers, self.tmp)
                R.add(f"head_rps_c{cn}", srv.key, hd["rps"])
                R.add(f"head_p99_c{cn}", srv.key, hd["p99_ms"])
                log(f"{srv.key} round {r} c={cn}: GET {g['rps']:.0f} req/s p99 {g['p99_ms']:.2f} ms; "
                    f"HEAD {hd['rps']:.0f} req/s p99 {hd['p99_ms']:.2f} ms")

        self.alternate(one)

    def m_tags(self) -> None:
        a, R = self.args, self.res
        ntags, nthreads, page = a.tags, a.tag_threads, a.page_size
        sec = (f"Tags: {ntags} manifest PUTs under distinct tags ({nthreads} keep-alive connections, "
               f"{'same' if a.same_manifest else 'distinct'} manifests), then tags/list")
        R.define(sec, "tag_push_per_s", "tag pushes", "manifests/s", "{:.0f}", "A/B >= 4", ratio_at_least(4))
        R.define(sec, "tags_list_ms", "GET tags/list (all at once)", "ms", "{:.1f}")
        R.define(sec, "tags_list_paged_ms", f"GET tags/list?n={page}, following Link", "ms", "{:.1f}")
        R.define(sec, "tags_list_pages", "pages returned for n=" + str(page), "pages", "{:.0f}")
        layer = os.urandom(512)
        tags = [f"t{i:06d}" for i in range(ntags)]
        lock = threading.Lock()
        self._paging_note_done = getattr(self, "_paging_note_done", set())

        def one(srv: Server, r: int):
            repo = self.repo("tags", r)
            c = Conn(srv.port)
            cd, ld = push_image_blobs(c, repo, layer)
            if a.same_manifest:
                same = oci_manifest(cd, len(CONFIG_BLOB), ld, len(layer))
                bodies = [same] * ntags
            else:
                bodies = [oci_manifest(cd, len(CONFIG_BLOB), ld, len(layer), {"org.example.bench.tag": t})
                          for t in tags]
            next_i = [0]

            def worker(_k: int, start) -> None:
                wc = Conn(srv.port)
                try:
                    wc.request("GET", "/v2/", expect=(200, 401))  # open the connection before timing
                    start()
                    while True:
                        with lock:
                            i = next_i[0]
                            next_i[0] += 1
                        if i >= ntags:
                            break
                        wc.request("PUT", f"/v2/{repo}/manifests/{tags[i]}", bodies[i],
                                   {"Content-Type": OCI_MANIFEST}, expect=(201,))
                finally:
                    wc.close()

            try:
                dt = run_together(nthreads, worker)
            except Exception as exc:
                raise BenchError(f"tag push on {srv.key}: {exc}") from exc
            R.add("tag_push_per_s", srv.key, ntags / dt)

            # tags/list: median of 3 timings each way, checking the content every time
            want = set(tags)
            full_t, paged_t, pages_n = [], [], 0
            for _ in range(3):
                t0 = time.perf_counter()
                _, _, data = c.request("GET", f"/v2/{repo}/tags/list", expect=(200,))
                full_t.append(time.perf_counter() - t0)
                got = json.loads(data)["tags"] or []
                if set(got) != want or len(got) != ntags:
                    raise BenchError(f"{srv.key}: tags/list returned {len(got)} tags, expected {ntags}")
            for _ in range(3):
                got, pages = [], 0
                path = f"/v2/{repo}/tags/list?n={page}"
                ignored_n = False
                t0 = time.perf_counter()
                while path:
                    _, h, data = c.request("GET", path, expect=(200,))
                    pages += 1
                    batch = json.loads(data).get("tags") or []
                    if len(batch) > page:
                        ignored_n = True
                    got.extend(batch)
                    link = h.get("Link")
                    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link or "")
                    path = loc_path(m.group(1)) if m else None
                    if pages > ntags + 2:
                        raise BenchError(f"{srv.key}: tags/list pagination does not terminate")
                paged_t.append(time.perf_counter() - t0)
                pages_n = pages
                if len(got) != ntags or set(got) != want:
                    raise BenchError(f"{srv.key}: paginated tags/list returned {len(got)} tags "
                                     f"({len(set(got))} distinct), expected {ntags}")
                if ignored_n and srv.key not in self._paging_note_done:
                    self._paging_note_done.add(srv.key)
                    R.notes.append(f"{srv.key} ignored n={page} on tags/list (returned more than {page} "
                                   f"tags in one page, no Link header)")
            c.close()
            R.add("tags_list_ms", srv.key, statistics.median(full_t) * 1000)
            R.add("tags_list_paged_ms", srv.key, statistics.median(paged_t) * 1000)
            R.add("tags_list_pages", srv.key, pages_n)
            log(f"{srv.key} round {r}: {ntags / dt:.0f} tag pushes/s; tags/list "
                f"{statistics.median(full_t) * 1000:.1f} ms, paged {statistics.median(paged_t) * 1000:.1f} ms "
                f"in {pages_n} pages")

        self.alternate(one)

    def m_images(self) -> None:
        a, R = self.args, self.res
        n, per = a.pushers, max(1, a.images // a.pushers)
        sec = (f"Small images: {n} concurrent pushers, {per} images each (a 1 KiB layer, the config, "
               f"the manifest: 5 requests), each pusher its own repository")
        R.define(sec, "images_per_s", "image pushes", "images/s", "{:.0f}", "A/B >= 4", ratio_at_least(4))
        R.define(sec, "images_p99_ms", "one image push, p99", "ms", "{:.1f}")

        def one(srv: Server, r: int):
            times: list[float] = []
            lock = threading.Lock()

            def worker(k: int, start) -> None:
                wc = Conn(srv.port)
                repo = self.repo(f"images-{k}", r)
                layers = [os.urandom(1024) for _ in range(per)]
                mine = []
                try:
                    wc.request("GET", "/v2/", expect=(200, 401))
                    start()
                    for i, layer in enumerate(layers):
                        t0 = time.perf_counter()
                        cd, ld = push_image_blobs(wc, repo, layer)
                        body = oci_manifest(cd, len(CONFIG_BLOB), ld, len(layer))
                        wc.request("PUT", f"/v2/{repo}/manifests/v{i}", body, {"Content-Type": OCI_MANIFEST},
                                   expect=(201,))
                        mine.append(time.perf_counter() - t0)
                finally:
                    wc.close()
                    with lock:
                        times.extend(mine)

            try:
                dt = run_together(n, worker)
            except Exception as exc:
                raise BenchError(f"image pushes on {srv.key}: {exc}") from exc
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
            R.add("images_per_s", srv.key, len(times) / dt)
            R.add("images_p99_ms", srv.key, p99)
            log(f"{srv.key} round {r}: {len(times) / dt:.0f} images/s from {n} pushers, p99 {p99:.1f} ms")

        self.alternate(one)

    def m_peak_rss(self) -> None:
        R = self.res
        R.define("Startup and memory", "peak_rss_mib", "peak RSS at the end (VmHWM)", "MiB", "{:.1f}")
        for side in ("A", "B"):
            srv = self.servers[side]
            srv.check_alive()
            R.add("peak_rss_mib", side, srv.hwm_mib())

    # -- driver ----------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.sha_mbps = None
        self.pull_repo: dict[str, str] = {}
        if "sha" in a.only:
            log(f"openssl speed -evp sha256 -bytes 16384 -seconds {a.openssl_seconds}")
            self.sha_mbps = openssl_sha256_mbps(a.openssl_seconds)
            log(f"single-core sha256: {self.sha_mbps} MB/s")
        if "startup" in a.only:
            self.section("startup and idle RSS", self.m_startup)
        for side in ("A", "B"):
            srv = self.new_server(side)
            self.servers[side] = srv
            srv.start()
            log(f"{side}: {shlex.join(srv.argv)} on port {srv.port}, dir {srv.dir}")
        if {"push", "pull"} & set(a.only):
            log(f"generating {a.blob_mib} MiB random blob")
            self.blob_path = os.path.join(self.tmp, "big.blob")
            self.blob_size = a.blob_mib * MiB
            self.blob_digest = make_random_file(self.blob_path, self.blob_size)
        if "push" in a.only:
            self.section("blob push", self.m_push)
        if "pull" in a.only:
            self.section("blob pull", self.m_pull)
        if {"push", "pull"} & set(a.only):
            os.unlink(self.blob_path)
        if "cpull" in a.only:
            self.section("concurrent pull", self.m_concurrent_pull)
        if "manifest" in a.only:
            self.section("manifest GET/HEAD", self.m_manifest)
        if "tags" in a.only:
            self.section("tag pushes and tags/list", self.m_tags)
        if "images" in a.only:
            self.section("small image pushes", self.m_images)
        if "startup" in a.only:
            self.section("peak RSS", self.m_peak_rss)

        names = {"A": "docker-registry (self-test)" if a.self_test else "Berth",
                 "B": "Distribution (docker-registry)"}
        if a.a_cmd:
            names["A"] = "custom A"
        if a.b_cmd:
            names["B"] = "custom B"
        labels = {s: f"{names[s]}: {shlex.join(self.servers[s].argv)}" if s in self.servers else names[s]
                  for s in ("A", "B")}
        self.res.print_tables(labels)
        if a.json:
            doc = {
                "meta": {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "host": platform.node(), "cpus": NCPU, "kernel": platform.release(),
                    "python": platform.python_version(),
                    "args": {k: v for k, v in vars(a).items()},
                    "A": labels["A"], "B": labels["B"],
                    "openssl_sha256_16k_mbps": self.sha_mbps,
                    "units": {"MB": MB, "MiB": MiB, "GiB": GiB},
                },
                "metrics": self.res.to_json(),
                "notes": self.res.notes,
                "errors": self.res.errors,
            }
            with open(a.json, "w") as f:
                json.dump(doc, f, indent=2)
            log(f"wrote {a.json}")
        return 1 if self.res.errors else 0


ALL_PARTS = ["sha", "startup", "push", "pull", "cpull", "manifest", "tags", "images"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--berth-bin", default="target/release/berth", help="Berth binary (A)")
    p.add_argument("--registry-bin", default=None,
                   help="Distribution binary (default: docker-registry from PATH, /usr/bin/docker-registry)")
    p.add_argument("--a-cmd", default=None,
                   help="command template for A instead of Berth; placeholders {port} {data_dir} {dir} "
                        "{config} (a generated Distribution config.yml)")
    p.add_argument("--b-cmd", default=None, help="command template for B instead of docker-registry "
                                                 "(same placeholders as --a-cmd)")
    p.add_argument("--self-test", action="store_true", help="run docker-registry as both A and B")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 64 MiB blob, 32 MiB concurrent blob, 500 tags (n=100 pages), 2 s load runs")
    p.add_argument("--rounds", type=int, default=3, help="A B rounds per measurement (default 3)")
    p.add_argument("--blob-mib", type=int, default=None, help="push/pull blob size (default 1024)")
    p.add_argument("--chunk-mib", type=int, default=16, help="PATCH chunk size (default 16)")
    p.add_argument("--concurrent-mib", type=int, default=None, help="concurrent-pull blob size (default 100)")
    p.add_argument("--concurrency", default="8,32", help="concurrent pull counts (default 8,32)")
    p.add_argument("--no-busy", dest="busy", action="store_false",
                   help="skip the push beside a CPU hog (run by default)")
    p.add_argument("--duration", type=float, default=None, help="seconds per wrk/ab run (default 5)")
    p.add_argument("--connections", default="16,64", help="connection counts for GET/HEAD (default 16,64)")
    p.add_argument("--tags", type=int, default=None, help="tag pushes (default 10000)")
    p.add_argument("--tag-threads", type=int, default=8, help="concurrent tag-push connections (default 8)")
    p.add_argument("--pushers", type=int, default=64, help="concurrent small-image pushers (default 64)")
    p.add_argument("--images", type=int, default=None, help="small images pushed in all (default 3200)")
    p.add_argument("--same-manifest", action="store_true", help="push one manifest under every tag")
    p.add_argument("--page-size", type=int, default=None,
                   help="n= for paginated tags/list (default 1000; 100 with --quick)")
    p.add_argument("--wrk", default="wrk", help="wrk binary (default: from PATH)")
    p.add_argument("--ab", default="ab", help="ab binary (default: from PATH)")
    p.add_argument("--openssl", default="openssl", help="openssl binary (default: from PATH)")
    p.add_argument("--openssl-seconds", type=int, default=3)
    p.add_argument("--idle-settle", type=float, default=1.0, help="seconds after startup before idle RSS")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--only", default=",".join(ALL_PARTS),
                   help=f"comma-separated subset of {','.join(ALL_PARTS)}")
    p.add_argument("--tmp-dir", default=None, help="where the temp dirs go (default $TMPDIR or /tmp)")
    p.add_argument("--keep-dirs", action="store_true", help="keep temp dirs (server logs) on exit")
    p.add_argument("--json", default=None, help="write all figures to this JSON file")
    a = p.parse_args(argv)
    quick = a.quick
    a.blob_mib = a.blob_mib or (64 if quick else 1024)
    a.concurrent_mib = a.concurrent_mib or (32 if quick else 100)
    a.duration = a.duration or (2.0 if quick else 5.0)
    a.tags = a.tags or (500 if quick else 10000)
    a.images = a.images or (640 if quick else 3200)
    a.page_size = a.page_size or (100 if quick else 1000)
    a.connections = [int(x) for x in a.connections.split(",") if x]
    a.concurrency = [int(x) for x in a.concurrency.split(",") if x]
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    bad = set(a.only) - set(ALL_PARTS)
    if bad:
        p.error(f"unknown --only parts: {', '.join(sorted(bad))}")
    if a.rounds < 1:
        p.error("--rounds must be >= 1")
    return a


def main(argv=None) -> int:
    global _KEEP_DIRS
    a = parse_args(argv)
    _KEEP_DIRS = a.keep_dirs
    if a.registry_bin is None:
        a.registry_bin = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    needs_registry = (a.self_test and not a.a_cmd) or not a.b_cmd
    if needs_registry and not os.access(a.registry_bin, os.X_OK):
        sys.exit(f"docker-registry not found at {a.registry_bin}: apt-get install docker-registry, "
                 f"or pass --registry-bin / --b-cmd")
    if not a.self_test and not a.a_cmd:
        a.berth_bin = os.path.abspath(a.berth_bin)
        if not os.access(a.berth_bin, os.X_OK):
            sys.exit(f"Berth binary not found at {a.berth_bin} (cargo build --release, or --berth-bin; "
                     f"--self-test runs docker-registry on both sides)")
    TOOLS.update(wrk=a.wrk, ab=a.ab, openssl=a.openssl)
    missing = [t for t, part in (("wrk", "manifest"), ("ab", "manifest"), ("openssl", "sha"))
               if part in a.only and not shutil.which(TOOLS[t])]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (apt-get install wrk apache2-utils openssl, pass "
                 f"--wrk/--ab/--openssl, or leave the part out with --only)")
    try:
        return Bench(a).run()
    except BenchError as exc:
        log(f"ERROR: {exc}")
        return 2
    finally:
        cleanup()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
