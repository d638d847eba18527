#!/usr/bin/env python3
"""Two workers against one, on compare.py's loads: is what two workers cost beyond one the
software's (threads that each sleep and wake for their share) or the machine's (a worker on
the core that the load tool uses)?

Columns, each started afresh per repeat, scenarios run in the order given:
  one         `threads = 1`, pinned to core 0 (compare.py's `crossgate` column)
  two@0       `threads = 2`, both threads pinned to core 0: the software's cost alone
  default     no `threads` key, cores 0 and 1 (compare.py's `crossgate default`)
  before      CROSSGATE_BASELINE's binary with no `threads` key, cores 0 and 1 (when set)

For each: requests per second, CPU µs per request (user in brackets), context switches per
request (every thread's, from /proc/PID/task/*/status) and the share of the CPU time the
main thread spent. Medians of REPEATS (default 5).

    CROSSGATE=target/pgo/release/crossgate CROSSGATE_BASELINE=<older build> \\
        SCENARIOS=handshake,h1 python3 benches/workers.py

Scenarios: compare.py's oha loads (h1, h2, h2h1, handshake, fixed) and its Linkerd-shaped
ones through loadkit (l5d-h2: transport header + HTTP/2; l5d-orig: + l5d-orig-proto).

Needs what compare.sh installs (nginx, oha) and `cargo build --release --examples`."""

import os, shutil, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402

REPEATS = int(os.environ.get("REPEATS", "5"))
SCENARIOS = os.environ.get("SCENARIOS", "handshake,h1").split(",")


def threads(pid):
    """Per thread name: (CPU ticks, context switches)."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            switches = sum(int(l.split()[1]) for l in open(f"/proc/{pid}/task/{t}/status")
                           if "ctxt_switches:" in l)
        except OSError:
            continue
        ticks, cs = out.get(name, (0, 0))
        out[name] = (ticks + int(stat[11]) + int(stat[12]), cs + switches)
    return out


def load(port, pki, scenario):
    """Runs one of compare.py's loads; returns the requests that succeeded (oha: status 200;
    loadkit: its `ok` count)."""
    if scenario in c.LINKERD:
        return c.linkerd_load(port, pki, scenario)["ok"]
    extra, header = c.SCENARIOS[scenario]
    d = c.oha(port, pki, extra, header)
    return sum(v for k, v in d["statusCodeDistribution"].items() if k == "200")


def run(port, pid, pki, scenario):
    t0, c0 = threads(pid), c.cpu_ticks([pid])
    ok = load(port, pki, scenario)
    c1, t1 = c.cpu_ticks([pid]), threads(pid)
    delta = {k: (t1[k][0] - t0.get(k, (0, 0))[0], t1[k][1] - t0.get(k, (0, 0))[1]) for k in t1}
    ticks = sum(v[0] for v in delta.values())
    main = sum(v[0] for k, v in delta.items() if not k.startswith("crossgate-worke"))
    return {"rps": ok / c.SECS, **c.cpu_per(c0, c1, ok),
            "cs": sum(v[1] for v in delta.values()) / max(ok, 1),
            "main": main / max(ticks, 1)}


def main():
    unknown = [s for s in SCENARIOS if s not in c.SCENARIOS and s not in c.LINKERD]
    if unknown:
        sys.exit(f"unknown SCENARIOS: {', '.join(unknown)} "
                 f"(known: {', '.join([*c.SCENARIOS, *c.LINKERD])})")
    columns = {"one": ("threads = 1", c.PROXY_CORE, 4143, c.BIN),
               "two@0": ("threads = 2", c.PROXY_CORE, 4153, c.BIN),
               "default": ("", c.ALL_CORES, 4163, c.BIN)}
    if c.BASELINE:
        columns["before"] = ("", c.ALL_CORES, 4173, c.BASELINE)
    tmp = tempfile.mkdtemp(prefix="crossgate-workers-")
    results = {(n, s): [] for n in columns for s in SCENARIOS}
    try:
        pki = c.setup(tmp)
        backends = c.start_backends(tmp, pki)
        for rep in range(REPEATS):
            for name, (line, cores, port, binary) in columns.items():
                p = c.start_crossgate(tmp, pki, port, line, cores, binary)
                time.sleep(0.5)
                for s in SCENARIOS:
                    r = run(port, p.pid, pki, s)
                    results[(name, s)].append(r)
                    print(f"  [{rep + 1}/{REPEATS}] {s:9} {name:8} {r['rps']:>8.0f}/s "
                          f"{r['us']:6.1f} us ({r['user_us']:.1f} user) {r['cs']:.2f} switches, "
                          f"main thread {r['main'] * 100:.0f} %", file=sys.stderr)
                c.stop_all(keep=backends)
    finally:
        c.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| scenario | column | req/s | CPU µs per request (user) | ÷ one | context switches per request | main thread's share |")
    print("|---|---|---|---|---|---|---|")
    for s in SCENARIOS:
        one = statistics.median(r["us"] for r in results[("one", s)])
        for name in columns:
            rs = results[(name, s)]
            m = lambda k: statistics.median(r[k] for r in rs)
            print(f"| {s} | {name} | {m('rps'):.0f} | {m('us'):.1f} ({m('user_us'):.1f}) | "
                  f"{m('us') / one:.2f} | {m('cs'):.2f} | {m('main') * 100:.0f} % |")


if __name__ == "__main__":
    main()
