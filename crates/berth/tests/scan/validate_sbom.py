"""Validate an SBOM against the official JSON schema (vendored in crates/berth-scan/tests/schemas).

    python3 validate_sbom.py cyclonedx|spdx FILE

Exits 0 when valid; prints every error and exits 1 otherwise. Uses python-jsonschema with a
`referencing` registry so the CycloneDX schema's relative `$ref`s (spdx.schema.json,
jsf-0.82.schema.json) resolve to the vendored files, offline.
"""
import json
import pathlib
import sys

import jsonschema
from referencing import Registry, Resource

SCHEMAS = pathlib.Path(__file__).resolve().parents[3] / "berth-scan" / "tests" / "schemas"


def main() -> int:
    fmt, path = sys.argv[1], sys.argv[2]
    doc = json.loads(pathlib.Path(path).read_text())
    resources = []
    for f in SCHEMAS.glob("*.json"):
        schema = json.loads(f.read_text())
        res = Resource.from_contents(schema)
        resources.append((f.name, res))
        if "$id" in schema:
            resources.append((schema["$id"], res))
    registry = Registry().with_resources(resources)
    name = "bom-1.6.schema.json" if fmt == "cyclonedx" else "spdx-schema.json"
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors[:50]:
        print(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}")
    if errors:
        print(f"{len(errors)} schema errors in {path}")
        return 1
    print(f"valid {fmt}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
