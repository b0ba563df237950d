#!/usr/bin/env bash
# Set up a development machine: Mosquitto from the distribution, a venv in .venv, the package
# with the extras named in $EXTRAS (default: everything the tests need, the documentation build
# included). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-train,test,http,docs,updates}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
# Debian packages the tests use: a real broker and its clients, systemd-analyze for the units,
# libseccomp's Python binding for the unit sandbox test, Chromium and its WebDriver for the live page test,
# GStreamer's RTSP server (run by the system python3 through python3-gi) as the test camera;
# python3-venv to build the .deb (dpkg-deb is in dpkg), systemd-container and debootstrap to boot it
# under a real systemd (tests/test_systemd_e2e.py); qemu-user-static and binfmt-support to run the
# arm64 check under emulation (tests/test_arm64.py); nats-server for the clustered broker
# (tests/test_fleet_cluster.py: three nodes with JetStream and MQTT on loopback) and PostgreSQL for
# the fleet ingest (tests/test_fleet_ingest.py starts its own cluster in a temporary folder).
APT_PACKAGES=${APT_PACKAGES:-mosquitto mosquitto-clients systemd python3-seccomp chromium chromium-driver python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-venv systemd-container debootstrap qemu-user-static binfmt-support nats-server postgresql}
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # flock: several checkouts on one machine may set up at once, and dpkg takes one at a time.
  as_root flock /tmp/apt.lock apt-get update -qq
  # shellcheck disable=SC2086
  as_root flock /tmp/apt.lock apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# setuptools >= 77 as pyproject.toml's build-system says: the tests build the wheel without isolation
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
