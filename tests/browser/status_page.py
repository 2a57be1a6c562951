#!/usr/bin/env python3
"""The status page in a real browser: headless Chromium (Debian's), driven
over the DevTools protocol on a pipe (--remote-debugging-pipe; stdlib only).

usage: status_page.py --chromium BIN --exporter URL --sim URL --screenshot PNG

1. Loads EXPORTER/status?refresh=1 and reads the rendered DOM: one row per
   connection the pool lists (compared with the pool's own
   /status/connections), the health the pool reports.
2. Waits for the inline script to refresh the page from the API.
3. Switches the simulator's `empty_pool` fault on and waits until a
   refresh shows the pool unhealthy with no rows, as the pool says.
Saves a screenshot of the healthy page. Exits 1 with the reason on failure.
"""
import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


class Browser:
    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="sce-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def wire_fds():
            # Chromium reads commands on fd 3 and writes answers on fd 4.
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             "--window-size=1100,800", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire_fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{method}: no answer from Chromium (exit {self.proc.poll()}): "
                                   f"{self.proc.stderr.read().decode(errors='replace')[-2000:] if self.proc.poll() is not None else ''}")
            ready, _, _ = select.select([self.from_chrome], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self.buffer += chunk

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1100, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete' && !!document.getElementById('rows')", 20)

    def eval(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"script error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eval(expression):
                return
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout} s: {expression}\nDOM:\n{self.dom()[:4000]}")

    def dom(self):
        return self.eval("document.documentElement.outerHTML")

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def put(url):
    req = urllib.request.Request(url, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


STATE = """JSON.stringify({
  rows: Array.from(document.querySelectorAll('#rows tr')).map(tr => tr.dataset.connectionId),
  cells: document.querySelectorAll('#rows tr td').length,
  total: document.getElementById('total').textContent,
  health: document.getElementById('health').dataset.state,
  assessment: document.getElementById('assessment').dataset.assessment,
  refreshes: Number(document.body.dataset.refreshes),
  listed: document.getElementById('count-listed').textContent,
  sortable: document.querySelectorAll('th[aria-sort]').length,
  error: document.getElementById('error').textContent
})"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()
    exporter, sim = a.exporter.rstrip("/"), a.sim.rstrip("/")

    browser = Browser(a.chromium)
    try:
        browser.open(exporter + "/status?refresh=1")
        first = json.loads(browser.eval(STATE))
        pool_ids = sorted(str(c["connection_id"]) for c in get_json(sim + "/status/connections")["connections"])
        print("first view:", json.dumps(first))
        assert pool_ids, "the simulated pool lists no connection: nothing to compare"
        assert sorted(first["rows"]) == pool_ids, f"rows {first['rows']} != pool's {pool_ids}"
        assert first["cells"] == 6 * len(pool_ids), first
        assert first["total"] == str(len(pool_ids)), first
        assert first["listed"] == str(len(pool_ids)), first
        assert first["health"] == "healthy", first
        assert first["sortable"] == 5, first
        # Rendered by the server: the rows are there before any refresh.
        assert first["refreshes"] == 0 or first["rows"], first

        browser.wait("Number(document.body.dataset.refreshes) >= 1", 15)
        refreshed = json.loads(browser.eval(STATE))
        print("after a refresh:", json.dumps(refreshed))
        assert sorted(refreshed["rows"]) == pool_ids, f"rows {refreshed['rows']} != pool's {pool_ids}"
        assert refreshed["health"] == "healthy" and not refreshed["error"], refreshed

        png = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"])
        with open(a.screenshot, "wb") as f:
            f.write(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, "screenshot is not a PNG"

        before = refreshed["refreshes"]
        put(sim + "/sim/faults/empty_pool")
        browser.wait("document.getElementById('health').dataset.state === 'unhealthy'"
                     f" && Number(document.body.dataset.refreshes) > {before}"
                     " && document.querySelectorAll('#rows tr').length === 0", 20)
        faulted = json.loads(browser.eval(STATE))
        print("after the empty_pool fault:", json.dumps(faulted))
        pool_now = get_json(sim + "/status/connections")["connections"]
        assert faulted["rows"] == [] and pool_now == [], (faulted, pool_now)
        health = get_json(sim + "/sim/state")
        print(f"browser: ok ({len(pool_ids)} rows matched the pool, unhealthy after the fault, "
              f"screenshot {a.screenshot}, {health['requests']})")
        return 0
    except (AssertionError, RuntimeError) as e:
        print(f"browser: FAIL {e}", file=sys.stderr)
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
