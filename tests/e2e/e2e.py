#!/usr/bin/env python3
"""End-to-end proof of the dashboards and alerts against a real Prometheus and Alertmanager.

    2 x (simulator -> exporter) -> Prometheus (1 s scrape and evaluation) -> Alertmanager -> webhook

The two simulators are the two pool models (docs/pool-signals.md): "published" (lists only idle
connections, never gets a used one back) and "returning" (used connections come back to the
list with their errors). Both run at once, each behind its own exporter, scraped by the same
Prometheus under the same job; alerts are told apart by `instance`.

1. Starts both simulators (cleanup interval 300 s / --scale), both exporters, Prometheus and
   Alertmanager on free loopback ports with temporary storage, and a webhook receiver inside
   this process. Prometheus loads a copy of alerts/secure-channel.rules.yml whose range
   windows and `for:` durations are divided by --scale (tests/e2e/derive_test_rules.py);
   nothing else changes.
2. Normal operation: a busy period (callers hold every connection: the published pool lists
   nothing and /healthz answers 503) and a quiet one (no callers: idle connections whose
   last_activity never moves). No alert may fire (Prometheus ALERTS and the webhook); alerts
   seen pending are reported.
3. Dashboards: every variable query and every panel query of dashboards/*.json, with the
   variables substituted (once with All selected, once with one concrete value each), runs
   against Prometheus for each model's instance and returns data, except panels listed in
   ALLOWED_EMPTY for a model with the reason.
4. Faults, on both models at once: each fault must make its alerts fire through Alertmanager
   to the webhook with the expected labels and annotations, and resolve after the fault is
   cleared; an alert that neither the fault nor the one before it explains is a failure. The
   published pool's error burst must fire nothing (the blind spot, checked against the
   simulator's own count of failed operations).
5. Every process started here is stopped at the end, also on failure or interruption.

    python3 tests/e2e/e2e.py [--bin-dir target/debug] [--scale 60] [--keep-tmp]

Ends with `RESULT passed=N failed=M`; exit status 1 when anything failed.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import derive_test_rules  # noqa: E402
import promql  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(REPO, "alerts", "secure-channel.rules.yml")
JOB = "secure-channel-exporter"
ENDPOINT = "relay.example.net:443"
RATE_INTERVAL = "10s"  # what Grafana's $__rate_interval is here: >= 4 scrape intervals of 1 s


# --------------------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def _stamp(self):
        return f"[{time.monotonic() - self.t0:6.1f}s]"

    def ok(self, msg):
        self.passed += 1
        print(f"{self._stamp()} ok   {msg}", flush=True)

    def fail(self, msg):
        self.failed += 1
        print(f"{self._stamp()} FAIL {msg}", flush=True)

    def check(self, cond, msg, detail=""):
        if cond:
            self.ok(msg)
        else:
            self.fail(msg + (f": {detail}" if detail else ""))
        return cond

    def info(self, msg):
        print(f"{self._stamp()}      {msg}", flush=True)


R = Report()


# --------------------------------------------------------------------------- processes

class Processes:
    """Processes started by this test, stopped by pid at exit (also on failure)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = {}
        self.logs = {}

    # setpriv (util-linux) makes the kernel send SIGTERM to the child if this process dies
    # without cleaning up (SIGKILL, crash), so nothing outlives the test.
    SETPRIV = shutil.which("setpriv")

    def start(self, name, argv):
        log_path = os.path.join(self.tmp, f"{name}.log")
        log = open(log_path, "ab")
        if self.SETPRIV:
            argv = [self.SETPRIV, "--pdeathsig", "TERM", "--"] + argv
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.tmp)
        log.close()
        self.procs[name] = proc
        self.logs[name] = log_path
        R.info(f"started {name} (pid {proc.pid}): {' '.join(argv)}")
        return proc

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def stop(self, name, timeout=10):
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def tail(self, name, lines=25):
        try:
            with open(self.logs[name], "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except (KeyError, OSError):
            return ""
        return "\n".join("    | " + line for line in data[-lines:])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- HTTP

def http(method, url, params=None, timeout=5.0):
    if params:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params, doseq=True)
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url, params=None, timeout=5.0):
    status, body = http("GET", url, params, timeout)
    if status != 200:
        raise RuntimeError(f"GET {url} -> {status}: {body[:300]!r}")
    return json.loads(body)


