#!/usr/bin/env python3
"""End-to-end proof of the dashboards and alerts against a real Prometheus and Alertmanager.

    simulator -> exporter -> Prometheus (1 s scrape and evaluation) -> Alertmanager -> webhook

1. Starts secure-channel-sim, secure-channel-exporter, Prometheus and Alertmanager on free
   loopback ports with temporary storage, and a webhook receiver inside this process.
   Prometheus loads a copy of alerts/secure-channel.rules.yml whose range windows and `for:`
   durations are divided by --scale (tests/e2e/derive_test_rules.py); nothing else changes.
2. Baseline: with a healthy pool no alert is pending or firing.
3. Dashboards: every variable query and every panel query of dashboards/*.json, with the
   variables substituted (once with All selected, once with one concrete value each), runs
   against Prometheus and returns data.
4. Faults: each fault of the simulator must make its alerts fire through Alertmanager to the
   webhook with the expected labels and annotations, and resolve after the fault is cleared;
   an alert that neither the fault nor the one before it explains is a failure.
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

class Stack:
    def __init__(self, args, tmp, procs, hook):
        self.args = args
        self.tmp = tmp
        self.procs = procs
        self.hook = hook
        self.sim_port = free_port()
        self.exporter_port = free_port()
        self.prom_port = free_port()
        self.am_port = free_port()
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.exporter = f"http://127.0.0.1:{self.exporter_port}"
        self.prom = f"http://127.0.0.1:{self.prom_port}"
        self.am = f"http://127.0.0.1:{self.am_port}"
        self.instance = f"127.0.0.1:{self.exporter_port}"
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
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [self.instance]}]}],
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

    def start_sim(self):
        self.procs.start("simulator", [
            os.path.join(self.args.bin_dir, "secure-channel-sim"),
            "--web.listen-address", f"127.0.0.1:{self.sim_port}",
            "--connections", "4", "--endpoint", ENDPOINT])

    def start_exporter(self):
        self.procs.start("exporter", [
            os.path.join(self.args.bin_dir, "secure-channel-exporter"),
            "--pool.url", self.sim,
            "--web.listen-address", f"127.0.0.1:{self.exporter_port}",
            "--pool.timeout", "5s", "--log.level", "info", "--log.format", "logfmt"])

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

    # simulator control
    def fault(self, name, params=None):
        status, body = http("PUT", f"{self.sim}/sim/faults/{name}", params)
        if status // 100 != 2:
            raise RuntimeError(f"PUT /sim/faults/{name} -> {status}: {body[:200]!r}")

    def clear_faults(self):
        status, body = http("DELETE", f"{self.sim}/sim/faults")
        if status // 100 != 2:
            raise RuntimeError(f"DELETE /sim/faults -> {status}: {body[:200]!r}")

    # Prometheus
    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = get_json(f"{self.prom}/api/v1/query", params)
        if data.get("status") != "success":
            raise RuntimeError(f"query {expr!r}: {data}")
        return data["data"]

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


def expected_labels(stack, alertname, extra=None):
    """Labels the notification must carry: the rule's own labels plus the series' identity."""
    rule = stack.real_rules[alertname]
    labels = dict(rule.get("labels", {}))
    labels["alertname"] = alertname
    labels["job"] = JOB
    labels["instance"] = stack.instance
    if alertname not in NO_ENDPOINT:
        labels["endpoint"] = ENDPOINT
    labels.update((extra or {}).get(alertname, {}))
    return labels


def check_annotations(alert, stack, name):
    ann = alert.get("annotations", {})
    problems = []
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            problems.append(f"no {key}")
    text = " ".join(str(v) for v in ann.values())
    if "<no value>" in text or "{{" in text:
        problems.append(f"unrendered template in {ann}")
    if stack.instance not in ann.get("description", ""):
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


def run_phase(stack, name, inject, clear, expect, allow, carry, timeout, extra=None):
    """Inject a fault, wait for every expected alert to fire and resolve through Alertmanager."""
    R.info(f"--- phase: {name}")
    since = time.time()
    try:
        inject()
    except (OSError, RuntimeError) as e:
        R.fail(f"{name}: could not inject the fault: {e}")
        return
    fired = {}
    for alertname in expect:
        labels = expected_labels(stack, alertname, extra)
        hit = wait_for(f"{alertname} firing", lambda: find_alert(stack.hook, since, "firing", labels), timeout)
        if R.check(hit is not None, f"{name}: {alertname} fired through Alertmanager with labels {labels}",
                   f"webhook got {sorted({a['labels'].get('alertname') for _, a in stack.hook.alerts(since)})}; "
                   f"Prometheus alerts now: {[(a['labels'].get('alertname'), a['state']) for a in safe(stack.prom_alerts, [])]}"):
            t, alert = hit
            fired[alertname] = alert
            R.info(f"  {alertname} notified {t - since:.1f}s after the fault")
            problems = check_annotations(alert, stack, alertname)
            R.check(not problems, f"{name}: {alertname} annotations rendered (summary, description with labels, runbook_url)",
                    "; ".join(problems))
    cleared = time.time()
    try:
        clear()
    except (OSError, RuntimeError) as e:
        R.fail(f"{name}: could not clear the fault: {e}")
        return
    for alertname, alert in fired.items():
        fp = alert.get("fingerprint")
        labels = expected_labels(stack, alertname, extra)
        hit = wait_for(f"{alertname} resolved",
                       lambda: next(((t, a) for t, a in stack.hook.alerts(cleared)
                                     if a.get("status") == "resolved" and a.get("fingerprint") == fp
                                     and a["labels"].get("alertname") == alertname), None), timeout)
        if R.check(hit is not None, f"{name}: {alertname} resolved through Alertmanager after the fault was cleared",
                   f"labels {labels}"):
            R.info(f"  {alertname} resolved {hit[0] - cleared:.1f}s after clearing")
    # Let the fault's slower consequences (allowed alerts, long windows) run out before the next
    # phase, so that every phase starts from a quiet Prometheus.
    quiet = wait_for("every alert inactive", lambda: not stack.prom_alerts(), timeout)
    R.check(quiet, f"{name}: afterwards no alert is pending or firing in Prometheus",
            f"{[(a['labels'].get('alertname'), a['state']) for a in safe(stack.prom_alerts, [])]}")
    explained = set(expect) | set(allow) | set(carry)
    surprises = sorted({json.dumps(a["labels"], sort_keys=True) for _, a in stack.hook.alerts(since)
                        if a.get("status") == "firing" and a["labels"].get("alertname") not in explained})
    R.check(not surprises, f"{name}: no alert fired that this fault does not explain", f"unexpected: {surprises}")


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


def check_dashboards(stack):
    paths = sorted(p for p in os.listdir(os.path.join(REPO, "dashboards")) if p.endswith(".json"))
    R.check(bool(paths), "dashboards/ holds at least one dashboard")
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
                R.check(bool(got), f"{fname}: variable ${t['name']} ({mode}) has values {got[:6]}", err or "no values")
                if mode == "All":
                    values[t["name"]] = t.get("allValue") or ".+"
                else:
                    values[t["name"]] = regex_escape_grafana(got[-1]) if got else "__none__"
        for mode, values in selections.items():
            n_ok = 0
            n = 0
            for p in d.get("panels", []):
                for child in [p] + list(p.get("panels") or []):
                    for tgt in child.get("targets") or []:
                        n += 1
                        what = f"{fname}: panel {child.get('id')} {child.get('title')!r} query {tgt.get('refId')} ({mode})"
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
                        if has_data:
                            n_ok += 1
                        else:
                            R.fail(f"{what} returned data: {err}")
            R.check(n_ok == n, f"{fname}: {n_ok}/{n} panel queries returned data with variables = {mode}")


# --------------------------------------------------------------------------- main

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
    try:
        stack.write_configs()
        R.info(f"temporary directory {tmp}; rules scaled 1/{args.scale:g} "
               f"(e.g. SecureChannelErrorBudgetFastBurn for: {stack.test_rules['SecureChannelErrorBudgetFastBurn']['for']})")
        stack.start_sim()
        stack.start_alertmanager()
        stack.start_exporter()
        if not R.check(wait_for("the exporter to export the simulator",
                                lambda: b"secure_channel_up 1" in http("GET", f"{stack.exporter}/metrics")[1], 30),
                       "exporter serves /metrics with secure_channel_up 1 from the simulator",
                       procs.tail("exporter") + "\n" + procs.tail("simulator")):
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
        R.check(wait_for("the first scrape", lambda: stack.query(f'up{{job="{JOB}"}} == 1')["result"], 30),
                "Prometheus scrapes the exporter (up == 1)")
        groups = get_json(f"{stack.prom}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
        R.check(loaded == set(stack.real_rules), f"Prometheus loaded all {len(stack.real_rules)} alerts of the derived rule file",
                f"missing {sorted(set(stack.real_rules) - loaded)}")

        # Baseline: enough data for every window up to 60 s to be meaningful; nothing may fire.
        baseline_s = args.baseline
        R.info(f"--- baseline: {baseline_s:.0f}s with a healthy pool")
        noisy = set()
        deadline = time.time() + baseline_s
        while time.time() < deadline:
            for a in safe(stack.prom_alerts, []):
                noisy.add((a["labels"].get("alertname"), a["state"]))
            time.sleep(1)
        R.check(not noisy, f"baseline: no alert pending or firing during {baseline_s:.0f}s of a healthy pool",
                f"{sorted(noisy)}")

        check_dashboards(stack)

        timeout = args.phase_timeout
        phases = [
            ("pool down (status document unreachable)",
             lambda: stack.fault("down", {"documents": "status"}), stack.clear_faults,
             ["SecureChannelPoolDown"], ["SecureChannelExporterSourceFailing"]),
            ("pool unhealthy (empty pool)",
             lambda: stack.fault("empty_pool"), stack.clear_faults,
             ["SecureChannelPoolUnhealthy", "SecureChannelNoActiveConnections"], []),
            ("high error ratio (error burst)",
             lambda: stack.fault("error_burst"), stack.clear_faults,
             ["SecureChannelErrorBudgetFastBurn"], ["SecureChannelErrorBudgetSlowBurn"]),
            ("high p95 latency (latency spike)",
             lambda: stack.fault("latency_spike"), stack.clear_faults,
             ["SecureChannelOperationsP95LatencyHigh", "SecureChannelPoolP95LatencyHigh"], []),
            ("flapping (reconnect storm)",
             lambda: stack.fault("reconnect_storm"), stack.clear_faults,
             ["SecureChannelConnectionFlapping"], []),
            ("failing exporter source (health document answers 500)",
             lambda: stack.fault("http_500", {"documents": "health"}), stack.clear_faults,
             ["SecureChannelExporterSourceFailing"], [],
             {"SecureChannelExporterSourceFailing": {"source": "health"}}),
            ("exporter target down (exporter stopped)",
             lambda: procs.stop("exporter"),
             lambda: (stack.start_exporter(), wait_for("exporter back", lambda: http("GET", f"{stack.exporter}/health")[0] == 200, 30)),
             ["SecureChannelExporterDown"], []),
        ]
        previous = []
        for name, inject, clear, expect, allow, *extra in phases:
            run_phase(stack, name, inject, clear, expect, allow, previous, timeout, extra[0] if extra else None)
            previous = expect + allow
        still = wait_for("every alert to resolve",
                         lambda: not [a for a in stack.prom_alerts() if a["state"] == "firing"], timeout)
        R.check(still, "after the last fault every alert in Prometheus has resolved",
                f"{[(a['labels'].get('alertname'), a['state']) for a in safe(stack.prom_alerts, [])]}")
        for name in ("simulator", "exporter", "prometheus", "alertmanager"):
            R.check(procs.alive(name), f"{name} still running at the end", procs.tail(name))
    finally:
        if R.failed:
            for name in ("simulator", "exporter", "prometheus", "alertmanager"):
                if name in procs.logs:
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
    ap.add_argument("--baseline", type=float, default=15.0, help="seconds of healthy pool before the faults")
    ap.add_argument("--phase-timeout", type=float, default=60.0, help="seconds to wait for each firing/resolution")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, logs, data)")
    args = ap.parse_args(argv)

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
