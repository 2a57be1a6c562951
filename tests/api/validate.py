#!/usr/bin/env python3
"""Validates recorded REST API answers against the OpenAPI document.

usage: validate.py OPENAPI_JSON RECORDS_JSONL

The OpenAPI document itself is checked with openapi-spec-validator; each
record ({"method", "route", "status", "content_type", "headers", "body"},
one JSON object a line, written by the black-box tests) must hit a
documented path, method and status, carry a declared media type, and a JSON
body must satisfy the response's schema (jsonschema, draft 2020-12, which
OpenAPI 3.1 uses). Exits 1 naming every answer that does not.
"""
import collections
import json
import sys

try:
    import jsonschema
    import referencing
    from openapi_spec_validator import validate as validate_spec
except ImportError as e:  # the test that calls us turns this into a failure
    print(f"missing Python package ({e}): pip install openapi-spec-validator jsonschema", file=sys.stderr)
    sys.exit(3)

BASE = "urn:secure-channel-exporter:openapi"


def main(spec_path, records_path):
    doc = json.load(open(spec_path))
    validate_spec(doc)
    registry = referencing.Registry().with_resource(
        BASE, referencing.Resource.from_contents(doc, default_specification=referencing.jsonschema.DRAFT202012))

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            target = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    failures = []
    seen = collections.Counter()
    records = [json.loads(line) for line in open(records_path) if line.strip()]
    if not records:
        failures.append("no answers were recorded")
    for i, r in enumerate(records):
        where = f"#{i} {r['method']} {r['route']} -> {r['status']}"
        if r["route"] == "*":
            # A path outside the document (unknown under /api/): the error body.
            seen[("*", r["method"], r["status"])] += 1
            try:
                body = json.loads(r["body"])
            except ValueError as e:
                failures.append(f"{where}: body is not JSON ({e})")
                continue
            validator = jsonschema.Draft202012Validator({"$ref": BASE + "#/components/schemas/Error"}, registry=registry)
            for e in list(validator.iter_errors(body))[:5]:
                failures.append(f"{where}: {e.message[:300]}")
            continue
        item = doc["paths"].get(r["route"])
        if item is None:
            failures.append(f"{where}: path not in the document")
            continue
        if r["method"] in ("GET", "HEAD", "OPTIONS"):
            op = item.get("get" if r["method"] != "OPTIONS" else "options")
        elif r["status"] == 405:
            # Other methods are refused; the refusal is documented with GET.
            op = item.get("get")
        else:
            op = None
        if op is None:
            failures.append(f"{where}: method not in the document")
            continue
        response = resolve(op["responses"].get(str(r["status"])))
        if response is None:
            failures.append(f"{where}: status not documented")
            continue
        seen[(r["route"], r["method"], r["status"])] += 1
        headers = {k.lower(): v for k, v in r.get("headers", {}).items()}
        for name in response.get("headers", {}):
            if name.lower() in ("retry-after", "allow", "www-authenticate") and name.lower() not in headers:
                failures.append(f"{where}: header {name} missing")
        content = response.get("content")
        if not content:
            continue
        if r["method"] == "HEAD":
            continue
        ctype = r.get("content_type", "")
        media = None
        for declared in content:
            if declared.replace(" ", "").lower() == ctype.replace(" ", "").lower() or \
                    declared.split(";")[0] == ctype.split(";")[0].strip() and declared == "application/json":
                media = declared
        if media is None:
            failures.append(f"{where}: content type {ctype!r} not among {list(content)}")
            continue
        if media != "application/json":
            continue
        try:
            body = json.loads(r["body"])
        except ValueError as e:
            failures.append(f"{where}: body is not JSON ({e}): {r['body'][:200]!r}")
            continue
        schema = content[media]["schema"]
        if "$ref" in schema:
            schema = {"$ref": BASE + schema["$ref"]}
        validator = jsonschema.Draft202012Validator(schema, registry=registry,
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        for e in errors[:5]:
            failures.append(f"{where}: {'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}")
    for (route, method, status), n in sorted(seen.items()):
        print(f"openapi: ok   {method:7} {route} {status} x{n}")
    for f in failures:
        print(f"openapi: FAIL {f}")
    print(f"openapi: {len(records)} answers, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
