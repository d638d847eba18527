#!/usr/bin/env python3
"""Groups the samples of a `perf record` of a proxy by where the time went: the kernel, crypto
(aws-lc: AES-GCM, P-256, X25519, ML-KEM, SHA-2/3), rustls's own code, h2, hyper and http,
tokio, the allocator, memmove, tracing, and the rest of the binary (the proxy's own code and
what the compiler inlined into it). Used by bin/profile.sh.

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


if __name__ == "__main__":
    main(sys.argv[1])
