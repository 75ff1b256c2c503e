#!/usr/bin/env python3
"""Independently compute the findings Berth's scanner should report for the content that
fetch.sh put in DIR, from the OSV pack.

    usage: expected.py DIR VULNDB_OSV_DIR [-o OUT.json]
    e.g.   expected.py /var/cache/berth-test/scan /work/shared/vulndb/osv -o expected.json

Reference implementations, none of them Berth's:
  * PyPI: `packaging.version.Version` (PEP 440) and `packaging.utils.canonicalize_name`
    (PEP 503). Versions that are not valid PEP 440 are skipped (in `versions[]` and events).
  * npm, crates.io, Go: node-semver (the copy bundled with npm, or `semver` from the npm
    registry if that copy is missing), called once per ecosystem to rank all versions.
  * Debian: `dpkg --compare-versions`.
OSV evaluation (https://ossf.github.io/osv-schema/#evaluation): records with `withdrawn` are
skipped; an affected entry matches if the version is listed in `versions[]` or lies in one
of its `SEMVER`/`ECOSYSTEM` ranges (`GIT` ranges ignored): events sorted by version
(`introduced: "0"` first, a stable sort keeps the given order among equal versions), then
walked: introduced <= v -> affected; fixed <= v -> not; last_affected < v -> not; and if
the range has `limit` events, v must be below one of them.

Inventory (read here without Berth's code):
  python: usr/lib/python3/site-packages/*.dist-info/METADATA  (Name, Version)
  npm:    every node_modules/<name>/package.json and node_modules/@scope/<name>/package.json
  rust:   every Cargo.lock; registry packages only (the root package has no `source`)
  go:     the build info embedded in each file under go/ (Go >= 1.18 format), stdlib version
          as `stdlib` plus each dependency module (`dep` lines)
  debian: var/lib/dpkg/status; matched by SOURCE package name and source version
Output: {"python": {"Name@version": [ids]}, "npm": {...}, "rust": {...}, "go": {...},
"debian": {...}, "aliases": {id: [aliases]}, "informational": {RUSTSEC id: kind}}.
Packages without findings are listed with [] (the must-not-match cases).
"""

import argparse
import email.parser
import functools
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

try:
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover
    sys.exit("expected.py needs 'packaging': python3 -m pip install packaging")


# ---------------------------------------------------------------- inventory -----------------
def inv_python(root):
    out = []
    for meta in sorted(glob.glob(f"{root}/**/*.dist-info/METADATA", recursive=True)):
        with open(meta, encoding="utf-8") as f:
            msg = email.parser.Parser().parse(f, headersonly=True)
        out.append((msg["Name"], msg["Version"]))
    return out


def inv_npm(root):
    out = []
    for pj in sorted(glob.glob(f"{root}/**/node_modules/**/package.json", recursive=True)):
        parts = pj.split("/")
        is_root = (parts[-3] == "node_modules" and not parts[-2].startswith("@")) or (
            len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")
        )
        if not is_root:
            continue
        with open(pj, encoding="utf-8") as f:
            j = json.load(f)
        if j.get("name") and j.get("version"):
            out.append((j["name"], j["version"]))
    return sorted(set(out))


def inv_rust(root):
    out = []
    for lock in sorted(glob.glob(f"{root}/**/Cargo.lock", recursive=True)):
        with open(lock, "rb") as f:
            for p in tomllib.load(f).get("package", []):
                if str(p.get("source", "")).startswith("registry+"):
                    out.append((p["name"], p["version"]))
    return sorted(set(out))


BUILDINFO_MAGIC = b"\xff Go buildinf:"


def _uvarint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        if c < 0x80:
            return x, i
        s += 7


def go_buildinfo(path):
    """(go version, modinfo text) from a Go >= 1.18 binary with inline build info strings."""
    with open(path, "rb") as f:
        data = f.read()
    i = data.find(BUILDINFO_MAGIC)
    while i >= 0:
        # header: 14-byte magic, pointer size, flags; bit 1 of flags = strings inline (Go >= 1.18),
        # then at +32 two varint-length-prefixed strings: the Go version and the module info
        if len(data) > i + 32 and data[i + 15] & 2:
            try:
                n, j = _uvarint(data, i + 32)
                vers = data[j : j + n].decode()
                j += n
                n, j = _uvarint(data, j)
                mod = data[j : j + n]
                # module info is wrapped in two 16-byte sentinels
                mod = mod[16:-16].decode() if len(mod) >= 33 and mod[-17:-16] == b"\n" else ""
                if vers.startswith("go"):
                    return vers, mod
            except (IndexError, UnicodeDecodeError):
                pass
        i = data.find(BUILDINFO_MAGIC, i + 1)
    return None


