#!/usr/bin/env bash
# Installs everything a node, the demo and the tests need on a fresh Debian 12 machine (run as root):
# Debian packages (Orthanc + DICOMweb plugin as each site's PACS, DCMTK and dicom3tools as independent
# DICOM peers/validators, GDCM for JPEG 2000 test files, PostgreSQL for the registry tests, xmlsec for
# the trust list) and the project itself in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  orthanc orthanc-dicomweb dcmtk dicom3tools libgdcm-tools
  postgresql libxmlsec1-dev pkg-config
  python3 python3-venv python3-dev gcc curl ca-certificates procps
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's orthanc/postgresql try to start services; there may be no init system: that is fine,
  # the project starts its own processes.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# F9 viewer: the prebuilt OHIF viewer — only the dist/ of the npm
# package, never rebuilt, so no Node runtime is needed to serve it (npm is used once, to fetch the tarball) —
# and, for the browser tests, Debian's Chromium with fonts (Playwright drives it; it never downloads its own).
viewer_packages=(chromium fonts-liberation)
viewer_missing=()
for p in "${viewer_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || viewer_missing+=("$p")
done
# Any npm will do (a NodeSource nodejs bundles its own and conflicts with Debian's npm package).
command -v npm >/dev/null || viewer_missing+=(npm)
if [ ${#viewer_missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${viewer_missing[@]}" >/dev/null
fi
ohif_version=3.13.2
# sha512 of @ohif/app-3.13.2.tgz as published (npm also checks the registry's integrity field).
ohif_sha512=5997719a9986eeba85816f5924b71b82bdd70ad2e2d4a0cd3e831a798e4f3deea3e06e1f8c48e393271933a0ba664d85f3b04ac457e9abe8dde715d907d13c10
ohif_dist=.venv/share/drimbox/ohif/$ohif_version/dist
if [ ! -f "$ohif_dist/index.html" ]; then
  ohif_tmp=$(mktemp -d)
  (cd "$ohif_tmp" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null)
  echo "$ohif_sha512  $ohif_tmp/ohif-app-$ohif_version.tgz" | sha512sum -c --quiet -
  tar -xzf "$ohif_tmp/ohif-app-$ohif_version.tgz" -C "$ohif_tmp" package/dist
  mkdir -p "$(dirname "$ohif_dist")"
  rm -rf "$ohif_dist"
  mv "$ohif_tmp/package/dist" "$ohif_dist"  # complete or absent: index.html is checked above
  rm -rf "$ohif_tmp"
fi

# Demo identity provider: the certified npm package oidc-provider, run by Node.js
# (drimbox/devnet/oidc/provider.mjs), pinned with its whole dependency tree by the package-lock.json kept
# next to the script (npm ci checks every integrity hash). Node 20 runs it (it warns that it prefers 22).
oidc_missing=()
command -v node >/dev/null || oidc_missing+=(nodejs)
command -v npm >/dev/null || oidc_missing+=(npm)
if [ ${#oidc_missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${oidc_missing[@]}" >/dev/null
fi
oidc_dir=.venv/share/drimbox/oidc-provider
if ! cmp -s drimbox/devnet/oidc/package-lock.json "$oidc_dir/package-lock.json" \
    || [ ! -f "$oidc_dir/node_modules/oidc-provider/package.json" ]; then
  mkdir -p "$oidc_dir"
  cp drimbox/devnet/oidc/package.json drimbox/devnet/oidc/package-lock.json "$oidc_dir/"
  npm ci --prefix "$oidc_dir" --omit=dev --ignore-scripts --no-audit --no-fund --silent
fi
