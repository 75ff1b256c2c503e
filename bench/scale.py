#!/usr/bin/env python3
"""Scale benchmark: Berth empty against Berth full (issue 19 item 5).

`berth admin fill` writes a synthetic registry (by default 100,000 repositories of 10 tagged
manifests with 20 blob links each, a repository with 100,000 tags and an image with 10,000
referrers: 1.11 million manifests and 2 million blob links); the same measurements run on a
registry holding only a small fill ("empty") and on the full one, and the table prints both with
their ratio and the issue's targets:

  start        exec to the first answer on /v2/ (median of 3 starts)
  GET / HEAD   manifests by tag, a random repository and tag per request, 64 connections (oha)
  listings     catalog and tag-list pages (n=100) at the start, middle and end; the referrers of
               the image with 10,000 referrers; the management API's repository and artifact
               pages (page_size=100) at the start and end: the slowest page's median
  push         a new image (1 MiB layer, config, manifest), median of 5

    python3 bench/scale.py --berth-bin target/release/berth               # SQLite, full size
    python3 bench/scale.py --berth-bin target/release/berth --postgres --repos 10000
    python3 bench/scale.py --berth-bin target/release/berth --quick       # a small smoke run

Python 3.11 standard library and oha (`cargo install oha`; wrk cannot send HEAD). See bench/README.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the shared server, client and tool helpers)
from load import BenchError, Conn, log  # noqa: E402

def oha_random(port: int, method: str, shape: dict, conns: int, duration: float, tmp: str) -> dict:
    """Manifests by tag, a random repository and tag per request (oha: wrk cannot do HEAD)."""
    import random
    per_project = -(-shape["repos"] // shape["projects"])
    urls = os.path.join(tmp, "urls.txt")
    rng = random.Random(19)
    with open(urls, "w") as f:
        for _ in range(200_000):
            r = rng.randrange(shape["repos"])
            t = rng.randrange(shape["manifests_per_repo"])
            f.write(f"http://127.0.0.1:{port}/v2/proj-{r // per_project:03d}/repo-{r:06d}/manifests/v{t}\n")
    argv = ["oha", "-z", f"{duration:g}s", "-c", str(conns), "--no-tui", "--output-format", "json", "-m", method,
            "-H", f"Authorization: {load.AUTH_HEADER}", "-H", f"Accept: {load.OCI_MANIFEST}",
            "--urls-from-file", urls]
    out = json.loads(load.run_tool(argv, timeout=duration + 60))
    codes = out.get("statusCodeDistribution", {})
    if set(codes) != {"200"}:
        raise BenchError(f"oha {method}: status codes {codes}, errors {out.get('errorDistribution')}")
    lat = out["latencyPercentiles"]
    return {"rps": out["summary"]["requestsPerSec"], "p50_ms": lat["p50"] * 1000, "p99_ms": lat["p99"] * 1000}


def settle(binary: str, data_dir: str, timeout: float = 300) -> float:
    """Wait until every event consumer has caught up (pull counts, audit entries of a load);
    the seconds it took."""
    t = time.perf_counter()
    while True:
        p = subprocess.run([binary, "events", "consumers", "--data-dir", data_dir, "--output", "json"],
                           env=dict(os.environ, **load.BERTH_ENV), capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"berth events consumers failed: {p.stderr[-2000:]}")
        if all(c["behind"] == 0 for c in json.loads(p.stdout)["consumers"]):
            return time.perf_counter() - t
        if time.perf_counter() - t > timeout:
            raise BenchError(f"the event consumers did not catch up within {timeout} s: {p.stdout}")
        time.sleep(0.2)


def timed(c: Conn, path: str, n: int, expect=(200,)) -> tuple[float, bytes, dict]:
    """Median milliseconds of `n` GETs of `path` (after one warm-up); the last body and headers."""
    c.request("GET", path, expect=expect)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _, headers, body = c.request("GET", path, expect=expect)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), body, headers


def push_image(c: Conn, repo: str, tag: str, layer: bytes) -> float:
    """Milliseconds to push an image: config, a layer, the manifest."""
    t = time.perf_counter()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    cfg_digest = load.push_small_blob(c, repo, cfg)
    layer_digest = load.push_small_blob(c, repo, layer)
    manifest = load.oci_manifest(cfg_digest, len(cfg), layer_digest, len(layer))
    c.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
              headers={"Content-Type": load.OCI_MANIFEST}, expect=(201,))
    return (time.perf_counter() - t) * 1000


class Shape:
    def __init__(self, name: str, **kw):
        self.name = name
        self.spec = kw

    def fill_args(self) -> list[str]:
        return [f"--{k.replace('_', '-')}={v}" for k, v in self.spec.items()]


def measure(binary: str, shape: Shape, a, pg_url: str | None) -> dict:
    env = {}
    if pg_url:
        db = f"scale_{shape.name}_{os.getpid()}"
        subprocess.run(["psql", "-q", pg_url, "-c", f"CREATE DATABASE {db}"], check=True)
        env = {"BERTH_METADATA_BACKEND": "postgres", "BERTH_METADATA_URL": pg_url.rsplit("/", 1)[0] + "/" + db}
    load.BERTH_ENV.update(env)
    srv = load.Server(f"berth-{shape.name}", f"Berth ({shape.name})", "berth", binary, None, a.tmp, 120)
    r: dict = {"shape": shape.name, "spec": shape.spec}
    srv.start()
    srv.stop()  # the admin exists now
    data_dir = os.path.join(srv.dir, "data")
    log(f"{shape.name}: berth admin fill {' '.join(shape.fill_args())}")
    t = time.perf_counter()
    p = subprocess.run([binary, "admin", "fill", "--data-dir", data_dir] + shape.fill_args(),
                       env=dict(os.environ, **load.BERTH_ENV), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != 0:
        raise BenchError(f"berth admin fill failed:\n{p.stdout[-3000:]}")
    r["fill_s"] = time.perf_counter() - t
    log(f"{shape.name}: {p.stdout.strip().splitlines()[-1]} ({r['fill_s']:.0f} s in all)")
    r["db_mib"] = sum(os.path.getsize(f) for f in glob.glob(os.path.join(data_dir, "*.db*"))) / load.MiB

    starts = []
    for _ in range(3):
        starts.append(srv.start(again=True) * 1000)
        srv.stop()
    r["start_ms"] = statistics.median(starts)
    srv.start(again=True)
    r["idle_rss_mib"] = srv.rss_mib()
    c = Conn(srv.port)
    sp = shape.spec
    for method in ("GET", "HEAD"):
        r[method] = oha_random(srv.port, method, sp, 64, a.duration, srv.dir)
        r[method]["settle_s"] = settle(binary, data_dir)
        log(f"{shape.name}: {method} {r[method]}")
    r["rss_after_gets_mib"] = srv.rss_mib()

    pages: dict[str, float] = {}
    # Catalog pages: first, middle, last (the names are proj-NNN/repo-NNNNNN in order).
    per_project = -(-sp["repos"] // sp["projects"])
    def repo_name(i: int) -> str:
        return f"proj-{i // per_project:03d}/repo-{i:06d}"
    for label, last in (("catalog first", None), ("catalog middle", repo_name(sp["repos"] // 2)),
                        ("catalog end", repo_name(sp["repos"] - 150))):
        q = "/v2/_catalog?n=100" + (f"&last={urllib.parse.quote(last, safe='')}" if last else "")
        ms, body, _ = timed(c, q, a.samples)
        assert len(json.loads(body)["repositories"]) == 100, body[:200]
        pages[label] = ms
    big = sp["big_repo_tags"]
    for label, last in (("tags first", None), ("tags middle", f"t{big // 2:06d}"), ("tags end", f"t{big - 150:06d}")):
        q = "/v2/proj-000/big/tags/list?n=100" + (f"&last={last}" if last else "")
        ms, body, _ = timed(c, q, a.samples)
        assert len(json.loads(body)["tags"]) == 100, body[:200]
        pages[label] = ms
    _, h, _ = c.request("HEAD", "/v2/proj-000/signed/manifests/latest",
                        headers={"Accept": load.OCI_MANIFEST}, expect=(200,))
    subject = h["Docker-Content-Digest"]
    ms, body, headers = timed(c, f"/v2/proj-000/signed/referrers/{subject}", a.samples)
    got = len(json.loads(body)["manifests"])
    r["referrers_first_page"] = got
    r["referrers_link"] = headers.get("Link")
    pages[f"referrers ({got} in the answer)"] = ms
    api = "/api/v2.0/projects/proj-000/repositories"
    ms, body, headers = timed(c, f"{api}?page=1&page_size=100", a.samples)
    total = int(headers.get("X-Total-Count", "0"))
    pages["API repositories first"] = ms
    last_page = max(1, -(-total // 100))
    pages["API repositories end"], _, _ = timed(c, f"{api}?page={last_page}&page_size=100", a.samples)
    arts = f"{api}/big/artifacts"
    ms, body, headers = timed(c, f"{arts}?page=1&page_size=100", a.samples)
    pages["API artifacts of big first"] = ms
    total = int(headers.get("X-Total-Count", "0"))
    last_page = max(1, -(-total // 100))
    pages["API artifacts of big end"], _, _ = timed(c, f"{arts}?page={last_page}&page_size=100", a.samples)
    pages["API artifacts of a repository"], _, _ = timed(c, f"{api}/repo-000000/artifacts?page=1&page_size=100",
                                                         a.samples)
    r["pages_ms"] = pages

    layer = os.urandom(load.MiB)
    pushes = []
    for i in range(5):
        pushes.append(push_image(c, "proj-000/new", f"p{i}", layer + str(i).encode()))
    r["push_ms"] = statistics.median(pushes)
    r["rss_end_mib"] = srv.rss_mib()
    c.close()
    srv.discard()
    for k in env:
        load.BERTH_ENV.pop(k, None)
    return r


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(e: dict, f: dict) -> str:
    rows = [("", "empty", "full", "full/empty", "target")]
    def add(name, key_e, key_f, fmt, target=""):
        rows.append((name, fmt.format(key_e), fmt.format(key_f), ratio(key_f, key_e), target))
    rows.append(("manifests", str(e["manifests"]), str(f["manifests"]), "", ""))
    add("fill (s)", e["fill_s"], f["fill_s"], "{:.1f}")
    if f["db_mib"]:  # SQLite's files (PostgreSQL's are elsewhere)
        add("database (MiB)", e["db_mib"], f["db_mib"], "{:.0f}")
    add("start, exec to /v2/ (ms)", e["start_ms"], f["start_ms"], "{:.1f}", "full < 1000")
    for m in ("GET", "HEAD"):
        add(f"manifest {m} req/s (64 conns)", e[m]["rps"], f[m]["rps"], "{:,.0f}", "full/empty ≥ 0.90")
        add(f"manifest {m} p50 (ms)", e[m]["p50_ms"], f[m]["p50_ms"], "{:.2f}")
        add(f"manifest {m} p99 (ms)", e[m]["p99_ms"], f[m]["p99_ms"], "{:.2f}", "full < 5")
        add(f"  consumers caught up after (s)", e[m]["settle_s"], f[m]["settle_s"], "{:.1f}")
    for k in f["pages_ms"]:
        ke = next((x for x in e["pages_ms"] if x.split(" (")[0] == k.split(" (")[0]), None)
        add(f"{k} (ms)", e["pages_ms"].get(ke, 0.0), f["pages_ms"][k], "{:.2f}", "< 20")
    add("push of a new image (ms)", e["push_ms"], f["push_ms"], "{:.1f}", "full/empty ≤ 1.10")
    add("idle RSS (MiB)", e["idle_rss_mib"], f["idle_rss_mib"], "{:.0f}")
    add("RSS after the GETs (MiB)", e["rss_after_gets_mib"], f["rss_after_gets_mib"], "{:.0f}")
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def start_postgres(tmp: str) -> tuple[str, callable]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise BenchError("--postgres needs PostgreSQL (apt-get install postgresql)")
    pg = bins[-1]
    d = tempfile.mkdtemp(prefix="berth-scale-pg-", dir=tmp)
    shutil.chown(d, "postgres")
    port = load.free_port()
    def run(*argv):
        subprocess.run(["runuser", "-u", "postgres", "--"] + list(argv), check=True, stdout=subprocess.DEVNULL)
    run(f"{pg}/initdb", "-D", f"{d}/pg", "-A", "trust", "-U", "postgres", "--locale=C", "-E", "UTF8")
    run(f"{pg}/pg_ctl", "-D", f"{d}/pg", "-o", f"-p {port} -k {d} -c listen_addresses=127.0.0.1 "
        "-c shared_buffers=1GB -c max_connections=200", "-l", f"{d}/pg.log", "-w", "start")
    def stop():
        subprocess.run(["runuser", "-u", "postgres", "--", f"{pg}/pg_ctl", "-D", f"{d}/pg", "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)
    return f"postgres://postgres@127.0.0.1:{port}/postgres", stop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--berth-bin", default="target/release/berth")
    p.add_argument("--projects", type=int, default=100)
    p.add_argument("--repos", type=int, default=100_000)
    p.add_argument("--manifests-per-repo", type=int, default=10)
    p.add_argument("--links-per-repo", type=int, default=20)
    p.add_argument("--big-repo-tags", type=int, default=100_000)
    p.add_argument("--referrers", type=int, default=10_000)
    p.add_argument("--postgres", action="store_true", help="metadata in a PostgreSQL cluster started for the run")
    p.add_argument("--duration", type=float, default=5, help="seconds per oha run")
    p.add_argument("--samples", type=int, default=15, help="requests per listing page (median)")
    p.add_argument("--tmp", default=None, help="where the data directories go")
    p.add_argument("--quick", action="store_true", help="a small full registry (1,000 repositories)")
    p.add_argument("--json", default=None, help="write the results as JSON here too")
    a = p.parse_args(argv)
    if a.quick:
        a.repos, a.big_repo_tags, a.referrers, a.duration, a.samples = 1000, 2000, 1000, 2, 5
    if not shutil.which("oha"):
        sys.exit("oha is missing (cargo install oha)")
    binary = os.path.abspath(a.berth_bin)
    empty = Shape("empty", projects=1, repos=200, manifests_per_repo=a.manifests_per_repo,
                  links_per_repo=a.links_per_repo, big_repo_tags=1000, referrers=100, pool=1000)
    full = Shape("full", projects=a.projects, repos=a.repos, manifests_per_repo=a.manifests_per_repo,
                 links_per_repo=a.links_per_repo, big_repo_tags=a.big_repo_tags, referrers=a.referrers, pool=1000)
    stop_pg = None
    pg_url = None
    try:
        if a.postgres:
            pg_url, stop_pg = start_postgres(a.tmp or tempfile.gettempdir())
        results = {}
        for shape in (empty, full):
            r = measure(binary, shape, a, pg_url)
            s = shape.spec
            r["manifests"] = s["repos"] * s["manifests_per_repo"] + s["big_repo_tags"] + s["referrers"] + 1
            results[shape.name] = r
        print()
        print(f"Berth empty vs full ({'PostgreSQL' if a.postgres else 'SQLite'}), "
              f"{results['full']['manifests']:,} manifests when full")
        print(report(results["empty"], results["full"]))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        load.cleanup()
        if stop_pg:
            stop_pg()
    return 0


if __name__ == "__main__":
    sys.exit(main())
