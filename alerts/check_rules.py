#!/usr/bin/env python3
"""Checks on alerts/secure-channel.rules.yml beyond `promtool check rules`.

  conventions   every alert has `for:`, a severity of critical (pages) or warning (tickets),
                a summary, a description that uses the alert's labels and value, and a
                runbook_url pointing at a section of docs/runbook.md that says what the alert
                means, how to confirm it and what to do; every recording rule is named
                level:metric:operation and is used by an alert or another recording rule
  coverage      every alert appears in alerts/tests/*.yml both firing (non-empty exp_alerts)
                and quiet (exp_alerts: [])
  mutation      the unit tests must fail when an alert is deleted, when its `for:` is halved
                and when any of its thresholds is made 20 % more lenient - proof that the
                tests pin the firing, pending and just-below-threshold behaviour; and when a
                range window whose length matters (WINDOW_MUTATIONS) is shortened or widened
  operator      the PrometheusRule's spec passes `promtool check rules`

Usage: python3 alerts/check_rules.py [--no-mutation]
Ends with `RESULT passed=N failed=M`; exit status 1 when anything failed.
"""

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RULES = os.path.join(HERE, "secure-channel.rules.yml")
TESTS = sorted(glob.glob(os.path.join(HERE, "tests", "*.yml")))
RUNBOOK = os.path.join(REPO, "docs", "runbook.md")
PROMETHEUSRULE = os.path.join(HERE, "prometheusrule.yaml")
RUNBOOK_SUBSECTIONS = ("What it means", "How to confirm", "What to do")

passed = 0
failed = 0


def check(cond, msg, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {msg}")
    else:
        failed += 1
        print(f"FAIL {msg}" + (f": {detail}" if detail else ""))
    return cond


def github_slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def runbook_sections():
    """anchor -> (heading, body) for every level-2 heading of docs/runbook.md."""
    with open(RUNBOOK, encoding="utf-8") as f:
        text = f.read()
    sections = {}
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        sections[github_slug(heading)] = (heading.strip(), body)
    return sections


def load_rules(path=RULES):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def alerts_of(doc):
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def records_of(doc):
    return [r for g in doc["groups"] for r in g["rules"] if "record" in r]


def check_conventions(doc):
    sections = runbook_sections()
    alerts = alerts_of(doc)
    names = [a["alert"] for a in alerts]
    check(len(names) == len(set(names)), "alert names are unique", f"{names}")
    for a in alerts:
        name = a["alert"]
        ann = a.get("annotations", {})
        problems = []
        if "for" not in a:
            problems.append("no for:")
        if a.get("labels", {}).get("severity") not in ("critical", "warning"):
            problems.append(f"severity {a.get('labels', {}).get('severity')!r} is not critical or warning")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"no {key}")
        desc = ann.get("description", "")
        if "$value" not in desc:
            problems.append("description does not show $value")
        if "$labels.instance" not in desc or "$labels.job" not in desc:
            problems.append("description does not name $labels.instance and $labels.job")
        url = ann.get("runbook_url", "")
        if not url.startswith("docs/runbook.md#"):
            problems.append(f"runbook_url {url!r} does not point into docs/runbook.md")
        else:
            anchor = url.split("#", 1)[1]
            if anchor not in sections:
                problems.append(f"docs/runbook.md has no section #{anchor}")
            else:
                heading, body = sections[anchor]
                if heading != name:
                    problems.append(f"runbook section is titled {heading!r}, not {name!r}")
                for sub in RUNBOOK_SUBSECTIONS:
                    if not re.search(r"^### +" + re.escape(sub) + r"\s*$", body, flags=re.M):
                        problems.append(f"runbook section lacks '### {sub}'")
        check(not problems, f"{name}: for, severity, summary, description with labels and value, runbook section",
              "; ".join(problems))

    alert_names = set(names)
    for anchor, (heading, _) in sections.items():
        if re.fullmatch(r"SecureChannel\w+", heading):
            check(heading in alert_names, f"runbook section {heading} belongs to an alert of the rule file")

    exprs = " ".join(r["expr"] for r in doc["groups"][0]["rules"] + alerts) + " " + \
        " ".join(r["expr"] for g in doc["groups"] for r in g["rules"])
    for r in records_of(doc):
        name = r["record"]
        uses = sum(1 for g in doc["groups"] for other in g["rules"]
                   if other is not r and re.search(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])", other["expr"]))
        check(re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name) is not None and uses > 0,
              f"recording rule {name} is named level:metric:operation and used by {uses} rule(s)")
    del exprs


