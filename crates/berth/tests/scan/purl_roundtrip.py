"""Check PURLs against the purl specification's reference parser (PyPI `packageurl-python`).

    python3 purl_roundtrip.py FILE     # FILE: a JSON array of PURL strings

Each PURL must parse and print back byte for byte: then it is in the canonical form (names
normalised per type, qualifiers sorted, the right characters percent-encoded). Prints every
one that does not, with what the reference makes of it, and exits 1; exits 0 when all do.
"""
import json
import sys

from packageurl import PackageURL


def main() -> int:
    purls = json.load(open(sys.argv[1]))
    bad = []
    for p in purls:
        try:
            canonical = PackageURL.from_string(p).to_string()
        except ValueError as e:
            bad.append(f"{p}: does not parse: {e}")
            continue
        if canonical != p:
            bad.append(f"{p}: the reference writes {canonical}")
    for b in bad:
        print(b)
    print(f"{len(purls) - len(bad)} of {len(purls)} PURLs round-trip", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
