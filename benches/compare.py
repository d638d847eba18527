#!/usr/bin/env python3
"""Runs crossgate, nginx and HAProxy side by side as mTLS proxies (TLS 1.3, ECDSA P-256, client
certificate required against the same anchor, no session tickets or caches, keep-alive
upstream), each pinned to core 0; the load tool, backend and sink on core 1. crossgate runs
twice: with `threads = 1` (the current-thread runtime) pinned like the peers, and with its
default runtime (no `threads` key) unpinned: one worker per core, two multi-thread workers here,
sharing core 1 with the load tool. Besides
the scenarios every proxy can serve, crossgate takes the two Linkerd-shaped paths (a transport
header, then HTTP/2 in absolute form; with and without `l5d-orig-proto`). TLS passthrough by SNI
(crossgate's `[passthrough]` port, nginx's `stream { ssl_preread on; }`, HAProxy's
`req_ssl_sni`) splices each client's TLS to a TLS backend (nginx on core 1) that answers one
request per connection: the proxy's CPU per connection, read from /proc. Every scenario,
idle memory and start-to-ready included, is interleaved across the proxies and repeated;
medians are reported. Called by benches/compare.sh.

CROSSGATE_BASELINE=/path/to/an/older/crossgate adds a fourth proxy, "crossgate before": that
binary with `threads = 1`, pinned to core 0 like the `threads = 1` column, on its own ports
(4183, admin 4231), started and measured in the same repeats, interleaved with the others in
every scenario (the Linkerd-shaped ones included), so a before/after comparison shares the
machine's noise. The table then has a "before" column and an after/before ratio; with --only
it is printed too, with the rows of the parts that ran."""

import json, os, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