def check_coverage(doc):
    firing, quiet = set(), set()
    for path in TESTS:
        with open(path, encoding="utf-8") as f:
            t = yaml.safe_load(f)
        for test in t.get("tests", []):
            for art in test.get("alert_rule_test", []) or []:
                (firing if art.get("exp_alerts") else quiet).add(art["alertname"])
    group_names = [g["name"] for g in doc["groups"]]
    for path in TESTS:
        with open(path, encoding="utf-8") as f:
            t = yaml.safe_load(f)
        check(t.get("group_eval_order") == group_names,
              f"{os.path.relpath(path, REPO)} evaluates the groups in file order (group_eval_order), so results do not depend on promtool's random order",
              f"group_eval_order is {t.get('group_eval_order')!r}")
    for a in alerts_of(doc):
        name = a["alert"]
        check(name in firing and name in quiet, f"{name}: unit tests cover it firing and staying quiet",
              f"firing={name in firing} quiet={name in quiet}")


def test_files_by_alert():
    """alertname -> the test files that test it (a mutation of an alert can only be caught there)."""
    out = {}
    for path in TESTS:
        with open(path, encoding="utf-8") as f:
            t = yaml.safe_load(f)
        for test in t.get("tests", []):
            for art in test.get("alert_rule_test", []) or []:
                out.setdefault(art["alertname"], set()).add(path)
    return out


