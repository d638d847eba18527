#!/usr/bin/env python3
"""The balancer against a slow endpoint: one target with three endpoints, two answering at once
and one 50 ms later (`loadkit delayed`), behind two gateways run side by side and interleaved:
crossgate as built (power of two choices over peak-EWMA latency) and a baseline binary
(CROSSGATE_BASELINE, e.g. commit 4b8ca8a: round robin over a pooled client). Load is shaped as
a Linkerd source sends it (`loadkit linkerd`: transport header, HTTP/2, absolute form). Per
gateway it prints the slow endpoint's share of the requests, p50/p99, req/s, and the gateway's
CPU per request from /proc, for three scenarios (see `main`). Gateways pinned to core 0, load and backends to core 1.

  CROSSGATE_BASELINE=/path/to/old/crossgate benches/balancer.sh   (REPEATS=3, SECS=10)"""

import os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (BIN, LOADKIT, PROXY_CORE, LOAD_CORE, TICK, GW, spawn, wait_port,  # noqa: E402
                     setup, cpu_ticks, stop_all)

REPEATS = int(os.environ.get("REPEATS", 3))
SECS = int(os.environ.get("SECS", 10))
BASELINE = os.environ.get("CROSSGATE_BASELINE")
TARGET = "web.bench.svc.cluster.local:80"
FAST, SLOW = (18101, 18102, 18104), 18103


def count(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as r:
        return int(r.read())


def gateway(tmp, pki, binary, port, endpoints):
    conf = os.path.join(tmp, f"gw-{port}.toml")
    eps = ", ".join(f'"127.0.0.1:{p}"' for p in endpoints)
    open(conf, "w").write(f"""
[server]
listen = "127.0.0.1:{port}"
admin = "127.0.0.1:{port + 48}"
threads = 1
[identity]
trust_anchors = "{pki}/ca.crt"
certificate = "{pki}/gateway.crt"
key = "{pki}/gateway.key"
[routing.static]
"{TARGET}" = [{eps}]
""")
    p = spawn([binary, "run", "--config", conf], PROXY_CORE,
              env={**os.environ, "RUST_LOG": "warn"})
    wait_port(port)
    return p


def run(pki, port, pid, ports, orig):
    before = [count(p) for p in ports]
    c0 = cpu_ticks([pid])
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, LOADKIT, "linkerd", f"127.0.0.1:{port}", GW,
         f"{pki}/ca.crt", f"{pki}/client.crt", f"{pki}/client.key", "4", "8", str(SECS), TARGET]
        + (["orig-proto"] if orig else []),
        capture_output=True, text=True, check=True).stdout
    c1 = cpu_ticks([pid])
    import json
    r = json.loads(out.strip().splitlines()[-1])
    served = [count(p) - b for p, b in zip(ports, before)]
    r["served"] = served
    r["cpu_us"] = (sum(c1) - sum(c0)) * 1e6 / TICK / max(r["ok"], 1)
    return r


def main():
    if not BASELINE:
        sys.exit("set CROSSGATE_BASELINE to the binary to compare with")
    tmp = tempfile.mkdtemp()
    pki = setup(tmp)
    for p in FAST:
        spawn([LOADKIT, "delayed", f"127.0.0.1:{p}", "0"], LOAD_CORE)
    spawn([LOADKIT, "delayed", f"127.0.0.1:{SLOW}", "50"], LOAD_CORE)
    for p in FAST + (SLOW,):
        wait_port(p)
    slow_set = [FAST[0], FAST[1], SLOW]
    results = {}
    # slow: three endpoints, one 50 ms slower, HTTP/1.1 upstream (l5d-orig-proto), where the
    # baseline spreads requests over its pooled connections to every endpoint; single: one
    # endpoint over HTTP/2, where both keep one upstream connection (the cost of the code
    # around the choice); three: three fast endpoints over HTTP/2 (the baseline pins its one
    # pooled HTTP/2 connection to one of them, crossgate spreads over all three).
    scenarios = (("slow", slow_set, True), ("single", [FAST[0]], False),
                 ("three", list(FAST), False))
    try:
        for scenario, eps, orig in scenarios:
            gws = {"crossgate": gateway(tmp, pki, BIN, 4143, eps),
                   "baseline": gateway(tmp, pki, BASELINE, 4183, eps)}
            ports = {"crossgate": 4143, "baseline": 4183}
            for rep in range(REPEATS):
                for name in ("crossgate", "baseline"):
                    r = run(pki, ports[name], gws[name].pid, eps, orig)
                    results.setdefault((scenario, name), []).append(r)
                    print(f"# {scenario} {name} repeat {rep + 1}: {r}", flush=True)
            for g in gws.values():
                g.terminate()
                g.wait()
    finally:
        stop_all()
    print(f"\n{SECS} s x {REPEATS} repeats, 4 connections x 8 streams, medians\n")
    print(f"{'scenario':<10} {'gateway':<10} {'slow share':>10} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'req/s':>8} {'cpu us/req':>10}  requests per endpoint (last repeat)")
    for (scenario, name), rs in results.items():
        med = lambda f: statistics.median(f(r) for r in rs)
        share = med(lambda r: r["served"][2] / max(sum(r["served"]), 1)) if scenario == "slow" else 0
        print(f"{scenario:<10} {name:<10} {share * 100:>9.1f}% {med(lambda r: r['p50_ms']):>8.2f}"
              f" {med(lambda r: r['p99_ms']):>8.2f} {med(lambda r: r['ok'] / r['secs']):>8.0f}"
              f" {med(lambda r: r['cpu_us']):>10.1f}  {rs[-1]['served']}")


if __name__ == "__main__":
    main()
