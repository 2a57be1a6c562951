#!/usr/bin/env python3
"""Structural lint for the Grafana dashboards in dashboards/ (pure Python, no Grafana needed).

Covers what grafana/dashboard-linter checks for Prometheus dashboards, under the same rule
names where one exists, plus the conventions of this project:

  dashboard rules   uid fixed, title, editable: false, id null, no __inputs / ${DS_...}
                    placeholders (they break file provisioning)
  template rules    a `datasource` variable of type datasource; job, instance, endpoint and
                    connection_id query variables on $datasource, multi-select, include All
                    with allValue ".+", refresh on time range change, valid label_values()
                    queries that only use variables defined before them; no unused or
                    undefined variables
  panel rules       unique ids (rows included), grid positions inside 24 columns and not
                    overlapping, a title and a description, the templated datasource, a
                    valid unit (defaults and overrides), at least one target
  target rules      valid PromQL; job=~"$job" and instance=~"$instance" on every selector;
                    endpoint=~"$endpoint" on every pool or connection series; connection_id
                    filtered wherever a query breaks down by connection; every range
                    selector uses $__rate_interval ($__range allowed in increase); counters
                    (_total, _count, _sum, _bucket) only inside rate/irate/increase; unique
                    refIds; table targets are instant queries in table format

Usage: lint_dashboards.py [DASHBOARD.json ...]   (default: every dashboards/*.json)
Exit status 1 when any finding is reported.
"""

import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts) that make sense for
# this exporter's data. A unit outside this list is a finding: extend the list deliberately.
VALID_UNITS = {
    "none", "short", "string", "percent", "percentunit",
    "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "dtdurationms", "clocks",
    "hertz", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
    "bytes", "decbytes", "bits", "decbits", "Bps", "binBps", "bps", "binbps",
    "bool", "bool_yes_no", "bool_on_off",
    "dateTimeAsIso", "dateTimeAsSystem", "dateTimeFromNow",
}
PANEL_TYPES_WITH_QUERIES = {"stat", "timeseries", "table", "gauge", "bargauge", "state-timeline",
                            "status-history", "heatmap", "piechart", "barchart", "graph", "singlestat"}
QUERY_VARIABLES = ("job", "instance", "endpoint", "connection_id")
VARIABLE_LABELS = {"job": "Job", "instance": "Instance"}
BUILTIN_VARIABLES = {"__rate_interval", "__range", "__interval", "__interval_ms", "__range_s",
                     "__range_ms", "__from", "__to", "__name", "__all", "__dashboard"}
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
RATE_FUNCS = {"rate", "irate", "increase"}
GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

RULES = [
    "dashboard-uid-rule", "dashboard-title-rule", "uneditable-dashboard-rule",
    "dashboard-id-rule", "no-input-placeholders-rule",
    "template-datasource-rule", "template-job-rule", "template-instance-rule",
    "template-endpoint-rule", "template-connection-id-rule",
    "template-on-time-change-reload-rule", "template-label-promql-rule",
    "template-undefined-variable-rule", "template-unused-rule",
    "panel-unique-id-rule", "panel-gridpos-rule", "panel-title-description-rule",
    "panel-datasource-rule", "panel-units-rule", "panel-no-targets-rule",
    "target-promql-rule", "target-job-rule", "target-instance-rule", "target-endpoint-rule",
    "target-connection-id-rule", "target-rate-interval-rule", "target-counter-agg-rule",
    "target-refid-rule", "target-table-format-rule",
]


class Findings:
    def __init__(self):
        self.items = []

    def add(self, rule, where, message):
        assert rule in RULES, rule
        self.items.append((rule, where, message))

    def rules_failed(self):
        return {r for r, _, _ in self.items}