def wait_for(what, predicate, timeout, interval=0.5):
    """Poll predicate() until it returns a truthy value; return it, or None on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, RuntimeError, ValueError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            R.info(f"timed out after {timeout:.0f}s waiting for {what}"
                   + (f" (last error: {last_error})" if last_error else ""))
            return None
        time.sleep(interval)


# --------------------------------------------------------------------------- webhook

class Webhook:
    """Alertmanager webhook receiver: keeps every notification with the time it arrived."""

    def __init__(self):
        self.notifications = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"invalid": body.decode("utf-8", "replace")}
                with hook.lock:
                    hook.notifications.append((time.time(), payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, since=0.0):
        """(arrival time, alert) for every alert in every notification since `since`."""
        with self.lock:
            items = list(self.notifications)
        return [(t, a) for t, p in items if t >= since for a in p.get("alerts", [])]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the stack

# Normal busy load (docs/pool-behaviour.md, tests/fixtures/realpool/busy): 2 callers, about 55 operations/s,
# 10 operations per checked-out connection. On the published model every connection is held
# by a caller: the status lists none and /healthz answers 503.
BUSY = {"callers": 2, "ops_per_second": 55, "ops_per_checkout": 10, "error_fraction": 0.001, "slow_fraction": 0}
QUIET = {"callers": 0}
MODELS = ("published", "returning")
CLEANUP_INTERVAL_S = 300  # the pool's default cleanup_interval, scaled like the rules
MAX_LIFETIME_S = 1800  # the pool's default max_lifetime, scaled like the rules


class Pool:
    """One simulated pool of a model and the exporter in front of it."""

    def __init__(self, stack, model):
        self.stack = stack
        self.model = model
        self.sim_port = free_port()
        self.exporter_port = free_port()
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.exporter = f"http://127.0.0.1:{self.exporter_port}"
        self.instance = f"127.0.0.1:{self.exporter_port}"

    def start_sim(self):
        scale = self.stack.args.scale
        cleanup = derive_test_rules.format_duration(max(CLEANUP_INTERVAL_S / scale, 1.0))
        max_age = derive_test_rules.format_duration(max(MAX_LIFETIME_S / scale, 5.0))
        self.stack.procs.start(f"simulator-{self.model}", [
            os.path.join(self.stack.args.bin_dir, "secure-channel-sim"),
            "--web.listen-address", f"127.0.0.1:{self.sim_port}",
            "--model", self.model, "--connections", "4", "--endpoint", ENDPOINT,
            "--cleanup-interval", cleanup, "--max-age", max_age, "--tick", "250ms",
            "--callers", str(BUSY["callers"]), "--ops-per-second", str(BUSY["ops_per_second"]),
            "--ops-per-checkout", str(BUSY["ops_per_checkout"]), "--error-fraction", str(BUSY["error_fraction"])])

    def start_exporter(self):
        self.stack.procs.start(f"exporter-{self.model}", [
            os.path.join(self.stack.args.bin_dir, "secure-channel-exporter"),
            "--pool.url", self.sim,
            "--web.listen-address", f"127.0.0.1:{self.exporter_port}",
            "--pool.timeout", "5s", "--log.level", "info", "--log.format", "logfmt"])

    def stop_exporter(self):
        self.stack.procs.stop(f"exporter-{self.model}")

    def restart_exporter(self):
        self.start_exporter()
        return wait_for(f"exporter-{self.model} back", lambda: http("GET", f"{self.exporter}/health")[0] == 200, 30)

    # simulator control
    def fault(self, name, params=None):
        status, body = http("PUT", f"{self.sim}/sim/faults/{name}", params)
        if status // 100 != 2:
            raise RuntimeError(f"PUT /sim/faults/{name} on {self.model} -> {status}: {body[:200]!r}")

    def clear_faults(self):
        status, body = http("DELETE", f"{self.sim}/sim/faults")
        if status // 100 != 2:
            raise RuntimeError(f"DELETE /sim/faults on {self.model} -> {status}: {body[:200]!r}")

    def load(self, **params):
        status, body = http("PUT", f"{self.sim}/sim/load", params)
        if status // 100 != 2:
            raise RuntimeError(f"PUT /sim/load {params} on {self.model} -> {status}: {body[:200]!r}")

    def state(self):
        return get_json(f"{self.sim}/sim/state")


class Stack:
    def __init__(self, args, tmp, procs, hook):
        self.args = args
        self.tmp = tmp
        self.procs = procs
        self.hook = hook
        self.pools = {m: Pool(self, m) for m in MODELS}
        self.prom_port = free_port()
        self.am_port = free_port()
        self.prom = f"http://127.0.0.1:{self.prom_port}"
        self.am = f"http://127.0.0.1:{self.am_port}"
        self.t0 = time.time()

    # configs
    def write_configs(self):
        with open(RULES, encoding="utf-8") as f:
            real = yaml.safe_load(f)
        derived = derive_test_rules.derive(real, self.args.scale)
        self.rules_path = os.path.join(self.tmp, "rules.yml")
        with open(self.rules_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(derived, f, sort_keys=False, width=1000)
        self.real_rules = {r["alert"]: r for g in real["groups"] for r in g["rules"] if "alert" in r}
        self.test_rules = {r["alert"]: r for g in derived["groups"] for r in g["rules"] if "alert" in r}

        prom_cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [self.rules_path],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}]},
            "scrape_configs": [{"job_name": JOB, "static_configs": [
                {"targets": [p.instance for p in self.pools.values()]}]}],
        }
        self.prom_cfg_path = os.path.join(self.tmp, "prometheus.yml")
        with open(self.prom_cfg_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(prom_cfg, f, sort_keys=False)

        am_cfg = {
            "route": {"receiver": "webhook", "group_by": ["..."], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "webhook", "webhook_configs": [
                {"url": f"http://127.0.0.1:{self.hook.port}/alerts", "send_resolved": True}]}],
        }
        self.am_cfg_path = os.path.join(self.tmp, "alertmanager.yml")
        with open(self.am_cfg_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(am_cfg, f, sort_keys=False)

    def start_prometheus(self):
        self.procs.start("prometheus", [
            self.args.prometheus,
            f"--config.file={self.prom_cfg_path}",
            f"--storage.tsdb.path={os.path.join(self.tmp, 'prometheus-data')}",
            f"--web.listen-address=127.0.0.1:{self.prom_port}",
            "--storage.tsdb.retention.time=1d",
            "--rules.alert.resend-delay=1s",
            "--log.level=info"])

    def start_alertmanager(self):
        self.procs.start("alertmanager", [
            self.args.alertmanager,
            f"--config.file={self.am_cfg_path}",
            f"--storage.path={os.path.join(self.tmp, 'alertmanager-data')}",
            f"--web.listen-address=127.0.0.1:{self.am_port}",
            "--cluster.listen-address=",
            "--log.level=info"])

    # Prometheus
    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = get_json(f"{self.prom}/api/v1/query", params)
        if data.get("status") != "success":
            raise RuntimeError(f"query {expr!r}: {data}")
        return data["data"]

    def scalar(self, expr, at=None):
        """The value of a one-series instant query, or None when it returns nothing."""
        result = self.query(expr, at)["result"]
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr, start, end, step=2):
        data = get_json(f"{self.prom}/api/v1/query_range",
                        {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)})
        if data.get("status") != "success":
            raise RuntimeError(f"query_range {expr!r}: {data}")
        return data["data"]

    def prom_alerts(self):
        return get_json(f"{self.prom}/api/v1/alerts")["data"]["alerts"]


# --------------------------------------------------------------------------- phases

# Alerts whose series carry no `endpoint` label (exporter-level), and extra identity labels.
NO_ENDPOINT = {"SecureChannelExporterDown", "SecureChannelPoolDown", "SecureChannelExporterSourceFailing",
               "SecureChannelConnectionsOmitted"}


def expected_labels(stack, pool, alertname, extra=None):
    """Labels the notification must carry: the rule's own labels plus the series' identity."""
    rule = stack.real_rules[alertname]
    labels = dict(rule.get("labels", {}))
    labels["alertname"] = alertname
    labels["job"] = JOB
    labels["instance"] = pool.instance
    if alertname not in NO_ENDPOINT:
        labels["endpoint"] = ENDPOINT
    labels.update(extra or {})
    return labels


def check_annotations(alert, stack, name, pool):
    ann = alert.get("annotations", {})
    problems = []
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            problems.append(f"no {key}")
    text = " ".join(str(v) for v in ann.values())
    if "<no value>" in text or "{{" in text:
        problems.append(f"unrendered template in {ann}")
    if pool.instance not in ann.get("description", ""):
        problems.append(f"description does not name the instance: {ann.get('description')!r}")
    expected_url = stack.real_rules[name]["annotations"]["runbook_url"]
    if ann.get("runbook_url") != expected_url:
        problems.append(f"runbook_url {ann.get('runbook_url')!r} != {expected_url!r}")
    return problems


def find_alert(hook, since, status, labels):
    for t, a in hook.alerts(since):
        if a.get("status") == status and all(a.get("labels", {}).get(k) == v for k, v in labels.items()):
            return t, a
    return None


def alert_states(stack):
    return sorted({(a["labels"].get("alertname"), a["labels"].get("instance"), a["state"])
                   for a in safe(stack.prom_alerts, [])})


def run_phase(stack, name, inject, clear, expect, allow, carry, timeout, hold=0.0, during=None):
    """Inject a fault, wait for every expected alert to fire and resolve through Alertmanager.

    expect: [(pool, alertname, extra labels)] that must fire; allow / carry: {(instance,
    alertname)} that may fire (consequences of this fault / of the previous phase). `hold`
    keeps the fault at least that long (for phases that must prove that something does NOT
    fire); `during()` runs while the fault is still on and returns nothing.
    """
    R.info(f"--- phase: {name}")
    since = time.time()
    try:
        inject()
    except (OSError, RuntimeError) as e:
        R.fail(f"{name}: could not inject the fault: {e}")
        return
    fired = []
    for pool, alertname, extra in expect:
        labels = expected_labels(stack, pool, alertname, extra)
        hit = wait_for(f"{alertname} firing on {pool.model}",
                       lambda: find_alert(stack.hook, since, "firing", labels), timeout)
        if R.check(hit is not None, f"{name}: {alertname} fired for the {pool.model} pool through Alertmanager with labels {labels}",
                   f"webhook got {sorted({(a['labels'].get('alertname'), a['labels'].get('instance')) for _, a in stack.hook.alerts(since)})}; "
                   f"Prometheus alerts now: {alert_states(stack)}"):
            t, alert = hit
            fired.append((pool, alertname, alert))
            R.info(f"  {alertname} ({pool.model}) notified {t - since:.1f}s after the fault")
            problems = check_annotations(alert, stack, alertname, pool)
            R.check(not problems, f"{name}: {alertname} ({pool.model}) annotations rendered (summary, description with labels, runbook_url)",
                    "; ".join(problems))
    rest = since + hold - time.time()
    if rest > 0:
        time.sleep(rest)
    if during:
        during()
    cleared = time.time()
    try:
        clear()
    except (OSError, RuntimeError) as e:
        R.fail(f"{name}: could not clear the fault: {e}")
        return
    for pool, alertname, alert in fired:
        fp = alert.get("fingerprint")
        hit = wait_for(f"{alertname} resolved on {pool.model}",
                       lambda: next(((t, a) for t, a in stack.hook.alerts(cleared)
                                     if a.get("status") == "resolved" and a.get("fingerprint") == fp
                                     and a["labels"].get("alertname") == alertname), None), timeout)
        if R.check(hit is not None, f"{name}: {alertname} ({pool.model}) resolved through Alertmanager after the fault was cleared"):
            R.info(f"  {alertname} ({pool.model}) resolved {hit[0] - cleared:.1f}s after clearing")
    # Let the fault's slower consequences (allowed alerts, long windows) run out before the next
    # phase, so that every phase starts from a quiet Prometheus.
    quiet = wait_for("every alert inactive", lambda: not stack.prom_alerts(), timeout)
    R.check(quiet, f"{name}: afterwards no alert is pending or firing in Prometheus", f"{alert_states(stack)}")
    explained = {(p.instance, n) for p, n, _ in expect} | set(allow) | set(carry)
    surprises = sorted({json.dumps(a["labels"], sort_keys=True) for _, a in stack.hook.alerts(since)
                        if a.get("status") == "firing"
                        and (a["labels"].get("instance"), a["labels"].get("alertname")) not in explained})
    R.check(not surprises, f"{name}: no alert fired that this fault does not explain", f"unexpected: {surprises}")
    return {(p.instance, n) for p, n, _ in expect} | set(allow)


def safe(fn, default):
    try:
        return fn()
    except (OSError, RuntimeError, ValueError):
        return default


# --------------------------------------------------------------------------- dashboards

def regex_escape_grafana(value):
    """How Grafana writes one selected value of a multi-value variable into a regex matcher."""
    return re.sub(r"([\\$^*+?.()|{}\[\]'])", r"\\\\\1", value)


def substitute(text, values, range_s):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name == "__rate_interval":
            return RATE_INTERVAL
        if name == "__range":
            return f"{range_s}s"
        if name in values:
            return values[name]
        raise KeyError(f"no value for ${name}")
    return re.sub(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", repl, text)


def label_values(stack, query, values, start, end):
    selector, label = promql.parse_label_values(query)
    params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
    if selector:
        params["match[]"] = substitute(selector, values, 0)
    data = get_json(f"{stack.prom}/api/v1/label/{urllib.parse.quote(label)}/values", params)
    if data.get("status") != "success":
        raise RuntimeError(f"label values {query!r}: {data}")
    return data["data"]


def current_label_values(stack, query, values, at):
    """The values of a label_values() variable among the series present at `at` (instant query)."""
    selector, label = promql.parse_label_values(query)
    if not selector:
        return []
    try:
        result = stack.query(substitute(selector, values, 0), at)["result"]
    except (OSError, RuntimeError, KeyError):
        return []
    return sorted({r["metric"][label] for r in result if label in r["metric"]})


# Panels allowed to return no data for one model, with the reason. Empty so far: every panel
# of the dashboard has data for both models (a published pool's per-connection panels are fed
# by its quiet period, when it lists idle connections; its error panels show 0, not nothing).
ALLOWED_EMPTY = {
    "published": {},
    "returning": {},
}


def check_dashboards(stack, pool):
    """Every variable and panel query, with $instance fixed to this pool's exporter."""
    paths = sorted(p for p in os.listdir(os.path.join(REPO, "dashboards")) if p.endswith(".json"))
    R.check(bool(paths), "dashboards/ holds at least one dashboard")
    allowed = ALLOWED_EMPTY.get(pool.model, {})
    for fname in paths:
        with open(os.path.join(REPO, "dashboards", fname), encoding="utf-8") as f:
            d = json.load(f)
        end = time.time()
        start = stack.t0
        range_s = max(int(end - start), 10)
        qvars = [t for t in d.get("templating", {}).get("list", []) if t.get("type") == "query"]
        selections = {"All": {}, "one value each": {}}
        for t in qvars:
            query = t["query"]["query"] if isinstance(t["query"], dict) else t["query"]
            for mode, values in selections.items():
                try:
                    got = label_values(stack, query, values, start, end)
                except (OSError, RuntimeError, KeyError, promql.PromQLError) as e:
                    got, err = [], str(e)
                else:
                    err = ""
                if t["name"] == "instance":
                    R.check(pool.instance in got, f"{fname} ({pool.model}): variable $instance ({mode}) lists {pool.instance}",
                            err or f"got {got}")
                    values["instance"] = regex_escape_grafana(pool.instance)
                    continue
                R.check(bool(got), f"{fname} ({pool.model}): variable ${t['name']} ({mode}) has values {got[:6]}", err or "no values")
                if mode == "All":
                    values[t["name"]] = t.get("allValue") or ".+"
                else:
                    # a value that exists at the end of the range and a few seconds before it
                    # (connections come and go; the table shows the ones listed at the end,
                    # the time series need more than one sample)
                    now_values = current_label_values(stack, query, values, end)
                    recent = sorted(set(now_values) & set(current_label_values(stack, query, values, end - 5))) or now_values
                    pick = (recent or got or [None])[-1]
                    values[t["name"]] = regex_escape_grafana(pick) if pick else "__none__"
        for mode, values in selections.items():
            n_ok = 0
            n = 0
            for p in d.get("panels", []):
                for child in [p] + list(p.get("panels") or []):
                    for tgt in child.get("targets") or []:
                        n += 1
                        what = f"{fname} ({pool.model}): panel {child.get('id')} {child.get('title')!r} query {tgt.get('refId')} ({mode})"
                        try:
                            expr = substitute(tgt["expr"], values, range_s)
                            if tgt.get("instant"):
                                data = stack.query(expr, end)
                                series = data["result"]
                                has_data = data["resultType"] in ("vector", "matrix") and len(series) > 0
                            else:
                                data = stack.query_range(expr, start, end)
                                series = data["result"]
                                has_data = any(s.get("values") for s in series)
                            err = "" if has_data else f"no data for {expr!r}"
                        except (OSError, RuntimeError, KeyError) as e:
                            has_data, err, series = False, str(e), []
                        reason = allowed.get((child.get("id"), tgt.get("refId")))
                        if has_data:
                            n_ok += 1
                        elif reason:
                            n_ok += 1
                            R.info(f"{what}: no data, allowed for the {pool.model} model: {reason}")
                        else:
                            R.fail(f"{what} returned data: {err}")
            R.check(n_ok == n, f"{fname} ({pool.model}): {n_ok}/{n} panel queries returned data with variables = {mode}")


