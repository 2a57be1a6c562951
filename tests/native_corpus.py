#!/usr/bin/env python3
"""The native-exposition corpus through the real exporter.

Every case of tests/fixtures/native-corpus/ (described in its cases.json) is
served as a fake pool's native /metrics, with the Content-Type the case
names; one exporter per case scrapes it. For each case:

  - the OpenMetrics answer parses with prometheus_client's strict
    OpenMetrics parser, as Prometheus 2.42 and 3.x negotiate it;
  - `promtool check metrics` reports no error on the text answers (0.0.4
    and Prometheus 3's text 1.0.0), and the Content-Type states what the
    answer is;
  - valid cases come through with the same samples (names, labels, values,
    timestamps to the millisecond) in both formats, with nothing counted as
    dropped; invalid ones are counted by reason in
    secure_channel_exporter_native_{families,series}_dropped and the rest
    of their document comes through;
  - one real Prometheus scrapes every exporter twice, once in OpenMetrics
    (its default) and once in the text format (through a relay asking for
    text/plain;version=0.0.4), and keeps up == 1 for all of them.

Run: python3 tests/native_corpus.py [--bin-dir target/debug]
Ends with `N passed, M failed`; exit status 1 on any failure.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "fixtures", "native-corpus")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from prometheus_scrape import Proc, prom_query  # noqa: E402

from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import (  # noqa: E402
    text_string_to_metric_families as parse_text,
)

PROMETHEUS_2_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                       "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3_ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                       "application/openmetrics-text;version=0.0.1;q=0.4,"
                       "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                       "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
PROMETHEUS_3_TEXT_ONLY = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,*/*;q=0.1"
STATUS = open(os.path.join(ROOT, "tests", "fixtures", "status_systemtime.json")).read()


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


class FakePool(BaseHTTPRequestHandler):
    cases = {}  # id -> (body, content type)
    exporters = {}  # id -> address

    def log_message(self, *_):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "relay" and len(parts) == 3:
            # Prometheus 2.42 always prefers OpenMetrics: this job asks the
            # exporter for text, so that Prometheus reads a text answer.
            ctype, body = get(f"http://{self.exporters[parts[1]]}/metrics", "text/plain;version=0.0.4")
            return self.answer(200, ctype, body)
        case, doc = parts[0], "/".join(parts[1:])
        if case not in self.cases:
            return self.answer(404, "text/plain", "no such case")
        if doc == "status/connections":
            return self.answer(200, "application/json", STATUS)
        if doc == "healthz":
            return self.answer(200, "application/json", '{"status":"healthy"}')
        body, ctype = self.cases[case]
        return self.answer(200, ctype, body)

    def answer(self, code, ctype, body):
        data = body.encode()
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def ms(ts):
    """A parsed timestamp in milliseconds (prometheus_client gives seconds,
    as a float or a Timestamp)."""
    if ts is None:
        return None
    if hasattr(ts, "sec"):
        return ts.sec * 1000 + int(ts.nsec / 1e6)
    return round(ts * 1000)


def norm_label(name, value):
    if name in ("le", "quantile"):
        try:
            return repr(float(value))
        except ValueError:
            return value
    return value


def sample_key(s):
    value = "NaN" if math.isnan(s.value) else repr(float(s.value))
    labels = tuple(sorted((k, norm_label(k, v)) for k, v in s.labels.items()))
    return (s.name, labels, value, ms(s.timestamp))


def samples(families):
    return {sample_key(s) for f in families for s in f.samples}


def drops(families):
    out = {}
    for f in families:
        for s in f.samples:
            for kind in ("families", "series"):
                if s.name.startswith(f"secure_channel_exporter_native_{kind}_dropped"):
                    out[(kind, s.labels["reason"])] = s.value
    return out


def promtool_errors(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    output = p.stdout + p.stderr
    # Exit 3 is lint advice (naming style), 1 an error.
    if p.returncode == 1 or "error" in output.lower():
        return output.strip() or f"exit {p.returncode}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug"))
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install prometheus")

    spec = json.load(open(os.path.join(CORPUS, "cases.json")))
    cases = {f"c{i}": (name, spec[name]) for i, name in enumerate(sorted(k for k in spec if not k.startswith("_")))}
    for cid, (name, case) in cases.items():
        FakePool.cases[cid] = (open(os.path.join(CORPUS, name)).read(), case.get("content_type"))
    pool = ThreadingHTTPServer(("127.0.0.1", 0), FakePool)
    # A client gone before its answer (a scrape timing out) is no failure.
    pool.handle_error = lambda *_: None
    threading.Thread(target=pool.serve_forever, daemon=True).start()
    pool_address = f"127.0.0.1:{pool.server_address[1]}"

    results = []

    def check(case, what, ok, detail=""):
        results.append(ok)
        if not ok:
            print(f"FAIL {case}: {what}: {detail}")

    exporters = {}
    tmp = tempfile.mkdtemp(prefix="secure-channel-corpus-")
    prom = None
    try:
        for cid in cases:
            exporters[cid] = Proc([f"{args.bin_dir}/secure-channel-exporter", "--web.listen-address", "127.0.0.1:0",
                                   "--pool.url", f"http://{pool_address}/{cid}/"], f"exporter {cid}")
            FakePool.exporters[cid] = exporters[cid].address

        for cid, (name, case) in cases.items():
            base = f"http://{exporters[cid].address}/metrics"
            om_type, om = get(base, PROMETHEUS_2_ACCEPT)
            text_type, text = get(base)
            p3_type, p3 = get(base, PROMETHEUS_3_ACCEPT)
            v1_type, v1 = get(base, PROMETHEUS_3_TEXT_ONLY)
            check(name, "Content-Types", (om_type, text_type, p3_type, v1_type) == (
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
                "text/plain; version=0.0.4; charset=utf-8",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
                "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"),
                (om_type, text_type, p3_type, v1_type))
            try:
                om_families = list(parse_openmetrics(om))
                list(parse_openmetrics(p3))
                check(name, "strict OpenMetrics parser", True)
            except Exception as e:  # the parser raises ValueError and others
                check(name, "strict OpenMetrics parser", False, f"{e!r}\n{om}")
                continue
            for label, body in (("0.0.4", text), ("1.0.0", v1)):
                err = promtool_errors(body)
                check(name, f"promtool check metrics ({label})", err is None, err)
            text_families = list(parse_text(text))
            counted = drops(om_families)
            check(name, "both formats count the same drops", counted == drops(text_families),
                  (counted, drops(text_families)))

            if case.get("pass"):
                source = open(os.path.join(CORPUS, name)).read()
                wanted = samples(parse_openmetrics(source) if name.endswith(".om") else parse_text(source))
                for label, got in (("OpenMetrics", samples(om_families)), ("text", samples(text_families))):
                    missing = wanted - got
                    check(name, f"same samples in the {label} answer", not missing, sorted(missing)[:5])
                check(name, "nothing counted as dropped", all(v == 0 for v in counted.values()),
                      {k: v for k, v in counted.items() if v})
            else:
                for kind in ("families", "series"):
                    for reason, n in case.get(kind, {}).items():
                        check(name, f"{kind} dropped {reason}", counted.get((kind, reason)) == n,
                              counted.get((kind, reason)))
                others = {k: v for k, v in counted.items() if v and k[1] not in case.get(k[0], {})}
                check(name, "no other drop counted", not others, others)
                names = {s.name for f in om_families for s in f.samples}
                for n in case.get("present", []):
                    check(name, f"{n} passed through", n in names)
                for n in case.get("absent", []):
                    check(name, f"{n} dropped", n not in names)
            by_name = {f.name: f for f in om_families}
            for family, unit in case.get("units", {}).items():
                check(name, f"UNIT of {family}", family in by_name and by_name[family].unit == unit)
            for family, kind in case.get("types", {}).items():
                check(name, f"TYPE of {family}", family in by_name and by_name[family].type == kind)
            for family, help_text in case.get("help", {}).items():
                check(name, f"HELP of {family}", family in by_name and by_name[family].documentation == help_text,
                      by_name.get(family) and by_name[family].documentation)
            if "exemplars" in case:
                n = sum(1 for f in om_families if f.name.startswith("corpus_") for s in f.samples if s.exemplar)
                check(name, "exemplars kept where valid", n == case["exemplars"], n)
                check(name, "no exemplar in the text answer", " # {" not in text)

        # One Prometheus for all cases: each exporter read in OpenMetrics
        # (Prometheus' default) and in text (through the relay).
        jobs = []
        for cid in cases:
            jobs.append(f"  - job_name: om-{cid}\n    static_configs:\n      - targets: [\"{exporters[cid].address}\"]\n")
            jobs.append(f"  - job_name: text-{cid}\n    metrics_path: /relay/{cid}/metrics\n"
                        f"    static_configs:\n      - targets: [\"{pool_address}\"]\n")
        prom, prom_base = start_prometheus_with_jobs(tmp, "".join(jobs))
        expected = 2 * len(cases)
        up = []
        deadline = time.time() + 120
        while time.time() < deadline:
            up = prom_query(prom_base, "up")
            # A first scrape may time out on a loaded machine: wait for
            # every job's up to settle at 1, and report what it is if not.
            if len(up) == expected and all(r["value"][1] == "1" for r in up):
                break
            time.sleep(0.5)
        check("prometheus", f"every job scraped ({expected})", len(up) == expected, len(up))
        job_case = {f"{kind}-{cid}": name for cid, (name, _) in cases.items() for kind in ("om", "text")}
        import prometheus_scrape as ps
        targets = json.loads(ps.get(f"{prom_base}/api/v1/targets")[2])["data"]["activeTargets"]
        last_error = {t["labels"]["job"]: t.get("lastError") for t in targets}
        for r in up:
            job = r["metric"]["job"]
            check(job_case.get(job, job), f"Prometheus up == 1 ({job.split('-')[0]})", r["value"][1] == "1",
                  last_error.get(job))
    finally:
        if prom:
            prom.stop()
        for e in exporters.values():
            e.stop()
        pool.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(results)
    print(f"native corpus: {len(cases)} cases; {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def start_prometheus_with_jobs(tmp, jobs):
    """start_prometheus, with these scrape jobs instead of one."""
    import prometheus_scrape as ps
    config_text = f"global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n{jobs}"
    port = ps.free_port()
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write(config_text)
    prom = Proc(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                "prometheus", wait_for_address=False)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if ps.get(f"{base}/-/ready")[0] == 200:
                return prom, base
        except OSError:
            pass
        time.sleep(0.3)
    prom.stop()
    sys.exit("prometheus did not become ready:\n" + "".join(prom.lines[-20:]))


if __name__ == "__main__":
    sys.exit(main())
