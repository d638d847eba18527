#!/usr/bin/env python3
"""Cross-references in the rendered manifests that no schema checks: the Service reaches the
pods' named ports, probes and scrapes hit the admin port the config opens, the identity
paths of the config are where the Secret is mounted, the grace period covers the drain, the
CRD objects (PodMonitor, cert-manager Certificate and ClusterIssuer) have the fields their
controllers need. Usage: deploy_check.py BASE.yaml PODMONITOR.yaml CERT_MANAGER.yaml ISSUER.yaml
"""
import sys
import tomllib
import yaml

GATEWAY_ID = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
DRAIN_DELAY_S = 10  # the delay before draining that the gateway will add (issue 17)
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def one(objs, kind):
    found = [o for (k, _), o in objs.items() if k == kind]
    check(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0] if found else {}


def duration_s(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * units[suffix]
    raise ValueError(f"duration {text!r}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def base_checks(objs):
    dep = one(objs, "Deployment")
    svc = one(objs, "Service")
    cm = one(objs, "ConfigMap")
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"]["labels"]
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    cfg = tomllib.loads(cm["data"]["crossgate.toml"])

    check(selects(dep["spec"]["selector"], labels), "Deployment: selector does not match its pods")
    # Config: ports and the file the container is told to read.
    check(cfg["server"]["listen"] == "0.0.0.0:4143", "config: listen 0.0.0.0:4143")
    check(cfg["server"]["admin"] == "0.0.0.0:4191", "config: admin 0.0.0.0:4191")
    check(ports == {"mc-gateway": 4143, "mc-probe": 4191, "metrics": 9191}, f"container ports {ports}")
    check(cfg["server"].get("metrics") == "0.0.0.0:9191", "config: [server] metrics 0.0.0.0:9191 (else 4191 serves /metrics)")
    args = c["args"]
    conf_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    check(conf_path == mounts["config"] + "/crossgate.toml", f"--config {conf_path} is not in the config mount")
    check(vols["config"]["configMap"]["name"] == cm["metadata"]["name"], "config volume names another ConfigMap")
    for key, file in (("trust_anchors", "ca.crt"), ("certificate", "tls.crt"), ("key", "tls.key")):
        check(cfg["identity"][key] == f'{mounts["identity"]}/{file}', f"identity.{key} is not {file} in the identity mount")
    # Probes on the admin port.
    for probe, path in (("livenessProbe", "/live"), ("readinessProbe", "/ready"), ("startupProbe", "/ready")):
        g = c[probe]["httpGet"]
        check(g["path"] == path and ports.get(g["port"], g["port"]) == 4191, f"{probe}: GET {path} on 4191")
    # Hardening.
    psc, csc = spec["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, "pod: runAsNonRoot, uid 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation false")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], "container: drop ALL capabilities")
    for kind in ("requests", "limits"):
        check({"cpu", "memory"} <= set(c["resources"].get(kind, {})), f"container: cpu and memory {kind}")
    drain = duration_s(cfg["server"].get("drain_timeout", "30s"))
    check(spec["terminationGracePeriodSeconds"] > drain + DRAIN_DELAY_S,
          f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} <= drain {drain}s + delay {DRAIN_DELAY_S}s")
    tsc = spec.get("topologySpreadConstraints", [])
    check(tsc and all(selects(t["labelSelector"], labels) for t in tsc), "topology spread over the gateway's pods")
    sa = spec["serviceAccountName"]
    check(("ServiceAccount", sa) in objs, f"ServiceAccount {sa} is not deployed")
    ns = dep["metadata"]["namespace"]
    check(f"{sa}.{ns}.serviceaccount.identity.linkerd.cluster.local" == GATEWAY_ID,
          "the service account's Linkerd identity is not the gateway identity")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9191"
          and ann.get("prometheus.io/path") == "/metrics", "pod: prometheus.io annotations for 9191 /metrics")
    # Service as a Link reads it.
    s = svc["spec"]
    check(svc["metadata"]["name"] == "linkerd-gateway", "Service name linkerd-gateway")
    check(s["type"] == "LoadBalancer" and s.get("externalTrafficPolicy") == "Local", "Service: LoadBalancer, Local")
    check(selects({"matchLabels": s["selector"]}, labels), "Service selector does not match the pods")
    sports = {p["name"]: (p["port"], ports.get(p["targetPort"], p["targetPort"])) for p in s["ports"]}
    check(sports == {"mc-gateway": (4143, 4143), "mc-probe": (4191, 4191)}, f"Service ports {sports}")
    metrics_port = int(cfg["server"]["metrics"].rsplit(":", 1)[1])
    check(all(t != metrics_port for _, t in sports.values()), "the /metrics port is exposed by the Service")
    want = {
        "mirror.linkerd.io/gateway-identity": GATEWAY_ID,
        "mirror.linkerd.io/probe-path": c["readinessProbe"]["httpGet"]["path"],
        "mirror.linkerd.io/probe-period": "3",
        "mirror.linkerd.io/multicluster-gateway": "true",
    }
    got = {k: v for k, v in svc["metadata"].get("annotations", {}).items() if k.startswith("mirror.linkerd.io/")}
    check(got == want, f"Service annotations {got} != {want}")
    # Disruption budget and autoscaler.
    pdb = one(objs, "PodDisruptionBudget")
    check(selects(pdb["spec"]["selector"], labels), "PodDisruptionBudget does not select the pods")
    hpa = one(objs, "HorizontalPodAutoscaler")
    check(pdb["spec"].get("maxUnavailable", 0) < hpa["spec"]["minReplicas"], "PDB allows evicting every replica")
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "HPA targets the Deployment")
    check(hpa["spec"]["minReplicas"] >= 2, "HPA minReplicas >= 2")
    check(any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]), "HPA on cpu")
    return dep, svc


