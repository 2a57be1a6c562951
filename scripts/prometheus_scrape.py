#!/usr/bin/env python3
"""A real Prometheus (Debian's, 2.42) scraping the exporter in front of the
simulator. Two uses:

  compression check (run by scripts/test.sh):
    scripts/prometheus_scrape.py --bin-dir target/debug check-compression
  Prometheus sends `Accept-Encoding: gzip`; the check asserts, from the
  exporter's side, that its scrapes were answered gzip-compressed
  (secure_channel_exporter_scrape_answers_total{encoding="gzip"}), that
  Prometheus read them (up == 1, the pool's series present), and that a
  plain client still gets identity.

  series churn (docs/scale.md):
    scripts/prometheus_scrape.py --bin-dir target/release churn \
        --minutes 10 --connections-mode all -- --callers 4 ...sim flags...
  reports prometheus_tsdb_head_series_created_total over the run, per hour.

Every process binds 127.0.0.1, uses a temporary directory and is stopped at
the end. Ends with `N passed, M failed` for the check.
"""
import argparse
import gzip
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
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose `listening address=` log line gives its address."""

    def __init__(self, argv, name, wait_for_address=True):
        self.name = name
        self.lines = []
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.address = None
        got = threading.Event()

        def pump():
            for line in self.p.stdout:
                self.lines.append(line)
                if self.address is None and "listening" in line:
                    m = re.search(r"address=(\S+)", line)
                    if m:
                        self.address = m.group(1).strip('"')
                        got.set()

        threading.Thread(target=pump, daemon=True).start()
        if wait_for_address and not got.wait(30):
            self.stop()
            sys.exit(f"{name} did not start:\n{''.join(self.lines[-20:])}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def prom_query(base, expr):
    _, _, body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return json.loads(body)["data"]["result"]


def start_prometheus(tmp, target, interval):
    port = free_port()
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
scrape_configs:
  - job_name: secure-channel-exporter
    static_configs:
      - targets: ["{target}"]
""")
    prom = Proc(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                "prometheus", wait_for_address=False)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if get(f"{base}/-/ready")[0] == 200:
                return prom, base
        except OSError:
            pass
        time.sleep(0.3)
    prom.stop()
    sys.exit("prometheus did not become ready:\n" + "".join(prom.lines[-20:]))