def go_semver(v):
    """Go's 'go1.21.13' / 'v1.2.3' -> OSV Go ecosystem version '1.21.13' / '1.2.3'."""
    if v.startswith("go"):
        v = v[2:]
        m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(.*)", v)
        if not m:
            return v
        major, minor, patch, rest = m.groups()
        # go1.21rc2 -> 1.21.0-rc.2 (the Go vulndb convention); go1.20 -> 1.20.0
        pre = re.fullmatch(r"(rc|beta)(\d+)", rest or "")
        return f"{major}.{minor}.{patch or 0}" + (f"-{pre[1]}.{pre[2]}" if pre else rest)
    return v[1:] if v.startswith("v") else v


def inv_go(root):
    out = []
    for p in sorted(glob.glob(f"{root}/**/*", recursive=True)):
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        bi = go_buildinfo(p)
        if not bi:
            continue
        vers, mod = bi
        out.append(("stdlib", go_semver(vers)))
        for line in mod.splitlines():
            f = line.split("\t")
            if f[0] == "dep" and len(f) >= 3:
                out.append((f[1], go_semver(f[2])))
    return sorted(set(out))


def inv_debian(root):
    out = []
    status = f"{root}/var/lib/dpkg/status"
    if not os.path.exists(status):
        return out
    with open(status, encoding="utf-8") as f:
        paras = f.read().split("\n\n")
    for para in paras:
        fld = {}
        for line in para.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                k, v = line.split(":", 1)
                fld[k] = v.strip()
        if not fld.get("Package") or "installed" not in fld.get("Status", ""):
            continue
        src, srcver = fld["Package"], fld["Version"]
        if "Source" in fld:
            m = re.fullmatch(r"(\S+)(?:\s+\((\S+)\))?", fld["Source"])
            src = m[1]
            srcver = m[2] or srcver
        out.append((fld["Package"], fld["Version"], src, srcver))
    return sorted(set(out))


# ---------------------------------------------------------------- orderings -----------------
class PyPIOrder:
    name_key = staticmethod(lambda n: canonicalize_name(n))

    def __init__(self, versions):
        self.v = {}
        for s in versions:
            try:
                self.v[s] = Version(s)
            except InvalidVersion:
                pass

    def valid(self, s):
        return s in self.v

    def cmp(self, a, b):
        x, y = self.v[a], self.v[b]
        return (x > y) - (x < y)


NODE_RANK = r"""
const semver = require(process.argv[1]);
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const ok = input.filter(v => semver.valid(v) !== null);
ok.sort(semver.compare);
const rank = {}; let r = 0;
ok.forEach((v, i) => { if (i > 0 && semver.compare(ok[i - 1], v) !== 0) r++; rank[v] = r; });
process.stdout.write(JSON.stringify(rank));
"""

_semver_path = None


def semver_module():
    """Path of a node-semver package: npm's own copy, else `npm install semver` into a tmp dir."""
    global _semver_path
    if _semver_path:
        return _semver_path
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
    cand = os.path.join(root, "npm", "node_modules", "semver")
    if not os.path.exists(os.path.join(cand, "package.json")):
        tmp = tempfile.mkdtemp(prefix="semver-")
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", tmp, "semver@7"], check=True)
        cand = os.path.join(tmp, "node_modules", "semver")
    _semver_path = cand
    return cand


class SemverOrder:
    name_key = staticmethod(lambda n: n)

    def __init__(self, versions):
        vs = sorted(set(versions))
        res = subprocess.run(
            ["node", "-e", NODE_RANK, semver_module()], input=json.dumps(vs), capture_output=True, text=True, check=True
        )
        self.rank = json.loads(res.stdout)

    def valid(self, s):
        return s in self.rank

    def cmp(self, a, b):
        x, y = self.rank[a], self.rank[b]
        return (x > y) - (x < y)


class DpkgOrder:
    name_key = staticmethod(lambda n: n)

    def __init__(self, versions):
        self.cache = {}

    def valid(self, s):
        return True

    @staticmethod
    def _lt(a, b):
        return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0

    def cmp(self, a, b):
        if a == b:
            return 0
        if (a, b) not in self.cache:
            r = -1 if self._lt(a, b) else (1 if self._lt(b, a) else 0)
            self.cache[(a, b)], self.cache[(b, a)] = r, -r
        return self.cache[(a, b)]