def podmonitor_checks(objs):
    dep = one(objs, "Deployment")
    pm = one(objs, "PodMonitor")
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    check(pm.get("apiVersion") == "monitoring.coreos.com/v1", "PodMonitor apiVersion")
    check(pm["metadata"]["namespace"] == dep["metadata"]["namespace"], "PodMonitor in the gateway's namespace")
    check(selects(pm["spec"]["selector"], labels), "PodMonitor selector does not match the pods")
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    check(ports.get(ep["port"]) == 9191 and ep["path"] == "/metrics", "PodMonitor scrapes /metrics on the private 9191")
    check(labels.get(pm["spec"].get("jobLabel")) == "crossgate", "PodMonitor jobLabel gives job=crossgate (rules.yaml)")


def cert_manager_checks(objs, issuer):
    dep, svc = one(objs, "Deployment"), one(objs, "Service")
    cert = one(objs, "Certificate")
    spec = cert["spec"]
    check(cert.get("apiVersion") == "cert-manager.io/v1", "Certificate apiVersion")
    check(cert["metadata"]["namespace"] == dep["metadata"]["namespace"], "Certificate in the gateway's namespace")
    check(spec["dnsNames"] == [svc["metadata"]["annotations"]["mirror.linkerd.io/gateway-identity"]],
          "Certificate: the gateway identity as its one DNS SAN")
    pk = spec["privateKey"]
    check((pk["algorithm"], pk["size"], pk["encoding"]) == ("ECDSA", 256, "PKCS8"), f"privateKey {pk}")
    check(spec["duration"] in ("24h", "24h0m0s"), "Certificate duration 24h (Linkerd's leaf lifetime)")
    check({"server auth", "client auth"} <= set(spec["usages"]), "Certificate usages: server auth, client auth")
    ref = spec["issuerRef"]
    check(ref["kind"] == issuer["kind"] == "ClusterIssuer" and ref["name"] == issuer["metadata"]["name"],
          "Certificate issuerRef names the ClusterIssuer")
    check("ca" in issuer["spec"] and issuer["spec"]["ca"].get("secretName"), "ClusterIssuer of type CA")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    ident = vols["identity"]
    check("secret" not in ident, "identity volume: the base's secret source was not removed")
    paths, secret_names = set(), set()
    for src in ident.get("projected", {}).get("sources", []):
        for kind in ("secret", "configMap"):
            if kind in src:
                paths |= {i["path"] for i in src[kind]["items"]}
                if kind == "secret":
                    secret_names.add(src[kind]["name"])
    check(paths == {"ca.crt", "tls.crt", "tls.key"}, f"identity volume paths {paths}")
    check(spec["secretName"] in secret_names, "the Certificate's Secret is not projected into the identity volume")


def no_replicas_beside_an_hpa(objs):
    """A workload an HPA scales must not set `replicas`: every apply would reset the scale."""
    for (kind, name), o in objs.items():
        if kind != "HorizontalPodAutoscaler":
            continue
        ref = o["spec"]["scaleTargetRef"]
        target = objs.get((ref["kind"], ref["name"]), {})
        check("replicas" not in target.get("spec", {}),
              f"{ref['kind']} {ref['name']} sets replicas beside the HPA {name}")


def main():
    base, podmon, certman, issuer_file = sys.argv[1:5]
    for rendered in (base, podmon, certman):
        no_replicas_beside_an_hpa(load(rendered))
    base_checks(load(base))
    podmonitor_checks(load(podmon))
    cert_manager_checks(load(certman), yaml.safe_load(open(issuer_file)))
    if errors:
        print("\n".join(f"deploy_check: {e}" for e in errors), file=sys.stderr)
        sys.exit(1)
    print("deploy_check: cross-references ok")


main()
