#!/usr/bin/env python3
"""Lifecycle and retention benchmark: one repository with N tagged images, evaluated.

Starts Berth (target/release/berth) on a temporary data directory, pushes N distinct
manifests (sharing one config and one layer), each with its own tag (a tenth `release-<i>`,
the rest `dev-<i>`) into one repository, then times, end to end through the management API:

  - an ECR lifecycle policy preview (three rules: keep 1,000 release images, expire dev
    images pushed more than 30 days ago, keep the newest half of everything): the issue's
    target is under 5 s for 100,000 tags;
  - a Harbor tag-retention dry run (latestPushedK 5,000 of release-*, dev-* pushed within
    7 days);
  - applying the lifecycle policy for real, and the delete rate it reaches.

    python3 bench/lifecycle.py                 # 100,000 tags
    python3 bench/lifecycle.py --tags 5000     # a quick run

Python 3.11 standard library only; shares its helpers with bench/gc.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time

_spec = importlib.util.spec_from_file_location("gcbench", os.path.join(os.path.dirname(__file__), "gc.py"))
gcbench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gcbench)
Client, log, start_berth = gcbench.Client, gcbench.log, gcbench.start_berth
OCI_MANIFEST = gcbench.OCI_MANIFEST
JSON = {"Content-Type": "application/json"}


def push_blob(c, repo: str, data: bytes) -> str:
    import hashlib

    d = "sha256:" + hashlib.sha256(data).hexdigest()
    st, _, body = c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                            {"Content-Type": "application/octet-stream"})
    if st != 201:
        raise SystemExit(f"blob upload: {st} {body[:200]!r}")
    return d


def poll(c, path: str, done) -> tuple[float, dict]:
    started = time.monotonic()
    while True:
        st, _, data = c.request("GET", path)
        if st != 200:
            raise SystemExit(f"GET {path}: {st} {data[:300]!r}")
        v = json.loads(data)
        if done(v):
            return time.monotonic() - started, v
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", type=int, default=100_000)
    ap.add_argument("--berth", default="target/release/berth")
    ap.add_argument("--threads", type=int, default=16)
    a = ap.parse_args()
    if not os.access(a.berth, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p berth ({a.berth} not found)")
    tmp = tempfile.mkdtemp(prefix="berth-lcbench-")
    proc = None
    try:
        data = os.path.join(tmp, "data")
        proc, port = start_berth(a.berth, data, None)
        c = Client(port)
        repo = "bench/app"
        config = push_blob(c, repo, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        layer = push_blob(c, repo, os.urandom(1024))
        n = a.tags
        log(f"pushing {n} tagged manifests into {repo} with {a.threads} threads")

        def push(i: int) -> None:
            tag = f"release-{i}" if i % 10 == 0 else f"dev-{i}"
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 78},
                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 1024}],
                   "annotations": {"n": str(i)}}
            st, _, resp = c.request("PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(doc).encode(),
                                    {"Content-Type": OCI_MANIFEST})
            if st != 201:
                raise SystemExit(f"manifest {i}: {st} {resp[:200]!r}")

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            list(ex.map(push, range(n), chunksize=64))
        log(f"pushed in {time.monotonic() - t0:.1f} s")

        base = "/api/v2.0/projects/bench/repositories/app/lifecycle_policy"
        keep_half = max(1, n // 2)
        policy = {"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["release"],
                                              "countType": "imageCountMoreThan", "countNumber": 1000},
             "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["dev-*"],
                                              "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30},
             "action": {"type": "expire"}},
            {"rulePriority": 3, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                              "countNumber": keep_half},
             "action": {"type": "expire"}},
        ]}
        st, _, body = c.request("PUT", base, json.dumps({"lifecyclePolicyText": json.dumps(policy)}).encode(), JSON)
        if st != 200:
            raise SystemExit(f"put policy: {st} {body[:300]!r}")

        t0 = time.monotonic()
        st, _, body = c.request("POST", base + "/preview", b"", JSON)
        if st != 200:
            raise SystemExit(f"preview: {st} {body[:300]!r}")
        _, preview = poll(c, base + "/preview?maxResults=1", lambda v: v["status"] != "IN_PROGRESS")
        preview_s = time.monotonic() - t0
        if preview["status"] != "COMPLETE":
            raise SystemExit(f"preview: {preview}")
        expiring = preview["summary"]["expiringImageTotalCount"]
        log(f"lifecycle preview: {preview_s:.2f} s, {expiring} would expire")

        st, _, body = c.request("GET", "/api/v2.0/projects/bench")
        project_id = json.loads(body)["project_id"]

        def rule(template: str, n: int, tags: str) -> dict:
            return {"action": "retain", "template": template, "params": {template: n},
                    "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags}],
                    "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                        "pattern": "**"}]}}

        retention = {"algorithm": "or", "rules": [rule("latestPushedK", 5000, "release-*"),
                                                  rule("nDaysSinceLastPush", 7, "dev-*")],
                     "scope": {"level": "project", "ref": project_id}}
        st, h, body = c.request("POST", "/api/v2.0/retentions", json.dumps(retention).encode(), JSON)
        if st != 201:
            raise SystemExit(f"retention: {st} {body[:300]!r}")
        rid = (h.get("Location") or h.get("location")).rsplit("/", 1)[1]
        t0 = time.monotonic()
        st, h, body = c.request("POST", f"/api/v2.0/retentions/{rid}/executions", b'{"dry_run": true}', JSON)
        eid = int((h.get("Location") or h.get("location")).rsplit("/", 1)[1])
        poll(c, f"/api/v2.0/retentions/{rid}/executions",
             lambda v: any(e["id"] == eid and e["status"] not in ("Pending", "Running") for e in v))
        retention_s = time.monotonic() - t0
        _, _, body = c.request("GET", f"/api/v2.0/retentions/{rid}/executions/{eid}/tasks")
        task = json.loads(body)[0]
        log(f"retention dry run: {retention_s:.2f} s, {task['retained']} of {task['total']} retained")

        t0 = time.monotonic()
        st, h, body = c.request("POST", base + "/executions", b"", JSON)
        if st != 201:
            raise SystemExit(f"apply: {st} {body[:300]!r}")
        loc = (h.get("Location") or h.get("location")).removeprefix("/api/v2.0")
        _, run = poll(c, "/api/v2.0" + loc, lambda v: v["status"] != "IN_PROGRESS")
        apply_s = time.monotonic() - t0
        expired = len(run["expiredImages"] or [])
        if run["status"] != "COMPLETE" or expired != expiring:
            raise SystemExit(f"apply: {run['status']}, {expired} expired, preview said {expiring}")

        print(f"\nLifecycle and retention over {n} tags in one repository:")
        print(f"  {'step':<34} {'seconds':>8} {'images':>9}")
        print(f"  {'lifecycle preview (3 rules)':<34} {preview_s:>8.2f} {expiring:>9}  would expire")
        print(f"  {'retention dry run (2 rules)':<34} {retention_s:>8.2f} {task['total'] - task['retained']:>9}  would go")
        print(f"  {'lifecycle applied (deletes)':<34} {apply_s:>8.2f} {expired:>9}  expired"
              f" ({expired / apply_s if apply_s else 0:.0f}/s)")
        target = "met" if preview_s < 5 else "MISSED"
        print(f"  target: evaluating {n} tags under 5 s: {target}")
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
