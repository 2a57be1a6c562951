#!/usr/bin/env python3
"""Proves the dashboard lint can fail: every rule must catch a broken copy of the real dashboard.

Run: python3 tests/e2e/test_lint_dashboards.py
"""

import copy
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lint_dashboards as lint  # noqa: E402
import promql  # noqa: E402

DASHBOARD = os.path.join(lint.REPO, "dashboards", "secure-channel-pool.json")


def load():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def panels(d, ptype=None):
    return [p for p in lint._flatten_panels(d["panels"]) if p.get("type") != "row" and (ptype is None or p["type"] == ptype)]


def var(d, name):
    return next(t for t in d["templating"]["list"] if t["name"] == name)


def first_target_with(d, needle):
    for p in panels(d):
        for t in p.get("targets", []):
            if needle in t["expr"]:
                return p, t
    raise AssertionError(f"no target contains {needle!r}")


# rule -> function that breaks a copy of the dashboard so that this rule must fire
MUTATIONS = {
    "dashboard-uid-rule": lambda d: d.pop("uid"),
    "dashboard-title-rule": lambda d: d.update(title=""),
    "uneditable-dashboard-rule": lambda d: d.update(editable=True),
    "dashboard-id-rule": lambda d: d.update(id=42),
    "no-input-placeholders-rule": lambda d: panels(d)[0].update(datasource={"type": "prometheus", "uid": "${DS_PROMETHEUS}"}),
    "template-datasource-rule": lambda d: d["templating"]["list"].pop(0),
    "template-job-rule": lambda d: var(d, "job").update(allValue=None),
    "template-instance-rule": lambda d: var(d, "instance").update(multi=False),
    "template-endpoint-rule": lambda d: var(d, "endpoint").update(datasource={"type": "prometheus", "uid": "prom"}),
    "template-connection-id-rule": lambda d: var(d, "connection_id").update(includeAll=False),
    "template-on-time-change-reload-rule": lambda d: var(d, "instance").update(refresh=1),
    "template-label-promql-rule": lambda d: var(d, "instance").update(query="label_values(secure_channel_up, instance)"),
    "template-undefined-variable-rule": lambda d: first_target_with(d, "secure_channel_up")[1].update(
        expr='min by (job, instance) (secure_channel_up{job=~"$job", instance=~"$instance", cluster=~"$cluster"})'),
    "template-unused-rule": lambda d: [t.update(expr=t["expr"].replace(', connection_id=~"$connection_id"', ""))
                                       for p in panels(d) for t in p["targets"]],
    "panel-unique-id-rule": lambda d: panels(d)[1].update(id=panels(d)[0]["id"]),
    "panel-gridpos-rule": lambda d: panels(d)[1].update(gridPos=dict(panels(d)[0]["gridPos"])),
    "panel-title-description-rule": lambda d: panels(d)[3].pop("description"),
    "panel-datasource-rule": lambda d: panels(d)[2].update(datasource={"type": "prometheus", "uid": "prometheus"}),
    "panel-units-rule": lambda d: panels(d, "timeseries")[0]["fieldConfig"]["defaults"].pop("unit"),
    "panel-no-targets-rule": lambda d: panels(d)[4].update(targets=[]),
    "target-promql-rule": lambda d: first_target_with(d, "histogram_quantile")[1].update(
        expr=first_target_with(d, "histogram_quantile")[1]["expr"].replace("))", ")", 1)),
    "target-job-rule": lambda d: first_target_with(d, "secure_channel_pool_healthy")[1].update(
        expr=first_target_with(d, "secure_channel_pool_healthy")[1]["expr"].replace('job=~"$job", ', "")),
    "target-instance-rule": lambda d: first_target_with(d, "secure_channel_exporter_source_up")[1].update(
        expr=first_target_with(d, "secure_channel_exporter_source_up")[1]["expr"].replace(', instance=~"$instance"', "")),
    "target-endpoint-rule": lambda d: first_target_with(d, "secure_channel_pool_p95_latency_seconds")[1].update(
        expr=first_target_with(d, "secure_channel_pool_p95_latency_seconds")[1]["expr"].replace(', endpoint=~"$endpoint"', "")),
    "target-connection-id-rule": lambda d: first_target_with(d, "secure_channel_connection_p95_latency_seconds")[1].update(
        expr=first_target_with(d, "secure_channel_connection_p95_latency_seconds")[1]["expr"].replace(', connection_id=~"$connection_id"', "")),
    "target-rate-interval-rule": lambda d: first_target_with(d, "secure_channel_reconnects_total")[1].update(
        expr=first_target_with(d, "secure_channel_reconnects_total")[1]["expr"].replace("[$__rate_interval]", "[5m]")),
    "target-counter-agg-rule": lambda d: first_target_with(d, "secure_channel_pool_active_connections")[1].update(
        expr='sum by (job, instance, endpoint) (secure_channel_connection_errors_total{job=~"$job", instance=~"$instance", endpoint=~"$endpoint"})'),
    "target-refid-rule": lambda d: panels(d, "timeseries")[1]["targets"][1].update(refId="A"),
    "target-table-format-rule": lambda d: panels(d, "table")[0]["targets"][0].update(instant=False),
}


class LintCatchesEveryRule(unittest.TestCase):
    def test_real_dashboard_is_clean(self):
        f = lint.lint_dashboard(load())
        self.assertEqual(f.items, [])

    def test_every_rule_has_a_mutation(self):
        self.assertEqual(sorted(MUTATIONS), sorted(lint.RULES))

    def test_each_mutation_is_caught_by_its_rule(self):
        for rule, mutate in MUTATIONS.items():
            with self.subTest(rule=rule):
                d = copy.deepcopy(load())
                mutate(d)
                self.assertNotEqual(d, load(), "mutation changed nothing")
                f = lint.lint_dashboard(d)
                self.assertIn(rule, f.rules_failed(), f"findings were: {f.items}")


class PromQLParser(unittest.TestCase):
    def test_rejects_broken_queries(self):
        for bad in ["sum(rate(x[5m])", 'x{a=b}', "rate(x)[5m]", "frobnicate(x)", "x and", "sum by (a) (x) by (b)", ""]:
            with self.subTest(q=bad):
                with self.assertRaises(promql.PromQLError):
                    promql.parse(bad)

    def test_finds_selectors_and_parents(self):
        tree = promql.parse('sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval])) / on (x) group_left b')
        sels = list(promql.selectors(tree))
        self.assertEqual([s.name for s, _ in sels], ["a_bucket", "b"])
        parents = sels[0][1]
        self.assertIsInstance(parents[-1], promql.MatrixSelector)
        self.assertEqual(parents[-2].func, "rate")
        self.assertEqual(parents[-1].range, "$__rate_interval")

    def test_label_values(self):
        self.assertEqual(promql.parse_label_values('label_values(up{job=~"$job"}, instance)'), ('up{job=~"$job"}', "instance"))
        self.assertEqual(promql.parse_label_values("label_values(job)"), (None, "job"))


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    n_failed = len(result.failures) + len(result.errors)
    print(f"RESULT passed={result.testsRun - n_failed} failed={n_failed}")
    sys.exit(1 if n_failed or not result.testsRun else 0)