QUICK = "--quick" in sys.argv
# --only=h1,h2,stream,idle,passthrough runs just those parts (for profiling loops); the table needs them all.
ONLY = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)
REPEATS = int(os.environ.get("REPEATS", 1 if QUICK else 3))
SECS = int(os.environ.get("SECS", 3 if QUICK else 5))
IDLE_CONNS = 2000 if QUICK else 9000
PROXY_CORE, LOAD_CORE, ALL_CORES = "0", "1", "0,1"
GW = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CROSSGATE=path: that binary as crossgate (benches/pgo.sh's profile-guided build).
BIN = os.path.abspath(os.environ.get("CROSSGATE") or os.path.join(ROOT, "target/release/crossgate"))
LOADKIT = os.path.join(ROOT, "target/release/examples/loadkit")
BASELINE = os.environ.get("CROSSGATE_BASELINE") or None
TICK = os.sysconf("SC_CLK_TCK")

_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
procs = []


def spawn(args, core, **kw):
    p = subprocess.Popen(["taskset", "-c", core] + args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"port {port} never opened")


def children(pid):
    out = [pid]
    try:
        for c in open(f"/proc/{pid}/task/{pid}/children").read().split():
            out += children(int(c))
    except OSError:
        pass
    return out


def cpu_ticks(pids):
    """(user, system) clock ticks of these processes."""
    user = system = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            user += int(f[11])
            system += int(f[12])
        except OSError:
            pass
    return user, system


def rss_kib(pids):
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def setup(tmp):
    pki = os.path.join(tmp, "pki")
    subprocess.run([BIN, "certs", "--out", pki], check=True, stdout=subprocess.DEVNULL)
    # The passthrough backend's own certificate: the proxies never hold it.
    subprocess.run([BIN, "certs", "issue", "--name", PASSTHROUGH_NAME, "--from", pki,
                    "--out", os.path.join(pki, "tls")], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(pki, "gateway.pem"), "w") as f:
        f.write(open(os.path.join(pki, "gateway.crt")).read())
        f.write(open(os.path.join(pki, "gateway.key")).read())
    return pki


def start_backends(tmp, pki):
    conf = os.path.join(tmp, "backend.conf")
    open(conf, "w").write(f"""
worker_processes 1; daemon off; pid {tmp}/backend.pid; error_log {tmp}/backend.err warn;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 10000000;
  server {{ listen 127.0.0.1:18080; listen 127.0.0.1:18081 http2;
    location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:18443 ssl; ssl_protocols TLSv1.3; ssl_session_tickets off;
    ssl_certificate {pki}/tls/tls.crt; ssl_certificate_key {pki}/tls/tls.key;
    location / {{ return 200 "ok\\n"; }} }} }}
""")
    backends = [spawn(["nginx", "-c", conf], LOAD_CORE),
                spawn([LOADKIT, "sink", "127.0.0.1:19000"], LOAD_CORE)]
    for port in (18080, 18081, 19000):
        wait_port(port)
    return backends


def crossgate_config(tmp, pki, name, listen, admin, server_extra="", tables="",
                     threads="threads = 1"):
    """Writes a crossgate configuration on the bench PKI; returns its path."""
    path = os.path.join(tmp, name)
    open(path, "w").write(f"""
[server]
listen = "127.0.0.1:{listen}"
admin = "127.0.0.1:{admin}"
{threads}
{server_extra}
[identity]
trust_anchors = "{pki}/ca.crt"
certificate = "{pki}/gateway.crt"
key = "{pki}/gateway.key"
{tables}""")
    return path


def start_crossgate(tmp, pki, port=4143, threads="threads = 1", core=PROXY_CORE, binary=BIN):
    """crossgate on `port` (admin on port + 48, passthrough on port + 1000 when `binary` is
    this tree's); `threads` is its [server] threads line; `binary` the executable (the
    baseline's, for the "before" column)."""
    passthrough = "" if binary != BIN else f"""
"{PASSTHROUGH_NAME}:18443" = ["127.0.0.1:18443"]
[sni]
default_port = 18443
[passthrough]
listen = "127.0.0.1:{port + 1000}"
allow = ["*.bench.svc.cluster.local"]
max_connections = 100000
"""
    conf = crossgate_config(tmp, pki, f"crossgate-{port}.toml", port, port + 48,
                            "max_connections = 100000", """
[routing.static]
"web.bench.svc.cluster.local:80" = ["127.0.0.1:18080"]
"web2.bench.svc.cluster.local:80" = ["127.0.0.1:18081"]
"sink.bench.svc.cluster.local:9000" = ["127.0.0.1:19000"]
""" + passthrough, threads)
    p = spawn([binary, "run", "--config", conf], core, env={**os.environ, "RUST_LOG": "warn"})
    wait_port(port)
    return p


def start_nginx(tmp, pki):
    conf = os.path.join(tmp, "nginx.conf")
    tls = f"""ssl_certificate {pki}/gateway.crt; ssl_certificate_key {pki}/gateway.key;
    ssl_client_certificate {pki}/ca.crt; ssl_verify_client on; ssl_verify_depth 3;
    ssl_protocols TLSv1.3; ssl_session_tickets off; ssl_session_cache off;"""
    open(conf, "w").write(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
http {{ access_log off;
  upstream web {{ server 127.0.0.1:18080; keepalive 256; }}
  server {{ listen 127.0.0.1:4443 ssl http2; {tls}
    keepalive_requests 10000000; keepalive_timeout 300s;
    location / {{ proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
stream {{ server {{ listen 127.0.0.1:4444 ssl; {tls} proxy_pass 127.0.0.1:19000; proxy_half_close on; }}
  map $ssl_preread_server_name $passthrough {{ {PASSTHROUGH_NAME} 127.0.0.1:18443; default 127.0.0.1:1; }}
  server {{ listen 127.0.0.1:4445; ssl_preread on; proxy_pass $passthrough; }} }}
""")
    p = spawn(["nginx", "-c", conf], PROXY_CORE)
    wait_port(4443)
    return p


def start_haproxy(tmp, pki):
    conf = os.path.join(tmp, "haproxy.cfg")
    bind = f"ssl crt {pki}/gateway.pem ca-file {pki}/ca.crt verify required ssl-min-ver TLSv1.3 no-tls-tickets"
    open(conf, "w").write(f"""
global
  nbthread 1
  maxconn 9500
  tune.ssl.cachesize 0
defaults
  timeout connect 2s
  timeout client 300s
  timeout server 300s
frontend web
  mode http
  bind 127.0.0.1:5443 {bind} alpn h2,http/1.1
  default_backend web
backend web
  mode http
  http-reuse always
  server s1 127.0.0.1:18080
frontend web2
  mode http
  bind 127.0.0.1:5446 {bind} alpn h2
  default_backend web2
backend web2
  mode http
  http-reuse always
  server s1 127.0.0.1:18081 proto h2
frontend tcp
  mode tcp
  bind 127.0.0.1:5444 {bind}
  default_backend sink
backend sink
  mode tcp
  server s1 127.0.0.1:19000
frontend passthrough
  mode tcp
  bind 127.0.0.1:5445
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req_ssl_hello_type 1 }}
  use_backend tls if {{ req_ssl_sni -i {PASSTHROUGH_NAME} }}
backend tls
  mode tcp
  server s1 127.0.0.1:18443
""")
    p = spawn(["haproxy", "-f", conf, "-db"], PROXY_CORE)
    wait_port(5443)
    return p


def oha(port, pki, extra, header):
    args = ["taskset", "-c", LOAD_CORE, "oha", "--no-tui", "--output-format", "json",
            "-z", f"{SECS}s", "--cert", f"{pki}/client.crt", "--key", f"{pki}/client.key",
            "--cacert", f"{pki}/ca.crt", "--connect-to", f"{GW}:{port}:127.0.0.1:{port}"]
    if header:
        args += ["-H", f"l5d-dst-canonical: {header}"]
    args += extra + [f"https://{GW}:{port}/"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


SCENARIOS = {
    "h1": (["-c", "50"], "web.bench.svc.cluster.local:80"),
    "h2": (["-c", "10", "-p", "10", "--http2"], "web2.bench.svc.cluster.local:80"),
    "h2h1": (["-c", "10", "-p", "10", "--http2"], None),
    "handshake": (["-c", "20", "--disable-keepalive"], "web.bench.svc.cluster.local:80"),
    "fixed": (["-c", "20", "-q", "2000", "--latency-correction"], "web.bench.svc.cluster.local:80"),
}
# What a Linkerd source proxy sends (crossgate only: the peers cannot read a transport header).
# 10 connections x 10 streams, as the HTTP/2 scenario above.
LINKERD = {
    "l5d-h2": ["web2.bench.svc.cluster.local:80"],
    "l5d-orig": ["web.bench.svc.cluster.local:80", "orig-proto"],
}


# The passthrough target: a bare name, SNI as a plain TLS client sends it.
PASSTHROUGH_NAME = "tls.bench.svc.cluster.local"
# HTTP/2 is forwarded as HTTP/2 (to the h2c backend) by crossgate and by HAProxy, on its own
# frontend; nginx cannot proxy to an HTTP/2 upstream, so its "h2" run forwards HTTP/1.1.
# "h2h1" is the peers' HTTP/2 in, HTTP/1.1 keep-alive out, for reference (crossgate forwards
# HTTP/2 as HTTP/2, as a mesh does).
H2_PORTS = {"HAProxy": 5446}
SCENARIO_PROXIES = {"h2h1": ("nginx", "HAProxy")}
PASSTHROUGH_PORTS = {"crossgate": 5143, "crossgate default": 5163, "nginx": 4445, "HAProxy": 5445}


def passthrough_run(port, pids, pki):
    """One request per new TLS connection, spliced by its SNI to the TLS backend, whose
    certificate the client checks; CPU per connection of the proxy."""
    args = ["taskset", "-c", LOAD_CORE, "oha", "--no-tui", "--output-format", "json",
            "-z", f"{SECS}s", "-c", "20", "--disable-keepalive", "--http-version", "1.1",
            "--cacert", f"{pki}/ca.crt",
            "--connect-to", f"{PASSTHROUGH_NAME}:{port}:127.0.0.1:{port}",
            f"https://{PASSTHROUGH_NAME}:{port}/"]
    c0 = cpu_ticks(pids)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    c1 = cpu_ticks(pids)
    d = json.loads(out)
    ok = sum(v for k, v in d["statusCodeDistribution"].items() if k == "200")
    # The connections in flight when -z ends are aborted: not failures of the proxy.
    errors = {k: v for k, v in d["errorDistribution"].items() if k != "aborted due to deadline"}
    total = sum(d["statusCodeDistribution"].values()) + sum(errors.values())
    if ok < total * 0.99:
        print(f"  warning: passthrough on {port}: {ok}/{total} ok: {errors}",
              file=sys.stderr)
    return {"rps": ok / SECS, **cpu_per(c0, c1, ok),
            "p50": d["latencyPercentiles"]["p50"] * 1e3,
            "p99": d["latencyPercentiles"]["p99"] * 1e3}


def cpu_per(c0, c1, ok):
    per = lambda i: (c1[i] - c0[i]) / TICK * 1e6 / max(ok, 1)
    return {"us": per(0) + per(1), "user_us": per(0), "sys_us": per(1)}


def profiled(proxy, pids, scenario):
    """With PERF_DIR set, `perf record -g` of the `threads = 1` crossgate during a run, to
    PERF_DIR/<scenario>.data (for benches/linkerd/classify.py); PERF_CALL_GRAPH=dwarf unwinds
    what frame pointers cannot (the release build has none). Otherwise nothing."""
    out = os.environ.get("PERF_DIR")
    if not out or proxy != CG1:
        return None
    os.makedirs(out, exist_ok=True)
    p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "--call-graph",
                          os.environ.get("PERF_CALL_GRAPH", "fp"), "-p",
                          ",".join(map(str, pids)), "-o", f"{out}/{scenario}.data"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p


def unprofiled(p):
    if p:
        p.send_signal(signal.SIGINT)
        p.wait()


def http_run(proxy, port, pids, pki, scenario):
    extra, header = SCENARIOS[scenario]
    perf = profiled(proxy, pids, scenario)
    c0 = cpu_ticks(pids)
    d = oha(port, pki, extra, header if proxy.startswith("crossgate") else None)
    c1 = cpu_ticks(pids)
    unprofiled(perf)
    ok = sum(v for k, v in d["statusCodeDistribution"].items() if k == "200")
    total = sum(d["statusCodeDistribution"].values()) + sum(d["errorDistribution"].values())
    if ok < total * 0.99:
        print(f"  warning: {proxy} {scenario}: {ok}/{total} ok: {d['errorDistribution']}", file=sys.stderr)
    return {"rps": ok / SECS, **cpu_per(c0, c1, ok),
            "p50": d["latencyPercentiles"]["p50"] * 1e3,
            "p99": d["latencyPercentiles"]["p99"] * 1e3}


def linkerd_load(port, pki, scenario):
    """`loadkit linkerd` on the load tool's core: 10 connections of 10 streams for SECS;
    returns its JSON summary (ok, errors, secs, p50_ms, p99_ms)."""
    args = [LOADKIT, "linkerd", f"127.0.0.1:{port}", GW, f"{pki}/ca.crt", f"{pki}/client.crt",
            f"{pki}/client.key", "10", "10", str(SECS)] + LINKERD[scenario]
    out = subprocess.run(["taskset", "-c", LOAD_CORE] + args, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"loadkit linkerd failed: {out.stderr.strip()}")
    d = json.loads(out.stdout)
    if d["errors"] > d["ok"] * 0.01:
        print(f"  warning: {scenario}: {d['errors']} errors, {d['ok']} ok", file=sys.stderr)
    return d


def linkerd_run(proxy, port, pids, pki, scenario):
    perf = profiled(proxy, pids, scenario)
    c0 = cpu_ticks(pids)
    d = linkerd_load(port, pki, scenario)
    c1 = cpu_ticks(pids)
    unprofiled(perf)
    return {"rps": d["ok"] / d["secs"], **cpu_per(c0, c1, d["ok"]),
            "p50": d["p50_ms"], "p99": d["p99_ms"]}


STREAM_MIB = 1024


def stream_run(proxy, port, pids, pki):
    """One TCP stream of STREAM_MIB through the proxy to a sink: MB/s, and the proxy's CPU
    per MiB (user and kernel)."""
    args = [LOADKIT, "stream", f"127.0.0.1:{port}", GW, f"{pki}/ca.crt", f"{pki}/client.crt",
            f"{pki}/client.key", str(STREAM_MIB)]
    if proxy.startswith("crossgate"):
        args.append("sink.bench.svc.cluster.local:9000")
    c0 = cpu_ticks(pids)
    out = subprocess.run(["taskset", "-c", LOAD_CORE] + args, capture_output=True, text=True)
    c1 = cpu_ticks(pids)
    if out.returncode != 0:
        print(f"  warning: {proxy} stream failed: {out.stderr.strip()}", file=sys.stderr)
        return {"mbs": 0.0, **cpu_per(c0, c1, 0)}
    return {"mbs": float(out.stdout.strip()), **cpu_per(c0, c1, STREAM_MIB)}


def idle_run(port, pids, pki):
    before = rss_kib(pids)
    p = subprocess.Popen(["taskset", "-c", LOAD_CORE, LOADKIT, "idle", f"127.0.0.1:{port}", GW,
                          f"{pki}/ca.crt", f"{pki}/client.crt", f"{pki}/client.key",
                          str(IDLE_CONNS), "8"], stdout=subprocess.PIPE, text=True)
    established = int(p.stdout.readline().strip() or 0)
    time.sleep(2)
    after = rss_kib(pids)
    p.wait()
    if established < IDLE_CONNS:
        print(f"  warning: only {established} idle connections established", file=sys.stderr)
    return {"rss_mib": after / 1024, "per_conn_kib": (after - before) / max(established, 1)}


def start_to_ready(tmp, pki):
    conf = crossgate_config(tmp, pki, "ready.toml", 4173, 4221)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        p = subprocess.Popen([BIN, "run", "--config", conf], stderr=subprocess.DEVNULL)
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", 4221), 0.5)
                s.sendall(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    times.append((time.perf_counter() - t0) * 1e3)
                    s.close()
                    break
                s.close()
            except OSError:
                pass
            time.sleep(0.0005)
        p.send_signal(signal.SIGTERM)
        p.wait()
    return statistics.median(times)


CG1, CGD, CGB = "crossgate", "crossgate default", "crossgate before"
# The baseline runs right after the current binary in every scenario.
NAMES = [CG1] + ([CGB] if BASELINE else []) + [CGD, "nginx", "HAProxy"]


def cpu_stat():
    """(steal, total) clock ticks of the whole machine, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[7], sum(f[:8])


def versions():
    """The peers' and the load tool's versions, and the TLS library each uses."""
    def out(args):
        r = subprocess.run(args, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip()
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    def crate(name):
        i = lock.find(f'name = "{name}"\nversion = "')
        return lock[i:].split('"')[3] if i >= 0 else "?"
    commit = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    if dirty:
        commit += " (+ uncommitted changes in the tree)"
    nginx = out(["nginx", "-V"]).splitlines()
    haproxy = out(["haproxy", "-vv"]).splitlines()
    return [
        f"crossgate {commit} ({BIN}): rustls {crate('rustls')} with aws-lc-rs {crate('aws-lc-rs')}, "
        f"hyper {crate('hyper')}, h2 {crate('h2')}, tokio {crate('tokio')}",
        f"{nginx[0].split(': ', 1)[-1]}: " + next((l for l in nginx if "OpenSSL" in l), "?"),
        f"HAProxy {haproxy[0].split()[2]}: " + next((l.split(': ', 1)[-1] for l in haproxy
                                                      if "Running on OpenSSL" in l), "?"),
        f"load: {out(['oha', '--version'])}; {out(['openssl', 'version'])}; Linux {os.uname().release}",
    ] + ([f"crossgate before: {BASELINE} ({baseline_commit()})"] if BASELINE else [])


def baseline_commit():
    """The commit of the git tree the baseline binary was built in, if it sits in one."""
    d = os.path.dirname(os.path.realpath(BASELINE))
    r = subprocess.run(["git", "-C", d, "log", "-1", "--format=%h %s"], capture_output=True,
                       text=True)
    return r.stdout.strip()[:90] if r.returncode == 0 else "commit unknown"


def main():
    tmp = tempfile.mkdtemp(prefix="crossgate-bench-")
    try:
        pki = setup(tmp)
        backends = start_backends(tmp, pki)
        results = {name: {} for name in NAMES}
        want = lambda part: not ONLY or part in ONLY
        if BASELINE and not os.access(BASELINE, os.X_OK):
            sys.exit(f"CROSSGATE_BASELINE={BASELINE}: not an executable")
        def note(rep, scenario, name, r):
            print(f"  [{rep + 1}/{REPEATS}] {scenario:9} {name:17} {r['rps']:>9.0f} req/s "
                  f"{r['us']:6.1f} us/req ({r['user_us']:.1f} user) p50 {r['p50']:.2f} ms "
                  f"p99 {r['p99']:.2f} ms", file=sys.stderr)
        stat0 = cpu_stat()
        for rep in range(REPEATS):
            # Every repeat starts the proxies afresh and measures idle memory first: an
            # allocator keeps what a previous load used, so a second idle run reads nothing.
            proxies = {CG1: (start_crossgate(tmp, pki), 4143, 4143)}
            if BASELINE:
                # The same configuration as the `threads = 1` column, the older binary.
                proxies[CGB] = (start_crossgate(tmp, pki, 4183, binary=BASELINE), 4183, 4183)
            proxies |= {
                # Unpinned: its default on this machine, one worker per core (2). Pinned to
                # one core, the default is the current-thread runtime, the column before.
                CGD: (start_crossgate(tmp, pki, 4163, "", ALL_CORES), 4163, 4163),
                "nginx": (start_nginx(tmp, pki), 4443, 4444),
                "HAProxy": (start_haproxy(tmp, pki), 5443, 5444),
            }
            # taskset execs the proxy in place; nginx forks a worker.
            time.sleep(0.5)
            pids = {name: children(p.pid) for name, (p, _, _) in proxies.items()}
            for name, (_, port, _) in proxies.items():
                if want("idle"):
                    r = idle_run(port, pids[name], pki)
                    results[name].setdefault("idle_rss", []).append(r["rss_mib"])
                    results[name].setdefault("idle_kib", []).append(r["per_conn_kib"])
                    print(f"  [{rep + 1}/{REPEATS}] idle      {name:17} {r['rss_mib']:.0f} MiB, "
                          f"{r['per_conn_kib']:.1f} KiB per connection", file=sys.stderr)
            for scenario in LINKERD:
                for name in [n for n in NAMES if n.startswith("crossgate")]:
                    if want(scenario):
                        r = linkerd_run(name, proxies[name][1], pids[name], pki, scenario)
                        results[name].setdefault(scenario, []).append(r)
                        note(rep, scenario, name, r)
            for scenario in SCENARIOS:
                for name, (_, port, _) in proxies.items():
                    if name not in SCENARIO_PROXIES.get(scenario, (name,)):
                        continue
                    if scenario == "h2":
                        port = H2_PORTS.get(name, port)
                    if want(scenario):
                        r = http_run(name, port, pids[name], pki, scenario)
                        results[name].setdefault(scenario, []).append(r)
                        note(rep, scenario, name, r)
            for name in [n for n in proxies if n in PASSTHROUGH_PORTS]:
                if want("passthrough"):
                    r = passthrough_run(PASSTHROUGH_PORTS[name], pids[name], pki)
                    results[name].setdefault("passthrough", []).append(r)
                    note(rep, "passthru", name, r)
            for name, (_, _, sport) in proxies.items():
                if want("stream"):
                    r = stream_run(name, sport, pids[name], pki)
                    results[name].setdefault("stream", []).append(r)
                    print(f"  [{rep + 1}/{REPEATS}] stream    {name:17} {r['mbs']:>9.0f} MB/s "
                          f"{r['us']:7.1f} us/MiB ({r['user_us']:.1f} user)", file=sys.stderr)
            stop_all(keep=backends)
            if want("ready"):
                results[CG1].setdefault("ready", []).append(start_to_ready(tmp, pki))
        stat1 = cpu_stat()
        steal = (stat1[0] - stat0[0]) / max(stat1[1] - stat0[1], 1) * 100
        if not ONLY or BASELINE:
            report(results)
            print(f"- steal: {steal:.1f} % of the machine's CPU time went to other guests during the run")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def stop_all(keep=()):
    """Stops every process spawned but those in `keep`."""
    for p in procs:
        if p not in keep:
            p.send_signal(signal.SIGTERM)
    for p in list(procs):
        if p in keep:
            continue
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        procs.remove(p)


def med(results, name, scenario, key=None):
    vals = results[name].get(scenario)
    if not vals:
        return None
    return statistics.median([v[key] for v in vals] if key else vals)


def report(results):
    rows = [
        ("Linkerd path: transport header + HTTP/2, CPU us per request", "l5d-h2", "us", False, "{:.1f}"),
        ("  of which user space", "l5d-h2", "user_us", False, "{:.1f}"),
        ("  req/s", "l5d-h2", "rps", True, "{:.0f}"),
        ("Linkerd path: header + HTTP/2 with l5d-orig-proto to HTTP/1.1, CPU us per request", "l5d-orig", "us", False, "{:.1f}"),
        ("  of which user space", "l5d-orig", "user_us", False, "{:.1f}"),
        ("  req/s", "l5d-orig", "rps", True, "{:.0f}"),
        ("HTTP/1.1 keep-alive, CPU us per request", "h1", "us", False, "{:.1f}"),
        ("  of which user space", "h1", "user_us", False, "{:.1f}"),
        ("  req/s", "h1", "rps", True, "{:.0f}"),
        ("HTTP/2, CPU us per request (nginx: to HTTP/1.1, it cannot proxy to HTTP/2)", "h2", "us", False, "{:.1f}"),
        ("  of which user space", "h2", "user_us", False, "{:.1f}"),
        ("  req/s", "h2", "rps", True, "{:.0f}"),
        ("HTTP/2 in, HTTP/1.1 keep-alive out (the peers only), CPU us per request", "h2h1", "us", False, "{:.1f}"),
        ("  of which user space", "h2h1", "user_us", False, "{:.1f}"),
        ("new mTLS connection (one request each), CPU us per handshake", "handshake", "us", False, "{:.1f}"),
        ("  of which user space", "handshake", "user_us", False, "{:.1f}"),
        ("  handshakes/s", "handshake", "rps", True, "{:.0f}"),
        ("TLS passthrough by SNI (one request per connection), CPU us per connection", "passthrough", "us", False, "{:.1f}"),
        ("  of which user space", "passthrough", "user_us", False, "{:.1f}"),
        ("  connections/s", "passthrough", "rps", True, "{:.0f}"),
        ("p50 ms at 2000 req/s", "fixed", "p50", False, "{:.2f}"),
        ("p99 ms at 2000 req/s", "fixed", "p99", False, "{:.2f}"),
        ("one TCP stream MB/s", "stream", "mbs", True, "{:.0f}"),
        ("  CPU us per MiB", "stream", "us", False, "{:.0f}"),
        ("  of which user space", "stream", "user_us", False, "{:.0f}"),
        (f"RSS MiB with {IDLE_CONNS} idle mTLS connections", "idle_rss", None, False, "{:.0f}"),
        ("KiB per idle connection", "idle_kib", None, False, "{:.1f}"),
        ("start to /ready ms (5 starts per repeat)", "ready", None, False, "{:.1f}"),
    ]
    heads = {CG1: "crossgate `threads = 1`", CGB: "crossgate before, `threads = 1`",
             CGD: "crossgate default runtime", "nginx": "nginx", "HAProxy": "HAProxy"}
    extra = ["`threads = 1` / before"] if BASELINE else []
    print("| measure | " + " | ".join(heads[n] for n in NAMES) + " | "
          + " | ".join(extra + ["`threads = 1` / best peer"]) + " |")
    print("|---" * (len(NAMES) + len(extra) + 2) + "|")
    for label, scenario, key, higher, fmt in rows:
        v = {n: med(results, n, scenario, key) for n in NAMES}
        if ONLY and all(x is None for x in v.values()):
            continue
        peers = [x for x in (v["nginx"], v["HAProxy"]) if x is not None]
        ratio = ""
        if peers and v[CG1] is not None:
            best = max(peers) if higher else min(peers)
            ratio = f"{v[CG1] / best:.2f}"
        ratios = [ratio]
        if BASELINE:
            b = v[CGB]
            ratios.insert(0, f"{v[CG1] / b:.2f}" if b and v[CG1] is not None else "")
        cells = ["" if v[n] is None else fmt.format(v[n]) for n in NAMES]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    print()
    for line in versions():
        print(f"- {line}")


if __name__ == "__main__":
    main()
