#!/usr/bin/env python3
"""Checks the deployment examples against the real binary: every flag they
pass exists in --help, the prometheus-operator monitors keep the pool's
`endpoint` label (honorLabels) and set the job the alert rules select, and
probes point at endpoints the exporter serves."""
import re
import subprocess
import sys

import yaml

exporter = sys.argv[1] if len(sys.argv) > 1 else "target/debug/secure-channel-exporter"
help_text = subprocess.run([exporter, "--help"], capture_output=True, text=True, check=True).stdout
known = set(re.findall(r"^\s+(--[a-z.\-]+)", help_text.split("Options:")[1], re.M))
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"deploy: {'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


def flags_in(args):
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


docs = list(yaml.safe_load_all(open("deploy/kubernetes/sidecar-deployment.yaml")))
deployment = next(d for d in docs if d["kind"] == "Deployment")
container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "exporter")
unknown = [f for f in flags_in(container["args"]) if f not in known]
check("sidecar flags exist", not unknown, str(unknown))
# kubelet probes send no credentials: with basic_auth_users set, only the
# public /health answers them.
check("sidecar probes use /health (works with basic auth)",
      container["livenessProbe"]["httpGet"]["path"] == "/health"
      and container["readinessProbe"]["httpGet"]["path"] == "/health")
pod_spec = deployment["spec"]["template"]["spec"]
check("seccompProfile RuntimeDefault (restricted Pod Security Standard)",
      pod_spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault"
      and container["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault")
check("sidecar token comes from a file", any(a.startswith("--pool.auth-token-file=") for a in container["args"]))
check("sidecar runs read-only and non-root",
      container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["runAsNonRoot"])

for f, key in [("deploy/kubernetes/podmonitor.yaml", "podMetricsEndpoints"),
               ("deploy/kubernetes/servicemonitor.yaml", "endpoints")]:
    monitor = yaml.safe_load(open(f))
    for ep in monitor["spec"][key]:
        check(f"{f}: honorLabels", ep.get("honorLabels") is True)
        job = [r for r in ep.get("relabelings", []) if r.get("targetLabel") == "job"]
        check(f"{f}: job=secure-channel-exporter",
              len(job) == 1 and job[0].get("replacement") == "secure-channel-exporter")

unit = open("deploy/systemd/secure-channel-exporter.service").read()
exec_start = re.search(r"ExecStart=(.*?)\n(?!\s)", unit + "\n", re.S).group(1).replace("\\\n", " ")
unknown = [f for f in re.findall(r"(--[a-z.\-]+)", exec_start) if f not in known]
check("systemd unit flags exist", not unknown, str(unknown))

readme = open("README.md").read()
table_flags = set(re.findall(r"^\| `(--[a-z.\-]+)`", readme, re.M))
missing = sorted(known - table_flags - {"--help", "--version"})
check("README flag table lists every flag", not missing, str(missing))

passed = sum(results)
print(f"deploy: {passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