def promtool_test(workdir, rules_doc=None, files=None):
    """Run the unit tests (default: all) against rules_doc (default: the real file) in a scratch copy."""
    if rules_doc is not None:
        with open(os.path.join(workdir, "secure-channel.rules.yml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(rules_doc, f, sort_keys=False, width=1000)
    files = sorted(files or TESTS)
    r = subprocess.run(["promtool", "test", "rules"] + [os.path.join("tests", os.path.basename(p)) for p in files],
                       cwd=workdir, capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


_CMP = re.compile(r"(==|>=|<=|>|<)(\s*)(\([^()]*\)|[0-9][0-9.eE]*)")


def lenient(op, operand):
    """A 20 % more lenient comparison: more series pass it."""
    value = eval(operand, {"__builtins__": {}})  # operand is a number or (a * b) from our own file
    if op == "==":
        return "<=", f"{value + 1:g}"
    if value == 0:
        return {">": ">=", "<": "<="}.get(op, op), "-1" if op.startswith(">") else "1"
    if op in (">", ">="):
        return op, f"{value * 0.8:g}"
    return op, f"{value / 0.8:g}"


def mutations(doc):
    """(description, mutated rule document) for every mutation the tests must kill."""
    for gi, group in enumerate(doc["groups"]):
        for ri, rule in enumerate(group["rules"]):
            if "alert" not in rule:
                continue
            name = rule["alert"]

            def with_rule(new_rule, gi=gi, ri=ri):
                m = yaml.safe_load(yaml.safe_dump(doc))
                if new_rule is None:
                    del m["groups"][gi]["rules"][ri]
                else:
                    m["groups"][gi]["rules"][ri] = new_rule
                return m

            yield f"{name}: alert deleted", with_rule(None)
            if rule.get("for"):
                r2 = dict(rule)
                minutes = int(re.fullmatch(r"(\d+)m", rule["for"]).group(1))
                r2["for"] = f"{minutes * 30}s"
                yield f"{name}: for: {rule['for']} halved", with_rule(r2)
            for m in _CMP.finditer(rule["expr"]):
                op, operand = m.group(1), m.group(3)
                new_op, new_operand = lenient(op, operand)
                r2 = dict(rule)
                r2["expr"] = rule["expr"][:m.start()] + new_op + m.group(2) + new_operand + rule["expr"][m.end():]
                yield f"{name}: `{op} {operand}` relaxed to `{new_op} {new_operand}`", with_rule(r2)


# Range windows whose length is part of an alert's meaning, and the alert that must notice a
# change: SecureChannelPoolCannotOpenConnections needs its window longer than one pool cleanup
# (5 minutes by default; shorter and a sustained outage flaps) and shorter than its `for:`
# (longer and one failing cleanup pages).
WINDOW_MUTATIONS = {
    "endpoint:secure_channel_errors:increase8m": ("SecureChannelPoolCannotOpenConnections", ("4m", "16m")),
}


def window_mutations(doc):
    for gi, group in enumerate(doc["groups"]):
        for ri, rule in enumerate(group["rules"]):
            if rule.get("record") not in WINDOW_MUTATIONS:
                continue
            alert, windows = WINDOW_MUTATIONS[rule["record"]]
            for window in windows:
                m = yaml.safe_load(yaml.safe_dump(doc))
                expr, n = re.subn(r"\[[0-9]+[smhd]\]", f"[{window}]", rule["expr"])
                assert n == 1, f"{rule['record']}: expected one range window in {rule['expr']!r}"
                m["groups"][gi]["rules"][ri]["expr"] = expr
                yield f"{alert}: window of {rule['record']} changed to {window}", m


def check_mutations(doc, workers=2):
    base = tempfile.mkdtemp(prefix="secure-channel-rules-mutation-")
    try:
        dirs = []
        for i in range(workers):
            d = os.path.join(base, str(i))
            shutil.copytree(os.path.join(HERE, "tests"), os.path.join(d, "tests"))
            dirs.append(d)
        ok, out = promtool_test(dirs[0], doc)
        if not check(ok, "unit tests pass on an unmodified copy of the rule file", out[-2000:]):
            return
        windowed = list(window_mutations(doc))
        check(len(windowed) == sum(len(w) for _, w in WINDOW_MUTATIONS.values()),
              "every recording rule named in WINDOW_MUTATIONS exists in the rule file")
        muts = list(mutations(doc)) + windowed
        by_alert = test_files_by_alert()
        free = list(dirs)
        lock = threading.Lock()

        def run_one(item):
            desc, mutated = item
            with lock:
                d = free.pop()
            try:
                return desc, promtool_test(d, mutated, by_alert.get(desc.split(":")[0]))[0]
            finally:
                with lock:
                    free.append(d)

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run_one, muts))
        survivors = [desc for desc, ok in results if ok]
        for desc, ok in results:
            check(not ok, f"mutation caught: {desc}")
        n = len(results)
        check(n > 0 and not survivors, f"{n - len(survivors)}/{n} rule mutations make the unit tests fail",
              f"surviving: {survivors}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check_prometheusrule():
    with open(PROMETHEUSRULE, encoding="utf-8") as f:
        pr = yaml.safe_load(f)
    work = tempfile.mkdtemp(prefix="secure-channel-prometheusrule-")
    try:
        path = os.path.join(work, "spec.rules.yml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": pr["spec"]["groups"]}, f, sort_keys=False, width=1000)
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        check(r.returncode == 0, "alerts/prometheusrule.yaml spec.groups pass promtool check rules", r.stdout + r.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_alertmanager_example(doc):
    """The example Alertmanager config only names alerts that exist."""
    path = os.path.join(REPO, "deploy", "alertmanager", "alertmanager.yml")
    with open(path, encoding="utf-8") as f:
        am = yaml.safe_load(f)
    names = {a["alert"] for a in alerts_of(doc)}
    referenced = set()
    for rule in am.get("inhibit_rules", []):
        for m in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            mm = re.fullmatch(r'alertname="([^"]+)"', m)
            if mm:
                referenced.add(mm.group(1))
    check(referenced and referenced <= names,
          f"deploy/alertmanager/alertmanager.yml inhibit rules name existing alerts ({len(referenced)})",
          f"unknown: {sorted(referenced - names)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-mutation", action="store_true", help="skip the (slower) mutation run")
    args = ap.parse_args(argv)
    doc = load_rules()
    check_conventions(doc)
    check_coverage(doc)
    check_prometheusrule()
    check_alertmanager_example(doc)
    if not args.no_mutation:
        check_mutations(doc)
    print(f"RESULT passed={passed} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
