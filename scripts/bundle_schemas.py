#!/usr/bin/env python3
"""Bundles docs/report.schema.json into docs/record.schema.json and docs/trace.schema.json
($defs.report, keeping its $id), so each schema is self-contained: a validator needs no
network and no registry. Run after changing the report schema; `cargo test` checks the copies
(present::json::tests::schemas_are_self_contained)."""
import json
import pathlib

docs = pathlib.Path(__file__).resolve().parent.parent / "docs"
report = json.loads((docs / "report.schema.json").read_text())
report.pop("$schema", None)

for name, place in [("record", ("sample", "report")), ("trace", ("summary", "report"))]:
    path = docs / f"{name}.schema.json"
    schema = json.loads(path.read_text())
    schema["$defs"]["report"] = report
    kind, field = place
    prop = schema["$defs"][kind]["properties"]
    description = prop[field].get("description")
    prop[field] = {"$ref": "#/$defs/report"}
    if description:
        prop[field] = {"description": description, "$ref": "#/$defs/report"}
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    print(f"bundled the report schema into {path}")