def prom_own(base, name):
    """A metric of Prometheus itself, read from its own /metrics (it does
    not scrape itself here, so that the head holds only the exporter's
    series)."""
    text = get(f"{base}/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise SystemExit(f"{name} not in Prometheus' /metrics")


def exposition_value(text, name, labels):
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def check_compression(args, tmp):
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"compression: {'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")

    sim = Proc([f"{args.bin_dir}/secure-channel-sim", "--web.listen-address", "127.0.0.1:0",
                "--steady", "--connections", "200"], "simulator")
    exporter = Proc([f"{args.bin_dir}/secure-channel-exporter", "--web.listen-address", "127.0.0.1:0",
                     "--pool.url", f"http://{sim.address}"], "exporter")
    prom, base = start_prometheus(tmp, exporter.address, "1s")
    try:
        deadline = time.time() + 60
        up = []
        while time.time() < deadline:
            up = prom_query(base, 'up{job="secure-channel-exporter"}')
            answered = prom_query(base, 'secure_channel_exporter_scrape_answers_total{encoding="gzip"}')
            if up and up[0]["value"][1] == "1" and answered and float(answered[0]["value"][1]) >= 2:
                break
            time.sleep(0.5)
        check("Prometheus scrapes the exporter (up == 1)", bool(up) and up[0]["value"][1] == "1", up)
        conns = prom_query(base, "count(secure_channel_connection_errors_total)")
        check("Prometheus read every connection's series from the compressed answers",
              bool(conns) and conns[0]["value"][1] == "200", conns)
        # What the exporter says, read without compression by a plain client.
        status, headers, body = get(f"http://{exporter.address}/metrics")
        text = body.decode()
        gz = exposition_value(text, "secure_channel_exporter_scrape_answers_total", {"encoding": "gzip"})
        ident = exposition_value(text, "secure_channel_exporter_scrape_answers_total", {"encoding": "identity"})
        check("the exporter answered Prometheus' scrapes gzip-compressed", gz is not None and gz >= 2, gz)
        check("none of Prometheus' scrapes was answered uncompressed", ident == 0, ident)
        check("a client without Accept-Encoding gets identity",
              status == 200 and "content-encoding" not in headers and headers.get("vary", "").lower() == "accept-encoding",
              headers)
        # And what Prometheus gets, asked the same way: the same exposition.
        status, headers, zbody = get(f"http://{exporter.address}/metrics", {"Accept-Encoding": "gzip"})
        plain = gzip.decompress(zbody).decode()
        check("a gzip answer decodes to the exposition", headers.get("content-encoding") == "gzip"
              and plain.count("\n") > 800 and "secure_channel_up 1" in plain, headers)
        check("gzip makes the answer at least 5x smaller", len(zbody) * 5 < len(plain), (len(zbody), len(plain)))
    finally:
        prom.stop()
        exporter.stop()
        sim.stop()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def churn(args, tmp):
    sim = Proc([f"{args.bin_dir}/secure-channel-sim", "--web.listen-address", "127.0.0.1:0",
                "--model", "published", *args.sim_args], "simulator")
    exporter = Proc([f"{args.bin_dir}/secure-channel-exporter", "--web.listen-address", "127.0.0.1:0",
                     "--pool.url", f"http://{sim.address}",
                     "--collector.connections", args.connections_mode], "exporter")
    prom, base = start_prometheus(tmp, exporter.address, args.interval)
    try:
        # Let the first scrape land, then count from there.
        while not prom_query(base, 'up{job="secure-channel-exporter"} == 1'):
            time.sleep(0.5)
        time.sleep(5)
        q = "prometheus_tsdb_head_series_created_total"
        start_t, start_v = time.time(), prom_own(base, q)
        opened0 = prom_query(base, "secure_channel_pool_connections_opened_total")
        time.sleep(args.minutes * 60)
        end_t, end_v = time.time(), prom_own(base, q)
        opened1 = prom_query(base, "secure_channel_pool_connections_opened_total")
        hours = (end_t - start_t) / 3600
        created = end_v - start_v
        per_conn = prom_query(base, 'count({__name__=~"secure_channel_connection_.*"})')
        opened = (float(opened1[0]["value"][1]) - float(opened0[0]["value"][1])) if opened0 and opened1 else None
        print(json.dumps({
            "sim_args": args.sim_args, "connections_mode": args.connections_mode,
            "scrape_interval": args.interval, "minutes": round((end_t - start_t) / 60, 2),
            "head_series_created": created, "series_per_hour": round(created / hours),
            "connections_opened": opened,
            "connections_opened_per_hour": round(opened / hours) if opened is not None else None,
            "per_connection_series_now": per_conn[0]["value"][1] if per_conn else "0",
            "head_series_now": prom_own(base, "prometheus_tsdb_head_series"),
        }))
    finally:
        prom.stop()
        exporter.stop()
        sim.stop()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check-compression")
    c = sub.add_parser("churn")
    c.add_argument("--minutes", type=float, default=10)
    c.add_argument("--interval", default="15s")
    c.add_argument("--connections-mode", default="all")
    c.add_argument("sim_args", nargs="*")
    args = ap.parse_args()
    if shutil.which("prometheus") is None:
        sys.exit("prometheus not found: apt-get install prometheus")
    tmp = tempfile.mkdtemp(prefix="secure-channel-prom-")
    try:
        return check_compression(args, tmp) if args.cmd == "check-compression" else churn(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
