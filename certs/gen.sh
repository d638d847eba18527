#!/usr/bin/env bash
# A Linkerd-style PKI with openssl alone, for crossgate:
#   ca.crt       trust anchor: self-signed ECDSA P-256 root (10 years)
#   issuer.crt   issuer: intermediate CA, CN identity.linkerd.cluster.local (1 year)
#   issuer.key
#   gateway.crt  gateway leaf (SAN = the gateway identity, 24 h), then the issuer
#   gateway.key  its key, PKCS#8
#   client.crt   a client leaf (SAN = CLIENT_ID, 24 h), then the issuer
#   client.key
#   crossgate.toml  a configuration that uses them (relative paths)
# Usage: certs/gen.sh OUT_DIR   (env: GATEWAY_ID, CLIENT_ID, TRUST_DOMAIN)
set -euo pipefail

out=${1:?usage: gen.sh OUT_DIR}
trust_domain=${TRUST_DOMAIN:-cluster.local}
gateway_id=${GATEWAY_ID:-linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.$trust_domain}
client_id=${CLIENT_ID:-frontend.west.serviceaccount.identity.linkerd.$trust_domain}
mkdir -p "$out"
cd "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
serial() { echo "0x$(openssl rand -hex 16)"; }

# Trust anchor.
key "$tmp/ca.key"
openssl req -new -x509 -sha256 -key "$tmp/ca.key" -subj "/CN=root.linkerd.$trust_domain" \
  -days 3650 -set_serial "$(serial)" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt

# sign NAME CN DAYS EXTFILE SIGNER_CRT SIGNER_KEY: NAME.crt from a new key NAME.key.
sign() {
  local name=$1 cn=$2 days=$3 ext=$4 ca_crt=$5 ca_key=$6
  key "$name.key"
  openssl req -new -sha256 -key "$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr"
  openssl x509 -req -sha256 -in "$tmp/$name.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -set_serial "$(serial)" -days "$days" -extfile "$ext" -out "$tmp/$name.crt" 2>/dev/null
}

# Issuer (Linkerd's identity issuer): an intermediate CA that signs only leaves.
cat > "$tmp/issuer.ext" <<EXT
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
sign issuer "identity.linkerd.$trust_domain" 365 "$tmp/issuer.ext" ca.crt "$tmp/ca.key"
cp "$tmp/issuer.crt" issuer.crt

# Leaves, as Linkerd's identity controller issues them: the identity as the one DNS SAN,
# 24 h, server and client auth. The leaf file holds the leaf, then the issuer. The identity is
# the SAN, never the CN; the CN (at most 64 characters) is only the account's short name.
leaf() {
  local name=$1 id=$2
  cat > "$tmp/$name.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:$id
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
  sign "$name" "$(echo "$id" | cut -d. -f1-2)" 1 "$tmp/$name.ext" issuer.crt issuer.key
  cat "$tmp/$name.crt" issuer.crt > "$name.crt"
}
leaf gateway "$gateway_id"
leaf client "$client_id"

cat > crossgate.toml <<TOML
[server]
listen = "0.0.0.0:4143"
admin  = "0.0.0.0:4191"

[identity]
trust_anchors = "ca.crt"
certificate   = "gateway.crt"
key           = "gateway.key"

[routing]
cluster_domain = "$trust_domain"
TOML
chmod 0644 ca.crt issuer.crt gateway.crt client.crt crossgate.toml
echo "wrote $(pwd): ca.crt issuer.crt issuer.key gateway.crt gateway.key client.crt client.key crossgate.toml"
