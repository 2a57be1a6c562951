#!/usr/bin/env python3
"""Figures of issue 15's findings for one exporter binary, to compare two
builds on the same machine in the same run (before and after):

    python3 scripts/observer_figures.py BEFORE_BINARY AFTER_BINARY

Against a fake pool (this script) whose documents it controls:
  burst      8 MiB status of minimal connections, 40 concurrent API calls
             plus 2 scrapes: peak RSS, largest API answer, /health and
             /metrics latency during the burst
  burst_text_ids   the same with short text ids ("c1f"), which cost an
             allocation each wherever an id is kept
  slow       the pool's status answers after 4 s, --web.max-requests 8,
             24 API calls in a wave: /health latency during the wave
  hang       /healthz hangs 6 s: status view latency while a health
             refresh is running
  readers    8 MiB native exposition, 120 API readers that stall: peak RSS
  token      the pool echoes the token in its 401 body and native text:
             answers and log lines that contain it
Prints one line per figure and binary. Latencies are wall-clock on a shared
machine: read them as orders of magnitude, not as exact values.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "tok-SECRET-4242"


def minimal_status(cap, text_ids=False):
    parts, n, size = [], 0, 64
    while size < cap - 64:
        n += 1
        cid = '"c%x"' % n if text_ids else "%d" % n
        c = '{"connection_id":%s,"errors":%d}' % (cid, 9 if n % 1000 == 0 else 0)
        parts.append(c)
        size += len(c) + 1
    return ('{"endpoint":"e:443","connections":[%s]}' % ",".join(parts)).encode(), n


HEALTHY = b'{"status":"healthy","pool_healthy":true,"active_connections":2}'
NATIVE = b"# HELP secure_channel_errors_total x\n# TYPE secure_channel_errors_total counter\nsecure_channel_errors_total 3\n"


class Pool:
    """status, health, metrics: (code, body, delay_seconds)."""

    def __init__(self, docs):
        self.docs = docs
        pool = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                key = "status" if self.path.endswith("/status/connections") else (
                    "health" if self.path.endswith("/healthz") else "metrics")
                code, body, delay = pool.docs[key]
                if delay:
                    time.sleep(delay)
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if key != "metrics" else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()


class Exporter:
    def __init__(self, binary, pool, *args, env=None):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        e = dict(os.environ)
        e.update(env or {})
        self.log = open("/tmp/observer-figures-%d.log" % self.port, "w+")
        self.proc = subprocess.Popen(
            [binary, "--web.listen-address", "127.0.0.1:%d" % self.port, "--pool.url", pool.url, *args],
            stdout=subprocess.DEVNULL, stderr=self.log, env=e)
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("exporter did not start")

    def get(self, path, read=True, timeout=float(os.environ.get("FIGURES_TIMEOUT", "60"))):
        start = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read() if read else b""
        took = time.monotonic() - start
        if read:
            c.close()
            return r.status, body, took
        return r.status, c, took

    def peak_rss_mib(self):
        for line in open("/proc/%d/status" % self.proc.pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self):
        self.proc.kill()
        self.proc.wait()


S = "/api/v1/secure-channel"


def burst(binary, text_ids=False):
    status, n = minimal_status(8 << 20, text_ids)
    pool = Pool({"status": (200, status, 0), "health": (200, HEALTHY, 0), "metrics": (200, NATIVE, 0)})
    exp = Exporter(binary, pool, "--api.rate-limit", "0", "--collector.max-connections", "1000", "--pool.timeout", "60s")
    paths = [S + "/status", S + "/connections?limit=1000", S + "/stats", "/api/v1/status"]
    health, metrics = [], []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            health.append(exp.get("/health")[2])
            time.sleep(0.05)

    def scrape():
        metrics.append(exp.get("/metrics")[2])

    t = threading.Thread(target=probe)
    t.start()
    with ThreadPoolExecutor(64) as ex:
        futs = [ex.submit(exp.get, paths[i % 4]) for i in range(40)] + [ex.submit(scrape) for _ in range(2)]
        sizes = [len(f.result()[1]) for f in futs[:40]]
        [f.result() for f in futs[40:]]
    stop.set()
    t.join()
    out = "burst%s: %d connections; largest API answer %d B; peak RSS %.1f MiB; /health max %.2f s; /metrics %s s" % (
        " (text ids)" if text_ids else "", n, max(sizes), exp.peak_rss_mib(), max(health),
        ", ".join("%.2f" % m for m in metrics))
    exp.close()
    pool.close()
    return out


def burst_text_ids(binary):
    return burst(binary, text_ids=True)


def slow(binary):
    pool = Pool({"status": (200, b'{"endpoint":"e:443","connections":[]}', 4), "health": (200, HEALTHY, 4),
                 "metrics": (200, NATIVE, 4)})
    exp = Exporter(binary, pool, "--api.rate-limit", "0", "--web.max-requests", "8", "--pool.timeout", "10s",
                   "--api.cache-ttl", "0s")
    waits = []
    with ThreadPoolExecutor(32) as ex:
        futs = [ex.submit(exp.get, S + "/stats") for _ in range(24)]
        time.sleep(0.5)
        for _ in range(3):
            waits.append(exp.get("/health")[2])
        [f.result() for f in futs]
    exp.close()
    pool.close()
    return "slow pool (4 s): /health during a wave of 24 API calls: %s s" % ", ".join("%.2f" % w for w in waits)


def hang(binary):
    pool = Pool({"status": (200, b'{"endpoint":"e:443","connections":[]}', 0), "health": (200, HEALTHY, 6),
                 "metrics": (200, NATIVE, 0)})
    exp = Exporter(binary, pool, "--api.rate-limit", "0", "--pool.timeout", "10s", "--api.cache-ttl", "0s")
    with ThreadPoolExecutor(4) as ex:
        f = ex.submit(exp.get, S + "/health")
        time.sleep(0.5)
        took = [exp.get(S + "/status")[2] for _ in range(3)]
        f.result()
    exp.close()
    pool.close()
    return "health hangs 6 s: status view took %s s" % ", ".join("%.2f" % t for t in took)


def readers(binary):
    native = NATIVE + b"".join(b"m_%d 1\n" % i for i in range(900000))
    native = native[: (8 << 20) - 64]
    native = native[: native.rfind(b"\n") + 1]
    pool = Pool({"status": (200, b'{"endpoint":"e:443","connections":[]}', 0), "health": (200, HEALTHY, 0),
                 "metrics": (200, native, 0)})
    exp = Exporter(binary, pool, "--api.rate-limit", "0", "--api.cache-ttl", "1h", "--pool.timeout", "30s")
    exp.get(S + "/metrics")
    conns = []
    for _ in range(120):
        code, c, _ = exp.get(S + "/metrics", read=False)
        conns.append(c)
    time.sleep(1)
    out = "120 stalled readers of %d B native text: peak RSS %.1f MiB" % (len(native), exp.peak_rss_mib())
    for c in conns:
        c.close()
    exp.close()
    pool.close()
    return out


def token(binary):
    refused = ("invalid token %s" % TOKEN).encode()
    native = NATIVE + ('# HELP echo %s\n# TYPE echo gauge\necho{t="%s"} 1\n' % (TOKEN, TOKEN)).encode()
    pool = Pool({"status": (401, refused, 0), "health": (401, refused, 0), "metrics": (200, native, 0)})
    exp = Exporter(binary, pool, "--api.rate-limit", "0", "--api.cache-ttl", "0s",
                   env={"SECURE_CHANNEL_POOL_TOKEN": TOKEN})
    leaks = []
    for path in [S + "/status", S + "/health", S + "/stats", S + "/metrics", "/api/v1/status", "/status", "/ready",
                 "/metrics"]:
        code, body, _ = exp.get(path)
        if TOKEN.encode() in body:
            leaks.append(path)
    time.sleep(0.5)
    log_lines = sum(1 for line in exp.logs().splitlines() if TOKEN in line)
    exp.close()
    pool.close()
    return "token echoed by the pool: in %d answers (%s), in %d log lines" % (len(leaks), " ".join(leaks), log_lines)


def main():
    # FIGURES=burst,slow picks figures; FIGURES_TIMEOUT (s) is a request's
    # longest wait (60 s by default).
    chosen = os.environ.get("FIGURES", "burst,burst_text_ids,slow,hang,readers,token").split(",")
    for binary in sys.argv[1:]:
        print("==", binary, flush=True)
        for figure in (burst, burst_text_ids, slow, hang, readers, token):
            if figure.__name__ not in chosen:
                continue
            try:
                print("  " + figure(binary), flush=True)
            except Exception as e:  # a figure that cannot be taken says so
                print("  %s: failed: %r" % (figure.__name__, e), flush=True)


if __name__ == "__main__":
    main()