# ---------------------------------------------------------------- OSV -----------------------
def load_records(osv_dir, subdir):
    recs = []
    for path in sorted(glob.glob(os.path.join(osv_dir, subdir, "*.jsonl.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    recs.append(json.loads(line))
    return recs


EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


def in_range(order, v, events):
    evs = []
    limits = []
    for e in events:
        for kind in EVENT_KINDS:
            if kind in e:
                val = e[kind]
                if kind == "introduced" and val == "0":
                    evs.append((kind, val))
                elif order.valid(val):
                    if kind == "limit":
                        limits.append(val)
                    else:
                        evs.append((kind, val))
                # an event version the ordering cannot read is skipped

    def key(a, b):
        (_, x), (_, y) = a, b
        if x == y:
            return 0
        if x == "0" and a[0] == "introduced":
            return -1
        if y == "0" and b[0] == "introduced":
            return 1
        return order.cmp(x, y)

    affected = False
    for kind, val in sorted(evs, key=functools.cmp_to_key(key)):  # sorted() is stable
        if kind == "introduced":
            if val == "0" or order.cmp(v, val) >= 0:
                affected = True
        elif kind == "fixed":
            if order.cmp(v, val) >= 0:
                affected = False
        elif kind == "last_affected":
            if order.cmp(v, val) > 0:
                affected = False
    if affected and limits and not any(order.cmp(v, lim) < 0 for lim in limits):
        affected = False
    return affected


def entry_matches(order, v, aff):
    for listed in aff.get("versions") or []:
        if listed == v or (order.valid(listed) and order.cmp(listed, v) == 0):
            return True
    for rng in aff.get("ranges") or []:
        if rng.get("type") in ("SEMVER", "ECOSYSTEM") and in_range(order, v, rng.get("events", [])):
            return True
    return False


def match(records, ecosystem_pred, order_cls, packages):
    """packages: [(display_key, osv_name, version)] -> {display_key: [ids]}, {id: aliases}."""
    relevant = []
    names = {order_cls.name_key(n) for _, n, _ in packages}
    versions = {v for _, _, v in packages}
    for r in records:
        if r.get("withdrawn"):
            continue
        for aff in r.get("affected", []):
            pkg = aff.get("package", {})
            if ecosystem_pred(pkg.get("ecosystem", "")) and order_cls.name_key(pkg.get("name", "")) in names:
                relevant.append((r, aff))
                versions.update(aff.get("versions") or [])
                for rng in aff.get("ranges") or []:
                    for e in rng.get("events", []):
                        versions.update(str(x) for x in e.values())
    order = order_cls(versions)
    found, aliases = {}, {}
    for key, name, v in packages:
        ids = found.setdefault(key, [])
        if not order.valid(v):
            print(f"warning: {key}: version not valid for this ecosystem; no matching", file=sys.stderr)
            continue
        for r, aff in relevant:
            if order_cls.name_key(aff["package"]["name"]) != order_cls.name_key(name):
                continue
            if r["id"] not in ids and entry_matches(order, v, aff):
                ids.append(r["id"])
                aliases[r["id"]] = sorted(r.get("aliases") or [])
        ids.sort()
    return found, aliases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("osv_dir")
    ap.add_argument("-o", "--out")
    a = ap.parse_args()
    d, osv = a.dir, a.osv_dir
    result, aliases, informational = {}, {}, {}

    py = [(f"{n}@{v}", n, v) for n, v in inv_python(f"{d}/python")]
    result["python"], al = match(load_records(osv, "PyPI"), lambda e: e == "PyPI", PyPIOrder, py)
    aliases.update(al)

    npm = [(f"{n}@{v}", n, v) for n, v in inv_npm(f"{d}/npm")]
    result["npm"], al = match(load_records(osv, "npm"), lambda e: e == "npm", SemverOrder, npm)
    aliases.update(al)

    crates = load_records(osv, "crates.io")
    rust = [(f"{n}@{v}", n, v) for n, v in inv_rust(f"{d}/rust")]
    result["rust"], al = match(crates, lambda e: e == "crates.io", SemverOrder, rust)
    aliases.update(al)
    for r in crates:
        info = (r.get("database_specific") or {}).get("informational")
        if info and r["id"] in al:
            informational[r["id"]] = info

    if os.path.isdir(f"{d}/go"):
        go = [(f"{n}@{v}", n, v) for n, v in inv_go(f"{d}/go")]
        result["go"], al = match(load_records(osv, "Go"), lambda e: e == "Go", SemverOrder, go)
        aliases.update(al)

    if os.path.isdir(f"{d}/debian") and shutil.which("dpkg"):
        deb = [(f"{p}@{v}", src, sv) for p, v, src, sv in inv_debian(f"{d}/debian")]
        result["debian"], al = match(load_records(osv, "Debian"), lambda e: e == "Debian:12", DpkgOrder, deb)
        aliases.update(al)

    result["aliases"] = dict(sorted(aliases.items()))
    result["informational"] = dict(sorted(informational.items()))
    text = json.dumps(result, indent=1, sort_keys=False) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    for eco in ("python", "npm", "rust", "go", "debian"):
        if eco in result:
            hit = sum(1 for ids in result[eco].values() if ids)
            n = sum(len(ids) for ids in result[eco].values())
            print(f"{eco}: {len(result[eco])} packages, {hit} affected, {n} findings", file=sys.stderr)


if __name__ == "__main__":
    main()
