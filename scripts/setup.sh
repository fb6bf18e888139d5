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