# --------------------------------------------------------------------------- main

def watch_alerts(stack, seconds):
    """Poll Prometheus' alerts for `seconds`: {(alertname, model, state)} seen."""
    by_instance = {p.instance: p.model for p in stack.pools.values()}
    seen = set()
    deadline = time.time() + seconds
    while time.time() < deadline:
        for a in safe(stack.prom_alerts, []):
            seen.add((a["labels"].get("alertname"), by_instance.get(a["labels"].get("instance"), "?"), a["state"]))
        time.sleep(1)
    return seen


def normal_operation(stack, args):
    """Busy, then quiet, both models: nothing may fire. Returns nothing; records checks."""
    pub, ret = stack.pools["published"], stack.pools["returning"]
    since = time.time()
    for label, load, seconds in (("busy", BUSY, args.baseline), ("quiet", QUIET, args.baseline)):
        for p in (pub, ret):
            p.load(**load)
        start = time.time()
        R.info(f"--- normal operation, {label}: {seconds:.0f}s, both models")
        seen = watch_alerts(stack, seconds)
        window = f"{int(time.time() - start) - 2}s"
        firing = sorted(x for x in seen if x[2] == "firing")
        pending = sorted(x for x in seen if x[2] == "pending")
        R.check(not firing, f"normal operation ({label}): no alert firing in Prometheus during {seconds:.0f}s", f"{firing}")
        if pending:
            R.info(f"  alerts seen pending (never past their for:): {pending}")
        n_alerts = safe(lambda: stack.query(f'count(count_over_time(ALERTS{{job="{JOB}", alertstate="firing"}}[{window}]))')["result"], [])
        R.check(not n_alerts, f"normal operation ({label}): ALERTS has no firing series over the last {window}", f"{n_alerts}")
        inst_pub = pub.instance
        if label == "busy":
            # The published pool really is busy: it lists nothing and /healthz answers 503 ...
            listed = safe(lambda: stack.scalar(f'min_over_time(secure_channel_pool_active_connections{{instance="{inst_pub}"}}[{window}])'), None)
            healthy = safe(lambda: stack.scalar(f'min_over_time(secure_channel_pool_healthy{{instance="{inst_pub}"}}[{window}])'), None)
            ops = safe(lambda: stack.scalar(f'sum(rate(secure_channel_latency_ms_count{{instance="{inst_pub}"}}[{window}]))'), None)
            R.check(listed == 0 and healthy == 0 and (ops or 0) >= 1,
                    "normal operation (busy): the published pool listed no connection and /healthz answered 503 while serving >= 1 operation/s",
                    f"min listed {listed}, min healthy {healthy}, operations/s {ops}")
            # ... while the returning pool lists used connections with their errors
            seen_err = safe(lambda: stack.scalar(f'max(secure_channel_pool_connection_errors_seen_total{{instance="{ret.instance}"}})'), None)
            R.check((seen_err or 0) > 0, "normal operation (busy): the returning pool's listed connections report errors (the exporter counted them)",
                    f"secure_channel_pool_connection_errors_seen_total = {seen_err}")
        else:
            listed = safe(lambda: stack.scalar(f'min_over_time(secure_channel_pool_active_connections{{instance="{inst_pub}"}}[5s])'), None)
            moved = safe(lambda: stack.query(f'changes(secure_channel_connection_last_activity_timestamp_seconds{{instance="{inst_pub}"}}[5s]) > 0')["result"], None)
            ops = safe(lambda: stack.scalar(f'sum(rate(secure_channel_latency_ms_count{{instance="{inst_pub}"}}[5s]))'), None)
            R.check((listed or 0) > 0 and moved == [] and ops == 0,
                    "normal operation (quiet): the published pool lists idle connections whose last_activity does not move, with no operations",
                    f"min listed {listed}, moving last_activity {moved}, operations/s {ops}")
    notes = [(a["labels"].get("alertname"), a["labels"].get("instance")) for _, a in stack.hook.alerts(since)]
    R.check(not notes, "normal operation: the webhook received no notification", f"{notes}")


