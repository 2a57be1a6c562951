#!/usr/bin/env python3
"""Derive the e2e copy of alerts/secure-channel.rules.yml with time compressed.

Every range window (`[5m]`), `offset` and `for:` / `keep_firing_for:` duration is divided by
SCALE (default 60: minutes become seconds); expressions, thresholds, labels and annotations
stay exactly as in the real file. Windows never drop below 2 s so a rate still sees two
samples at a 1 s scrape interval.

    python3 tests/e2e/derive_test_rules.py [--scale 60] [--output FILE]
"""

import argparse
import copy
import os
import re
import sys

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(REPO, "alerts", "secure-channel.rules.yml")
MIN_SECONDS = 2.0

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = r"(?:[0-9]+(?:ms|[smhdwy]))+"


def parse_duration(text):
    parts = re.findall(r"([0-9]+)(ms|[smhdwy])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def format_duration(seconds):
    ms = int(round(seconds * 1000))
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def scale_duration(text, scale):
    return format_duration(max(parse_duration(text) / scale, MIN_SECONDS))


def scale_expr(expr, scale):
    expr = re.sub(r"\[(" + _DURATION + r")(:(" + _DURATION + r")?)?\]",
                  lambda m: "[" + scale_duration(m.group(1), scale)
                  + ((":" + (scale_duration(m.group(3), scale) if m.group(3) else "")) if m.group(2) else "") + "]",
                  expr)
    return re.sub(r"\boffset\s+(" + _DURATION + r")",
                  lambda m: "offset " + scale_duration(m.group(1), scale), expr)


def derive(doc, scale):
    doc = copy.deepcopy(doc)
    for group in doc["groups"]:
        if "interval" in group:
            group["interval"] = scale_duration(group["interval"], scale)
        for rule in group["rules"]:
            rule["expr"] = scale_expr(rule["expr"], scale)
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scale_duration(rule[key], scale)
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=60.0)
    ap.add_argument("--rules", default=RULES)
    ap.add_argument("--output", default="-")
    args = ap.parse_args(argv)
    with open(args.rules, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    text = yaml.safe_dump(derive(doc, args.scale), sort_keys=False, width=1000)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
