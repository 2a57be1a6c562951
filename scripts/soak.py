#!/usr/bin/env python3
"""Soak test: scrape the exporter continuously while the simulated pool
churns connections and faults come and go; record the exporter's RSS and
open file descriptors over time and fail if they keep growing.

    scripts/soak.py                     # 100,000 scrapes, release build
    scripts/soak.py --scrapes 3000      # the short version CI runs
    scripts/soak.py --csv soak.csv      # also write every sample

Only loopback addresses are used; every process started is stopped.
"""
import argparse
import http.client
import os
import random
import re
import subprocess
import sys
import threading
import time

FAULTS = [
    ("http_500", "?documents=status"),
    ("slow", "?documents=metrics&delay_ms=50"),
    ("malformed", ""),
    ("truncated", ""),
    ("down", "?documents=health"),
    ("unauthorized", "?documents=status,metrics"),
    ("html", ""),
    ("empty_pool", ""),
    ("latency_spike", ""),
    ("reconnect_storm", ""),
    ("oversized", "?documents=metrics"),
]
FORMATS = ["text/plain", "application/openmetrics-text;version=1.0.0"]


def start(cmd):
    """Starts a binary and waits for its logfmt `listening` line."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = {}

    def pump():
        for line in proc.stderr:
            if "address" not in found and "msg=listening" in line:
                m = re.search(r"address=(\S+)", line)
                if m:
                    found["address"] = m.group(1)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + 20
    while "address" not in found:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit(f"soak: {cmd[0]} did not start")
        time.sleep(0.02)
    return proc, found["address"]


def request(address, method, path, headers=None):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrapes", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--bin-dir", default=None, help="where the binaries are (default: build release)")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    random.seed(args.seed)

    bin_dir = args.bin_dir
    if bin_dir is None:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], check=True)
        bin_dir = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release")
    sim_bin = os.path.join(bin_dir, "secure-channel-sim")
    exp_bin = os.path.join(bin_dir, "secure-channel-exporter")

    procs = []
    try:
        sim, sim_addr = start([sim_bin, "--web.listen-address", "127.0.0.1:0",
                               "--connections", str(args.connections),
                               "--max-age", "20s", "--tick", "200ms"])
        procs.append(sim)
        exp, exp_addr = start([exp_bin, "--web.listen-address", "127.0.0.1:0",
                               "--pool.url", f"http://{sim_addr}/", "--pool.timeout", "2s"])
        procs.append(exp)

        samples = []
        every = max(args.scrapes // 50, 1)
        host, port = exp_addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        active = None
        failures = 0
        # About 25 fault windows whatever the length of the run.
        cycle = max(40, args.scrapes // 25)
        start_time = time.time()
        for i in range(args.scrapes):
            # Faults come and go: one at a time, for a few hundred scrapes.
            if i % cycle == cycle // 4:
                name, query = random.choice(FAULTS)
                request(sim_addr, "PUT", f"/sim/faults/{name}{query}")
                active = name
            elif i % cycle == 3 * cycle // 4 and active:
                request(sim_addr, "DELETE", "/sim/faults")
                active = None
            conn.request("GET", "/metrics", headers={"Accept": FORMATS[i % 2]})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or b"secure_channel_exporter_source_up" not in body:
                failures += 1
                print(f"soak: scrape {i} answered {resp.status} under fault {active}", file=sys.stderr)
            if i % every == 0 or i == args.scrapes - 1:
                samples.append((i, rss_kib(exp.pid), open_fds(exp.pid)))
        conn.close()
        elapsed = time.time() - start_time

        if args.csv:
            with open(args.csv, "w") as f:
                f.write("scrape,rss_kib,open_fds\n")
                for s in samples:
                    f.write("%d,%d,%d\n" % s)

        n = len(samples)
        quarter = samples[n // 4: n // 2] or samples
        last = samples[3 * n // 4:] or samples
        mid_rss = max(s[1] for s in quarter)
        end_rss = max(s[1] for s in last)
        mid_fds = max(s[2] for s in samples[: n // 2] or samples)
        end_fds = max(s[2] for s in last)
        print(f"soak: {args.scrapes} scrapes in {elapsed:.1f} s ({args.scrapes / elapsed:.0f}/s), "
              f"{args.connections} connections with churn, a fault on for {cycle // 2} of every {cycle} scrapes")
        print(f"soak: RSS KiB first={samples[0][1]} 2nd-quarter-max={mid_rss} last-quarter-max={end_rss} "
              f"peak={max(s[1] for s in samples)}")
        print(f"soak: open fds first={samples[0][2]} first-half-max={mid_fds} last-quarter-max={end_fds}")
        checks = [
            ("every scrape answered 200 with self-metrics", failures == 0),
            ("RSS levels off (last quarter <= 2nd quarter * 1.10 + 2 MiB)", end_rss <= mid_rss * 1.10 + 2048),
            ("open fds level off (last quarter <= first half + 4)", end_fds <= mid_fds + 4),
            ("exporter still running", exp.poll() is None),
        ]
        for name, ok in checks:
            print(f"soak: {'ok  ' if ok else 'FAIL'} {name}")
        passed = sum(ok for _, ok in checks)
        print(f"soak: {passed} passed, {len(checks) - passed} failed")
        return 0 if passed == len(checks) else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