def error_burst_blind_spot(stack, pub, truth):
    """During the published pool's error burst: operations failed (the simulator says so), no
    listed connection reported one, so nothing could fire."""
    state = safe(pub.state, {})
    failed = state.get("operation_errors", 0) - truth.get("operation_errors", 0)
    window = f"{max(int(time.time() - truth['t']), 3)}s"
    seen = safe(lambda: stack.scalar(f'sum(increase(secure_channel_pool_connection_errors_seen_total{{instance="{pub.instance}"}}[{window}]))'), None)
    ops = safe(lambda: stack.scalar(f'sum(increase(secure_channel_latency_ms_count{{instance="{pub.instance}"}}[{window}]))'), None)
    R.check(failed > 0 and ops and failed / ops > 0.0144 and seen == 0,
            "error burst (published): operations failed above the fast-burn threshold, yet no document showed one (blind spot, see docs/pool-signals.md)",
            f"failed operations {failed} of {ops}, errors seen by the exporter {seen}")


def run(args):
    tmp = tempfile.mkdtemp(prefix="secure-channel-e2e-")
    procs = Processes(tmp)
    hook = Webhook()

    def cleanup():
        procs.stop_all()
        hook.close()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    stack = Stack(args, tmp, procs, hook)
    pub, ret = stack.pools["published"], stack.pools["returning"]
    try:
        stack.write_configs()
        R.info(f"temporary directory {tmp}; rules scaled 1/{args.scale:g} "
               f"(e.g. SecureChannelPoolCannotOpenConnections for: {stack.test_rules['SecureChannelPoolCannotOpenConnections']['for']}, "
               f"pool cleanup every {CLEANUP_INTERVAL_S / args.scale:g}s)")
        for p in stack.pools.values():
            p.start_sim()
        stack.start_alertmanager()
        for p in stack.pools.values():
            p.start_exporter()
        for p in stack.pools.values():
            if not R.check(wait_for(f"the {p.model} exporter to export its simulator",
                                    lambda: b"secure_channel_up 1" in http("GET", f"{p.exporter}/metrics")[1], 30),
                           f"{p.model}: exporter serves /metrics with secure_channel_up 1 from the simulator",
                           procs.tail(f"exporter-{p.model}") + "\n" + procs.tail(f"simulator-{p.model}")):
                return
        stack.start_prometheus()
        if not R.check(wait_for("Prometheus ready", lambda: http("GET", f"{stack.prom}/-/ready")[0] == 200, 60),
                       "Prometheus is ready", procs.tail("prometheus")):
            return
        if not R.check(wait_for("Alertmanager ready", lambda: http("GET", f"{stack.am}/-/ready")[0] == 200, 60),
                       "Alertmanager is ready", procs.tail("alertmanager")):
            return
        stack.t0 = time.time()
        R.check(wait_for("Prometheus to find Alertmanager",
                         lambda: get_json(f"{stack.prom}/api/v1/alertmanagers")["data"]["activeAlertmanagers"], 30),
                "Prometheus sends alerts to the Alertmanager")
        R.check(wait_for("the first scrapes", lambda: len(stack.query(f'up{{job="{JOB}"}} == 1')["result"]) == 2, 30),
                "Prometheus scrapes both exporters (up == 1)")
        groups = get_json(f"{stack.prom}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
        R.check(loaded == set(stack.real_rules), f"Prometheus loaded all {len(stack.real_rules)} alerts of the derived rule file",
                f"missing {sorted(set(stack.real_rules) - loaded)}")

        normal_operation(stack, args)
        for p in stack.pools.values():
            check_dashboards(stack, p)
            p.load(**BUSY)

        timeout = args.phase_timeout
        truth = {}

        def both(fn):
            return lambda: [fn(p) for p in (pub, ret)]

        def remember_truth():
            truth.update(safe(pub.state, {}), t=time.time())

        phases = [
            dict(name="pool down on the published pool (status document unreachable); reconnect storm and a failing health source on the returning pool",
                 inject=lambda: (pub.fault("down", {"documents": "status"}), ret.fault("reconnect_storm"),
                                 ret.fault("http_500", {"documents": "health"})),
                 clear=both(Pool.clear_faults),
                 expect=[(pub, "SecureChannelPoolDown", None), (ret, "SecureChannelConnectionFlapping", None),
                         (ret, "SecureChannelExporterSourceFailing", {"source": "health"})],
                 allow={(pub.instance, "SecureChannelExporterSourceFailing")}),
            dict(name="failing health source on the published pool; pool down on the returning pool",
                 inject=lambda: (pub.fault("http_500", {"documents": "health"}), ret.fault("down", {"documents": "status"})),
                 clear=both(Pool.clear_faults),
                 expect=[(pub, "SecureChannelExporterSourceFailing", {"source": "health"}), (ret, "SecureChannelPoolDown", None)],
                 allow={(ret.instance, "SecureChannelExporterSourceFailing")}),
            dict(name="slow operations: 30 % of operations ~800 ms on the published pool, latency spike on the returning pool",
                 inject=lambda: (pub.load(slow_fraction=0.3), ret.fault("latency_spike")),
                 clear=lambda: (pub.load(slow_fraction=0), ret.clear_faults()),
                 expect=[(p, "SecureChannelOperationsP95LatencyHigh", None) for p in (pub, ret)],
                 allow=set()),
            dict(name="error burst on both (20 % of operations fail): the returning pool pages, the published pool cannot show it",
                 inject=lambda: (remember_truth(), pub.fault("error_burst"), ret.fault("error_burst")),
                 clear=both(Pool.clear_faults),
                 expect=[(ret, "SecureChannelErrorBudgetFastBurn", None)],
                 allow={(ret.instance, "SecureChannelErrorBudgetSlowBurn")},
                 # keep the burst on as long as the fast burn needs to fire, twice over
                 hold=2 * (derive_test_rules.parse_duration(stack.test_rules["SecureChannelErrorBudgetFastBurn"]["for"]) + 10),
                 during=lambda: error_burst_blind_spot(stack, pub, truth)),
            # After a relay outage the pool's circuit breaker (5 failed handshakes) fails checkouts
            # for 60 s, unscaled: operations stop, so the outage comes after the phases that need
            # operations.
            dict(name="relay outage on both (status and health hang; opens fail at each cleanup, on the busy returning pool its connections fail and must be reopened)",
                 inject=both(lambda p: p.fault("relay_outage")),
                 clear=both(Pool.clear_faults),
                 expect=[(p, a, None) for p in (pub, ret)
                         for a in ("SecureChannelPoolCannotOpenConnections", "SecureChannelPoolDown")],
                 allow={(p.instance, "SecureChannelExporterSourceFailing") for p in (pub, ret)}),
            dict(name="exporters stopped (both)",
                 inject=both(Pool.stop_exporter),
                 clear=lambda: [R.check(p.restart_exporter(), f"{p.model} exporter restarted") for p in (pub, ret)],
                 expect=[(p, "SecureChannelExporterDown", None) for p in (pub, ret)],
                 allow=set()),
        ]
        previous = set()
        for ph in phases:
            previous = run_phase(stack, ph["name"], ph["inject"], ph["clear"], ph["expect"], ph["allow"], previous,
                                 timeout, ph.get("hold", 0.0), ph.get("during")) or set()
        still = wait_for("every alert to resolve",
                         lambda: not [a for a in stack.prom_alerts() if a["state"] == "firing"], timeout)
        R.check(still, "after the last fault every alert in Prometheus has resolved", f"{alert_states(stack)}")
        for name in list(procs.procs):
            R.check(procs.alive(name), f"{name} still running at the end", procs.tail(name))
    finally:
        if R.failed:
            for name in list(procs.logs):
                print(f"--- last lines of the {name} log:\n{procs.tail(name)}")
        cleanup()
        atexit.unregister(cleanup)
        leftovers = [n for n, p in procs.procs.items() if p.poll() is None]
        R.check(not leftovers, "every process the test started has stopped", f"{leftovers}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    ap.add_argument("--bin-dir", default=os.path.join(target, "debug"),
                    help="directory with secure-channel-exporter and secure-channel-sim")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager")
                    or shutil.which("alertmanager") or "prometheus-alertmanager")
    ap.add_argument("--scale", type=float, default=60.0, help="divide rule windows and for: by this")
    ap.add_argument("--baseline", type=float, default=20.0, help="seconds of busy, then of quiet, normal operation before the faults")
    ap.add_argument("--phase-timeout", type=float, default=60.0, help="seconds to wait for each firing/resolution")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, logs, data)")
    args = ap.parse_args(argv)
    args.bin_dir = os.path.abspath(args.bin_dir)  # the processes run in a temporary directory

    for binary in ("secure-channel-exporter", "secure-channel-sim"):
        path = os.path.join(args.bin_dir, binary)
        if not os.access(path, os.X_OK):
            R.fail(f"{path} is missing: build it first (cargo build --locked)")
    for tool in (args.prometheus, args.alertmanager):
        if not shutil.which(tool) and not os.access(tool, os.X_OK):
            R.fail(f"{tool} is not installed")
    if not R.failed:
        t = time.monotonic()
        run(args)
        R.info(f"e2e took {time.monotonic() - t:.0f}s")
    print(f"RESULT passed={R.passed} failed={R.failed}")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
