#!/usr/bin/env python3
"""Render the monitoring mixin (mixin/) into the files the repository ships.

jsonnet evaluates mixin/render.jsonnet (the mixin with an optional `_config` override); this
script writes each file in one fixed layout, so the output depends on the mixin alone, not on
the jsonnet version's own JSON or YAML printing:

    alerts/secure-channel.rules.yml   Prometheus rule file (recording rules, then alerts)
    alerts/prometheusrule.yaml        the same groups as a prometheus-operator PrometheusRule
    dashboards/<name>.json            one file per entry of grafanaDashboards

Run it through scripts/generate-mixin.sh. Needs jsonnet on PATH (Debian: apt-get install
jsonnet) and PyYAML.
"""

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RENDER = os.path.join(REPO, "mixin", "render.jsonnet")

YAML_HEADER = """\
# Generated from the monitoring mixin (mixin/) by scripts/generate-mixin.sh: do not edit.
# Change mixin/ (settings in mixin/config.libsonnet) and run scripts/generate-mixin.sh.
# Why each rule is as it is: the comments in mixin/rules/ and mixin/alerts/, and
# docs/dashboards-and-alerts.md.
"""

# Keys in the order people read rule files and Kubernetes objects; jsonnet sorts object keys
# alphabetically, which would put `expr` before `record`. Other keys keep jsonnet's order.
KEY_ORDER = ["apiVersion", "kind", "metadata", "spec", "groups", "name", "interval", "labels",
             "rules", "record", "alert", "expr", "for", "keep_firing_for", "annotations",
             "summary", "description", "runbook_url"]
# Rule labels come after `for` (their place in a rule), metadata labels after `name`.
RULE_KEY_ORDER = ["record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"]


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        # lists indented under their key, as in the rest of the repository's YAML
        return super().increase_indent(flow, False)


def _str(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def _ordered(value):
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    if not isinstance(value, dict):
        return value
    order = RULE_KEY_ORDER if ("record" in value or "alert" in value) else KEY_ORDER
    keys = sorted(value, key=lambda k: (order.index(k) if k in order else len(order),
                                        list(value).index(k)))
    return {k: _ordered(value[k]) for k in keys}


def format_yaml(doc):
    body = yaml.dump(_ordered(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1000, allow_unicode=True)
    return YAML_HEADER + body


def format_json(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def jsonnet_version():
    out = subprocess.run(["jsonnet", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip()


def render(config=None):
    """{path relative to the repository: file text} for the mixin with `config` merged in."""
    if shutil.which("jsonnet") is None:
        raise SystemExit("jsonnet is not installed (Debian: apt-get install jsonnet)")
    argv = ["jsonnet", RENDER]
    if config:
        argv += ["--tla-code", f"config={config}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"jsonnet failed:\n{proc.stderr}")
    files = json.loads(proc.stdout)
    out = {}
    for path, doc in sorted(files.items()):
        if path.endswith((".yml", ".yaml")):
            out[path] = format_yaml(doc)
        elif path.endswith(".json"):
            out[path] = format_json(doc)
        else:
            raise SystemExit(f"mixin/render.jsonnet: no format for {path}")
    return out


def check(files, root, say=print):
    """Say (print) a diff for every file that differs from the rendering; True when none does."""
    ok = True
    for path, text in files.items():
        full = os.path.join(root, path)
        try:
            with open(full, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            say(f"ok   {path} is what the mixin renders")
            continue
        ok = False
        if current is None:
            say(f"FAIL {path} is missing")
            continue
        say(f"FAIL {path} differs from what the mixin renders:")
        say("".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                         f"{path} (committed)", f"{path} (rendered)", n=1)).rstrip("\n"))
    # shipped files the mixin no longer renders (a dashboard renamed or removed)
    for path in sorted(os.listdir(os.path.join(root, "dashboards"))):
        rel = f"dashboards/{path}"
        if path.endswith(".json") and rel not in files:
            ok = False
            say(f"FAIL {rel} is not rendered by the mixin; remove it or add it to grafanaDashboards")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description="Render the monitoring mixin into alerts/ and dashboards/.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a shipped file differs from the rendering")
    ap.add_argument("--config", metavar="JSONNET",
                    help="jsonnet object merged into _config, e.g. '{ showMultiCluster: true }'")
    ap.add_argument("--output-dir", metavar="DIR", default=REPO,
                    help="directory to write into (default: the repository)")
    ap.add_argument("--print", metavar="FILE", dest="print_file",
                    help="write only this file (e.g. alerts/prometheusrule.yaml) to standard output")
    args = ap.parse_args(argv)
    if args.check and (args.config or args.print_file or args.output_dir != REPO):
        ap.error("--check compares the default rendering with the repository; use it alone")
    files = render(args.config)
    if args.print_file:
        if args.print_file not in files:
            ap.error(f"the mixin renders {', '.join(files)}, not {args.print_file}")
        sys.stdout.write(files[args.print_file])
        return 0
    if args.check:
        ok = check(files, REPO)
        if not ok:
            print("Run scripts/generate-mixin.sh and commit the result.")
        return 0 if ok else 1
    for path, text in files.items():
        full = os.path.join(args.output_dir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
