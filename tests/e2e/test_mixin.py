#!/usr/bin/env python3
"""Tests of the monitoring mixin (mixin/), the way mixins are tested, on fresh renderings:

1. default settings: the drift check fails on a changed byte or a stale dashboard; the rules pass `promtool check rules` (rule file and the PrometheusRule's
   groups) and the project's `promtool test rules` unit tests (alerts/tests/), the dashboards
   pass the dashboard lint (tests/e2e/lint_dashboards.py), and the rendering is what the
   repository ships, byte for byte;
2. showMultiCluster: true: the rules and dashboards still pass promtool and the lint, the
   dashboard gets a cluster variable right after the data source, and every query carries
   the cluster label: every series selector filters on it, every aggregation and every
   vector matching keeps it, every variable query after it filters on it;
3. a changed _config (another exporterSelector, clusterLabel, runbookURLPattern,
   datasource regex, error budget and PrometheusRule label) shows in every file: every series
   selector carries the new exporter selector and none the default one, every runbook_url
   follows the new pattern, the thresholds follow the new budget, and so on.

Needs jsonnet, promtool and PyYAML. Ends with `RESULT passed=N failed=M`; exit 1 on failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import lint_dashboards  # noqa: E402
import mixin_render  # noqa: E402
import promql  # noqa: E402
from e2e import Report  # noqa: E402

RULES = "alerts/secure-channel.rules.yml"
PROMETHEUSRULE = "alerts/prometheusrule.yaml"
DEFAULT_SELECTOR = 'job="secure-channel-exporter"'

R = Report()
check = R.check


# ----------------------------------------------------------------------------- helpers

def write(files, root):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)


def rules_of(files):
    return [r for g in yaml.safe_load(files[RULES])["groups"] for r in g["rules"]]


def dashboards_of(files):
    return {p: json.loads(t) for p, t in files.items() if p.startswith("dashboards/")}


def targets(d):
    for p in lint_dashboards._flatten_panels(d.get("panels", [])):
        for t in p.get("targets") or []:
            yield p, t


def variable_queries(d):
    for v in d["templating"]["list"]:
        if v.get("type") == "query":
            yield v, promql.parse_label_values(v["query"])


def is_metric(sel):
    """A selector of a scraped series (recording rules are named level:metric:operation)."""
    return bool(sel.name) and ":" not in sel.name


def promtool_rules(root, label):
    """promtool check rules on the rule file and on the PrometheusRule's groups."""
    r = subprocess.run(["promtool", "check", "rules", os.path.join(root, RULES)], capture_output=True, text=True)
    check(r.returncode == 0, f"{label}: promtool check rules {RULES}", r.stdout + r.stderr)
    with open(os.path.join(root, PROMETHEUSRULE), encoding="utf-8") as f:
        pr = yaml.safe_load(f)
    spec = os.path.join(root, "prometheusrule.spec.yml")
    with open(spec, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": pr["spec"]["groups"]}, f, sort_keys=False, width=1000)
    r = subprocess.run(["promtool", "check", "rules", spec], capture_output=True, text=True)
    check(r.returncode == 0 and pr["kind"] == "PrometheusRule",
          f"{label}: {PROMETHEUSRULE} is a PrometheusRule whose groups pass promtool check rules", r.stdout + r.stderr)
    with open(os.path.join(root, RULES), encoding="utf-8") as f:
        check(yaml.safe_load(f)["groups"] == pr["spec"]["groups"],
              f"{label}: the PrometheusRule holds exactly the rule file's groups")


def lint(files, label):
    for path, d in dashboards_of(files).items():
        f = lint_dashboards.lint_dashboard(d, path)
        check(not f.items, f"{label}: {path} passes the dashboard lint ({len(lint_dashboards.RULES)} rules: "
              "datasource variable, no ${DS_*}, $__rate_interval, units, ...)",
              "; ".join(f"{r}: {w}: {m}" for r, w, m in f.items[:5]))


# ----------------------------------------------------------------------------- 1. defaults

def test_default(work):
    files = mixin_render.render()
    check(files == mixin_render.render(), "rendering twice gives the same bytes")
    root = os.path.join(work, "default")
    write(files, root)
    promtool_rules(root, "default")
    # the unit tests load ../secure-channel.rules.yml: run them next to the fresh rendering
    shutil.copytree(os.path.join(REPO, "alerts", "tests"), os.path.join(root, "alerts", "tests"))
    tests = sorted(os.listdir(os.path.join(root, "alerts", "tests")))
    r = subprocess.run(["promtool", "test", "rules"] + [os.path.join("tests", t) for t in tests],
                       cwd=os.path.join(root, "alerts"), capture_output=True, text=True)
    check(r.returncode == 0, f"default: promtool test rules alerts/tests/*.yml ({len(tests)} files) pass on the rendering",
          (r.stdout + r.stderr)[-3000:])
    lint(files, "default")
    for path, text in files.items():
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            check(f.read() == text, f"default: {path} in the repository is the rendering, byte for byte",
                  "run scripts/generate-mixin.sh")
    # the drift check itself: a changed byte in any shipped file, or a dashboard the mixin
    # does not render, must fail it
    for path, text in files.items():
        copy = os.path.join(work, "drift-" + os.path.basename(path))
        write(files, copy)
        with open(os.path.join(copy, path), "w", encoding="utf-8") as f:
            f.write(text.replace("secure_channel_up", "secure_channel_upp", 1))
        check(not mixin_render.check(files, copy, say=lambda _: None), f"drift check fails when {path} differs by one byte")
    copy = os.path.join(work, "drift-extra")
    write(files, copy)
    write({"dashboards/stale.json": "{}\n"}, copy)
    check(not mixin_render.check(files, copy, say=lambda _: None), "drift check fails on a dashboard the mixin does not render")
    for path, d in dashboards_of(files).items():
        check("$cluster" not in json.dumps(d) and all(v["name"] != "cluster" for v in d["templating"]["list"]),
              f"default: {path} has no cluster variable or filter (showMultiCluster is false)")
    for rule in rules_of(files):
        url = rule.get("annotations", {}).get("runbook_url")
        if url:
            check(url == f"docs/runbook.md#{rule['alert'].lower()}",
                  f"default: {rule['alert']} runbook_url {url} points at its docs/runbook.md section")
    return files


# ----------------------------------------------------------------------------- 2. multi-cluster

def test_multi_cluster(work):
    files = mixin_render.render("{ showMultiCluster: true }")
    root = os.path.join(work, "multi")
    write(files, root)
    promtool_rules(root, "multi-cluster")
    lint(files, "multi-cluster")

    problems = []
    for rule in rules_of(files):
        name = rule.get("record") or rule.get("alert")
        tree = promql.parse(rule["expr"])
        for node, _ in tree.walk():
            if isinstance(node, promql.Aggregation) and (node.without or "cluster" not in node.grouping):
                problems.append(f"{name}: {node.op} by ({', '.join(node.grouping)}) drops cluster")
            if isinstance(node, promql.Binary) and "on" in node.matching and "cluster" not in node.matching["on"]:
                problems.append(f"{name}: on ({', '.join(node.matching['on'])}) drops cluster")
        if "alert" in rule and "$labels.cluster" not in rule["annotations"]["description"]:
            problems.append(f"{name}: description does not name the cluster")
    check(not problems, "multi-cluster rules: every aggregation and vector matching keeps cluster; "
          "every alert description names it", "; ".join(problems[:5]))

    for path, d in dashboards_of(files).items():
        names = [v["name"] for v in d["templating"]["list"]]
        check(names[:2] == ["datasource", "cluster"], f"multi-cluster: {path} variables start with datasource, cluster",
              f"{names}")
        cl = next((v for v in d["templating"]["list"] if v["name"] == "cluster"), {})
        check(cl.get("type") == "query" and cl.get("hide") == 0 and cl.get("multi") and cl.get("allValue") == ".+",
              f"multi-cluster: {path} cluster variable is a visible multi-select query with All", json.dumps(cl)[:300])
        problems = []
        n = 0
        for p, t in targets(d):
            n += 1
            where = f"panel {p['id']} {t['refId']}"
            tree = promql.parse(t["expr"])
            for sel, _ in promql.selectors(tree):
                if not lint_dashboards._has_regex_var_matcher(sel, "cluster"):
                    problems.append(f"{where}: {sel!r} lacks cluster=~\"$cluster\"")
            for node, _ in tree.walk():
                if isinstance(node, promql.Aggregation) and (node.without or "cluster" not in node.grouping):
                    problems.append(f"{where}: {node.op} by ({', '.join(node.grouping)}) drops cluster")
            if t.get("format") != "table" and "{{cluster}}" not in t.get("legendFormat", ""):
                problems.append(f"{where}: legend {t.get('legendFormat')!r} does not show the cluster")
        for v, (selector, label) in variable_queries(d):
            if label == "cluster":
                continue
            sel = promql.parse(selector)
            if not lint_dashboards._has_regex_var_matcher(sel, "cluster"):
                problems.append(f"variable {v['name']}: {selector} lacks cluster=~\"$cluster\"")
        for p in lint_dashboards._flatten_panels(d.get("panels", [])):
            if p.get("type") == "table":
                order = p["transformations"][-1]["options"]["indexByName"]
                if order.get("cluster") != 0:
                    problems.append(f"panel {p['id']}: the table does not show the cluster first")
        check(n > 0 and not problems, f"multi-cluster: {path}: every one of {n} queries and every variable query "
              "filters on cluster=~\"$cluster\" and keeps the cluster label", "; ".join(problems[:5]))


# ----------------------------------------------------------------------------- 3. changed _config

CUSTOM = """{
  exporterSelector: 'job="sce-prod"',
  clusterLabel: 'k8s_cluster',
  showMultiCluster: true,
  runbookURLPattern: 'https://runbooks.example.org/secure-channel/%s.md',
  datasourceFilterRegex: '/^prom-.*/',
  errorBudget: 0.002,
  prometheusRuleLabels+: { release: 'kube-prometheus-stack' },
}"""


def test_changed_config(work, default):
    files = mixin_render.render(CUSTOM)
    root = os.path.join(work, "custom")
    write(files, root)
    promtool_rules(root, "changed _config")
    lint(files, "changed _config")
    for path in default:
        check(files[path] != default[path], f"changed _config: {path} differs from the default rendering")

    # exporterSelector: on every series selector of rules and dashboards, the default nowhere
    problems = []
    n = 0
    exprs = [(r.get("record") or r.get("alert"), r["expr"]) for r in rules_of(files)]
    for path, d in dashboards_of(files).items():
        exprs += [(f"{path} panel {p['id']} {t['refId']}", t["expr"]) for p, t in targets(d)]
        exprs += [(f"{path} variable {v['name']}", sel) for v, (sel, _) in variable_queries(d)]
    for where, expr in exprs:
        for sel, _ in promql.selectors(promql.parse(expr)):
            if not is_metric(sel):
                continue
            n += 1
            if not any(m.op == "=" and m.value == "sce-prod" for m in sel.matcher("job")):
                problems.append(f"{where}: {sel!r} lacks job=\"sce-prod\"")
    for path, text in files.items():
        if DEFAULT_SELECTOR.replace('"', '\\"') in text or DEFAULT_SELECTOR in text:
            problems.append(f"{path} still holds {DEFAULT_SELECTOR}")
    check(n > 0 and not problems, f"changed _config: all {n} series selectors of rules and dashboards carry "
          "exporterSelector job=\"sce-prod\", none the default", "; ".join(problems[:5]))

    # clusterLabel
    rules_text = files[RULES]
    check("by (k8s_cluster, job, instance, endpoint)" in rules_text and "(cluster," not in rules_text
          and "$labels.k8s_cluster" in rules_text,
          "changed _config: rules aggregate by clusterLabel k8s_cluster and alerts name it")
    for path, d in dashboards_of(files).items():
        names = [v["name"] for v in d["templating"]["list"]]
        check(names[1] == "k8s_cluster" and '$k8s_cluster' in json.dumps(d),
              f"changed _config: {path} filters on a k8s_cluster variable", f"{names}")
        ds = d["templating"]["list"][0]
        check(ds["type"] == "datasource" and ds["regex"] == "/^prom-.*/",
              f"changed _config: {path} datasource variable regex is /^prom-.*/", json.dumps(ds))
        thresholds = {p["id"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                      for p in lint_dashboards._flatten_panels(d["panels"]) if p.get("type") != "row"}
        check([s["value"] for s in thresholds[5]] == [None, 0.012, 0.0288],
              f"changed _config: {path} error-ratio thresholds follow errorBudget 0.002 (slow 0.012, fast 0.0288)",
              f"{thresholds[5]}")

    # runbookURLPattern and errorBudget in the alerts
    alerts = [r for r in rules_of(files) if "alert" in r]
    bad = [a["alert"] for a in alerts
           if a["annotations"]["runbook_url"] != f"https://runbooks.example.org/secure-channel/{a['alert'].lower()}.md"]
    check(alerts and not bad, f"changed _config: all {len(alerts)} runbook_url follow runbookURLPattern", f"{bad}")
    fast = next(a for a in alerts if a["alert"] == "SecureChannelErrorBudgetFastBurn")
    check("(14.4 * 0.002)" in fast["expr"] and "0.2 % error budget" in fast["annotations"]["description"],
          "changed _config: the fast burn alert uses errorBudget 0.002 in its expression and description")

    with open(os.path.join(root, PROMETHEUSRULE), encoding="utf-8") as f:
        pr = yaml.safe_load(f)
    check(pr["metadata"]["labels"].get("release") == "kube-prometheus-stack"
          and pr["metadata"]["labels"].get("app.kubernetes.io/name") == "secure-channel-exporter",
          "changed _config: the PrometheusRule carries the added label and keeps the default ones",
          f"{pr['metadata']['labels']}")


def main():
    for tool in ("jsonnet", "promtool"):
        if shutil.which(tool) is None:
            print(f"FAIL {tool} is not installed")
            print("RESULT passed=0 failed=1")
            return 1
    print(f"jsonnet: {mixin_render.jsonnet_version()}")
    work = tempfile.mkdtemp(prefix="secure-channel-mixin-")
    try:
        default = test_default(work)
        test_multi_cluster(work)
        test_changed_config(work, default)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"RESULT passed={R.passed} failed={R.failed}")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
