#!/usr/bin/env python3
"""Groups the samples of a `perf record` of a proxy by where the time went: the kernel, crypto
(aws-lc: AES-GCM, P-256, X25519, ML-KEM, SHA-2/3), rustls's own code, h2, hyper and http,
tokio, the allocator, memmove, tracing, and the rest of the binary (the proxy's own code and
what the compiler inlined into it). Used by bin/profile.sh.

A second table charges the allocator, memmove and libc's syscall wrappers to the library
whose code called them (the nearest caller frame in another group, from the call graph of a
`perf record -g`), so each library's figure is what it costs in all.

    classify.py perf.data"""
import collections, re, subprocess, sys

GROUPS = [
    ("crypto (aws-lc)", r"aws_lc|ecp_nistz|curve25519|x25519|sha256|sha512|sha3|keccak|gcm|aes_|"
                        r"bn_|beeu|mlkem|mlk_|jent_|rol64|p256|bignum|ecdsa|fiat|poly1305|chacha"),
    ("rustls", r"rustls"),
    ("memmove/memcpy", r"memmove|memcpy|memset"),
    ("malloc/free", r"malloc|free|realloc|_int_|unlink_chunk|tcache|calloc|arena"),
    ("h2", r"h2::"),
    ("hyper/http", r"hyper|http::|httparse|http_body"),
    ("tokio/mio", r"tokio|mio::"),
    ("tracing", r"tracing"),
]


def main(path):
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "dso,sym",
                          "-g", "none", "--percent-limit", "0"],
                         capture_output=True, text=True, check=True).stdout
    shares = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
        if kind == "k":
            group = "kernel"
        else:
            group = next((g for g, pat in GROUPS if re.search(pat, sym, re.I)), None)
            if group is None:
                group = "libc (syscall wrappers)" if dso.startswith("libc") else f"the rest of {dso}"
        shares[group] += pct
    for group, pct in shares.most_common():
        print(f"{pct:6.1f} %  {group}")
    callers = by_caller(path)
    if callers:
        print("with the allocator, memmove and libc charged to their callers:")
        for group, pct in callers.most_common():
            print(f"{pct:6.1f} %  {group}")


HELPERS = ("memmove/memcpy", "malloc/free", "libc (syscall wrappers)")


def group_of(sym, dso):
    if dso.startswith("[kernel") or dso == "[unknown]" and sym.startswith("0x"):
        return None
    group = next((g for g, pat in GROUPS if re.search(pat, sym, re.I)), None)
    if group:
        return group
    if "libc" in dso:
        return "libc (syscall wrappers)"
    if sym.startswith("crossgate::"):
        return "crossgate::"
    return f"the rest of {dso.rsplit('/', 1)[-1]}"


def by_caller(path):
    """Per sample: the innermost frame's group; a helper's sample goes to the first frame out
    of the helpers. Kernel samples stay kernel."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"],
                         capture_output=True, text=True).stdout
    shares, total = collections.Counter(), 0
    for sample in out.split("\n\n"):
        frames = [re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", l) for l in sample.splitlines()]
        frames = [(m[1], m[2]) for m in frames if m]
        if not frames:
            continue
        total += 1
        if frames[0][1].startswith("[kernel"):
            shares["kernel"] += 1
            continue
        groups = [g for g in (group_of(sym, dso) for sym, dso in frames) if g]
        first = groups[0] if groups else "unknown"
        charged = next((g for g in groups if g not in HELPERS), first)
        shares[charged] += 1
    return collections.Counter({g: n * 100 / total for g, n in shares.items()}) if total else None


if __name__ == "__main__":
    main(sys.argv[1])