def _vars_in(text):
    return {m.group(1) or m.group(2) for m in re.finditer(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)", text)}


def _flatten_panels(panels):
    """Top-level panels, plus the panels inside collapsed rows (each with its parent row)."""
    out = []
    for p in panels:
        out.append(p)
        for child in p.get("panels", []) or []:
            out.append(child)
    return out


def _has_regex_var_matcher(sel, label):
    return any(m.op == "=~" and m.value in (f"${label}", f"${{{label}}}") for m in sel.matcher(label))


def _is_pool_series(name):
    """Series that carry the pool's `endpoint` label (README, Metrics)."""
    if not name or not name.startswith("secure_channel_"):
        return False
    return name != "secure_channel_up" and not name.startswith("secure_channel_exporter_")


def lint_templating(d, f):
    tlist = d.get("templating", {}).get("list", [])
    by_name = {t.get("name"): t for t in tlist}

    ds = [t for t in tlist if t.get("type") == "datasource"]
    if len(ds) != 1:
        f.add("template-datasource-rule", "templating", f"expected exactly one datasource variable, found {len(ds)}")
    else:
        t = ds[0]
        if t.get("name") != "datasource":
            f.add("template-datasource-rule", "templating", f"datasource variable is named {t.get('name')!r}, should be 'datasource'")
        if t.get("query") != "prometheus":
            f.add("template-datasource-rule", "templating", f"datasource variable query is {t.get('query')!r}, should be 'prometheus'")
        if t.get("label") != "Data source":
            f.add("template-datasource-rule", "templating", f"datasource variable label is {t.get('label')!r}, should be 'Data source'")

    rule_for = {"job": "template-job-rule", "instance": "template-instance-rule",
                "endpoint": "template-endpoint-rule", "connection_id": "template-connection-id-rule"}
    for name in QUERY_VARIABLES:
        rule = rule_for[name]
        t = by_name.get(name)
        if t is None:
            f.add(rule, "templating", f"missing the {name} variable")
            continue
        where = f"variable {name}"
        if t.get("type") != "query":
            f.add(rule, where, f"type is {t.get('type')!r}, should be 'query'")
        if t.get("datasource") != DATASOURCE:
            f.add(rule, where, f"datasource is {t.get('datasource')!r}, should be {DATASOURCE}")
        if not t.get("multi"):
            f.add(rule, where, "should be multi-select")
        if not t.get("includeAll"):
            f.add(rule, where, "should include an All option")
        if t.get("allValue") != ".+":
            f.add(rule, where, f"allValue is {t.get('allValue')!r}, should be '.+'")
        if name in VARIABLE_LABELS and t.get("label") != VARIABLE_LABELS[name]:
            f.add(rule, where, f"label is {t.get('label')!r}, should be {VARIABLE_LABELS[name]!r}")

    defined = []
    for t in tlist:
        name = t.get("name", "?")
        if t.get("type") == "query":
            where = f"variable {name}"
            if t.get("refresh") != 2:
                f.add("template-on-time-change-reload-rule", where,
                      f"refresh is {t.get('refresh')!r}, should be 2 (on time range change)")
            query = t.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            try:
                selector, label = promql.parse_label_values(query or "")
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
                    raise promql.PromQLError(f"invalid label name {label!r}")
                if label != name:
                    raise promql.PromQLError(f"returns values of label {label!r} for variable {name!r}")
                if selector is not None:
                    tree = promql.parse(selector)
                    if not isinstance(tree, promql.VectorSelector):
                        raise promql.PromQLError("the first argument must be a series selector")
                for v in _vars_in(query or ""):
                    if v not in defined:
                        f.add("template-label-promql-rule", where,
                              f"uses ${v}, which is not a variable defined before it")
                # every earlier filter variable must narrow this one (job -> instance -> ...)
                earlier = [v for v in QUERY_VARIABLES if v in defined and v in by_name]
                if selector is not None and name in QUERY_VARIABLES:
                    for v in earlier:
                        if not _has_regex_var_matcher(tree, v):
                            f.add("template-label-promql-rule", where, f"does not filter on {v}=~\"${v}\"")
            except promql.PromQLError as e:
                f.add("template-label-promql-rule", where, f"invalid query {query!r}: {e}")
        defined.append(name)
    return by_name


def lint_dashboard(d, path="dashboard"):
    f = Findings()
    if not isinstance(d, dict):
        f.add("dashboard-title-rule", path, "not a JSON object")
        return f
    uid = d.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        f.add("dashboard-uid-rule", path, f"uid {uid!r} must be a fixed string of 1-40 [A-Za-z0-9_-]")
    if not d.get("title"):
        f.add("dashboard-title-rule", path, "dashboard has no title")
    if d.get("editable") is not False:
        f.add("uneditable-dashboard-rule", path, f"editable is {d.get('editable')!r}, should be false")
    if d.get("id") is not None:
        f.add("dashboard-id-rule", path, f"id is {d.get('id')!r}, should be null (Grafana assigns it)")
    raw = json.dumps(d)
    if "__inputs" in d or "__requires" in d or re.search(r"\$\{DS_[A-Z0-9_]+\}", raw):
        f.add("no-input-placeholders-rule", path,
              "export placeholders (__inputs/__requires/${DS_...}) break file provisioning; use the datasource variable")

    variables = lint_templating(d, f)
    used_vars = set()

    panels = _flatten_panels(d.get("panels", []))
    seen_ids = {}
    for p in panels:
        pid = p.get("id")
        label = f"panel {pid} {p.get('title')!r}"
        if not isinstance(pid, int):
            f.add("panel-unique-id-rule", label, "panel id must be an integer")
        elif pid in seen_ids:
            f.add("panel-unique-id-rule", label, f"id {pid} also used by {seen_ids[pid]!r}")
        else:
            seen_ids[pid] = p.get("title")

    # grid: top level (rows included) must not overlap; children of collapsed rows among themselves
    groups = [d.get("panels", [])] + [p.get("panels") for p in d.get("panels", []) if p.get("panels")]
    for group in groups:
        rects = []
        for p in group:
            g = p.get("gridPos") or {}
            label = f"panel {p.get('id')} {p.get('title')!r}"
            try:
                x, y, w, h = (int(g[k]) for k in "xywh")
            except (KeyError, TypeError, ValueError):
                f.add("panel-gridpos-rule", label, f"gridPos {g!r} needs integer x, y, w, h")
                continue
            if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > GRID_WIDTH:
                f.add("panel-gridpos-rule", label, f"gridPos {g!r} is outside the {GRID_WIDTH}-column grid")
            for other, (ox, oy, ow, oh) in rects:
                if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                    f.add("panel-gridpos-rule", label, f"overlaps {other}")
            rects.append((label, (x, y, w, h)))

    titles = {}
    for p in panels:
        ptype = p.get("type")
        label = f"panel {p.get('id')} {p.get('title')!r}"
        if not p.get("title"):
            f.add("panel-title-description-rule", label, "panel has no title")
        if ptype == "row":
            continue
        if p.get("title") in titles:
            f.add("panel-title-description-rule", label, "title is not unique")
        titles[p.get("title")] = True
        if not (p.get("description") or "").strip():
            f.add("panel-title-description-rule", label, "panel has no description")
        if ptype not in PANEL_TYPES_WITH_QUERIES:
            continue
        if p.get("datasource") != DATASOURCE:
            f.add("panel-datasource-rule", label, f"datasource is {p.get('datasource')!r}, should be {DATASOURCE}")
        fc = p.get("fieldConfig") or {}
        unit = (fc.get("defaults") or {}).get("unit")
        if unit not in VALID_UNITS:
            f.add("panel-units-rule", label, f"default unit {unit!r} is missing or not a known Grafana unit")
        for ov in fc.get("overrides") or []:
            for prop in ov.get("properties") or []:
                if prop.get("id") == "unit" and prop.get("value") not in VALID_UNITS:
                    f.add("panel-units-rule", label, f"override unit {prop.get('value')!r} is not a known Grafana unit")
        targets = p.get("targets") or []
        if not targets:
            f.add("panel-no-targets-rule", label, "panel has no queries")
        refids = set()
        for t in targets:
            ref = t.get("refId")
            tl = f"{label} target {ref}"
            if not ref or ref in refids:
                f.add("target-refid-rule", tl, "refId missing or not unique in the panel")
            refids.add(ref)
            if "datasource" in t and t["datasource"] != DATASOURCE:
                f.add("panel-datasource-rule", tl, f"target datasource is {t['datasource']!r}, should be {DATASOURCE}")
            if ptype == "table" and not (t.get("instant") and t.get("format") == "table"):
                f.add("target-table-format-rule", tl, "table queries must be instant queries with format 'table'")
            expr = t.get("expr", "")
            used_vars |= _vars_in(expr) | _vars_in(t.get("legendFormat", ""))
            for v in _vars_in(expr):
                if v not in variables and v not in BUILTIN_VARIABLES:
                    f.add("template-undefined-variable-rule", tl, f"uses ${v}, which is not defined")
            try:
                tree = promql.parse(expr)
            except promql.PromQLError as e:
                f.add("target-promql-rule", tl, f"invalid PromQL {expr!r}: {e}")
                continue
            lint_target_tree(tree, tl, f)

    for name in variables:
        if name in QUERY_VARIABLES and name not in used_vars:
            f.add("template-unused-rule", f"variable {name}", "is not used by any panel query")
    return f


def lint_target_tree(tree, tl, f):
    by_connection = any(isinstance(n, promql.Aggregation) and not n.without and "connection_id" in n.grouping
                        for n, _ in tree.walk())
    for sel, parents in promql.selectors(tree):
        if not _has_regex_var_matcher(sel, "job"):
            f.add("target-job-rule", tl, f"selector {sel!r} lacks job=~\"$job\"")
        if not _has_regex_var_matcher(sel, "instance"):
            f.add("target-instance-rule", tl, f"selector {sel!r} lacks instance=~\"$instance\"")
        if _is_pool_series(sel.name) and not _has_regex_var_matcher(sel, "endpoint"):
            f.add("target-endpoint-rule", tl, f"selector {sel!r} lacks endpoint=~\"$endpoint\"")
        if (by_connection and sel.name and sel.name.startswith("secure_channel_connection_")
                and not _has_regex_var_matcher(sel, "connection_id")):
            f.add("target-connection-id-rule", tl,
                  f"query breaks down by connection_id but {sel!r} lacks connection_id=~\"$connection_id\"")
        if sel.name and sel.name.endswith(COUNTER_SUFFIXES):
            ok = (len(parents) >= 2 and isinstance(parents[-1], promql.MatrixSelector)
                  and isinstance(parents[-2], promql.Call) and parents[-2].func in RATE_FUNCS)
            if not ok:
                f.add("target-counter-agg-rule", tl, f"counter {sel.name} is used outside rate/irate/increase")
    for node, parents in tree.walk():
        if isinstance(node, promql.Subquery):
            f.add("target-rate-interval-rule", tl, "subqueries are not used in these dashboards")
        if not isinstance(node, promql.MatrixSelector):
            continue
        func = parents[-1].func if parents and isinstance(parents[-1], promql.Call) else None
        allowed = {"$__rate_interval", "${__rate_interval}"}
        if func == "increase":
            allowed |= {"$__range", "${__range}"}
        if node.range not in allowed:
            f.add("target-rate-interval-rule", tl,
                  f"range [{node.range}] in {func or 'a range selector'}() should be $__rate_interval"
                  + (" (or $__range)" if func == "increase" else ""))


def main(argv):
    paths = argv or sorted(glob.glob(os.path.join(REPO, "dashboards", "*.json")))
    if not paths:
        print("FAIL: no dashboards found")
        return 1
    total_failed = 0
    total_passed = 0
    for path in paths:
        rel = os.path.relpath(path, REPO)
        try:
            with open(path, encoding="utf-8") as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"FAIL {rel}: not valid JSON: {e}")
            total_failed += 1
            continue
        f = lint_dashboard(d, rel)
        failed = f.rules_failed()
        n_panels = len([p for p in _flatten_panels(d.get("panels", [])) if p.get("type") != "row"])
        n_targets = sum(len(p.get("targets") or []) for p in _flatten_panels(d.get("panels", [])))
        for rule, where, message in f.items:
            print(f"  {rule}: {where}: {message}")
        print(f"{'FAIL' if failed else 'ok  '} {rel}: {len(RULES) - len(failed)}/{len(RULES)} rules clean "
              f"({n_panels} panels, {n_targets} queries, {len(f.items)} findings)")
        total_failed += len(failed)
        total_passed += len(RULES) - len(failed)
    print(f"RESULT passed={total_passed} failed={total_failed}")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
