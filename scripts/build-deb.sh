#!/usr/bin/env bash
# Build the Debian package: emotiond_<version>_<arch>.deb in --out (default: dist/).
#
#   /opt/emotiond/venv          the daemon's venv (the plain install: no TensorFlow, the updates
#                               and http extras), with the default models inside the package
#                               (daemon/models); no pip, setuptools or packages' test suites
#   /opt/emotiond/README*.md    the documentation the units link to
#   /lib/systemd/system/        emotiond.service, emotiond@.service
#   /etc/emotiond/config.yaml   the repository's config.yaml, a dpkg conffile: a copy you
#                               changed is kept on upgrade (dpkg asks, or keeps it under
#                               --force-confold); its model: paths find the packaged models
#   postinst: enable emotiond.service on first install, (re)start it and running instances
#   prerm:    stop and disable them on remove; postrm: purge removes /etc/emotiond and the
#             state directory (the outbox)
#
# procps is a dependency for /bin/kill, which the units' ExecReload= runs (a minimal Debian
# has no kill binary: reload failed there until it was declared).
#
# The venv is made with the distribution's interpreter (--python, default /usr/bin/python3),
# so its bin/python is a link to /usr/bin/python3.X, the file Debian's python3 package puts
# on every machine of the same release: the package depends on exactly that python3 version,
# and its compiled wheels (NumPy, OpenCV, LiteRT) are for the build machine's architecture.
# Build on (or in a chroot of) the release and architecture you ship to: see docs/install/index.md.
#
# Options:
#   --out DIR      where the .deb goes (default: dist/)
#   --python PY    the system interpreter for the venv (default: /usr/bin/python3)
#   --wheel FILE   install this emotiond wheel instead of building one from the checkout
#   --arch arm64   build for arm64 on another machine: this script runs again inside the cached
#                  arm64 Debian root of scripts/arm64-root.sh, under emulation (qemu-user-static,
#                  binfmt_misc; root needed; pip there fetches the aarch64 wheels). Exit 77 when
#                  this machine cannot emulate arm64.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$REPO/dist PYTHON=/usr/bin/python3 WHEEL= WANT_ARCH=
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) WANT_ARCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --wheel) WHEEL=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "build-deb.sh: $*" >&2; }
die() { echo "build-deb.sh: $*" >&2; exit 1; }

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (a Debian or Ubuntu build machine)"

if [ -n "$WANT_ARCH" ] && [ "$WANT_ARCH" != "$(dpkg --print-architecture)" ]; then
  [ "$WANT_ARCH" = arm64 ] || die "--arch $WANT_ARCH: only arm64 is built on another architecture (under emulation)"
  [ -z "$WHEEL" ] || die "--wheel with --arch arm64: the wheel is built inside the arm64 root"
  skip() { echo "build-deb.sh: cannot build for arm64 here: $*" >&2; exit 77; }
  # shellcheck source=scripts/arm64-root.sh
  . "$REPO/scripts/arm64-root.sh"
  M=$RUN/root
  open_root "$ROOT" "$RUN/rw" "$M"
  mkdir -p "$M/w/src" "$M/w/out"
  if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z -co --exclude-standard |
      tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$M/w/src" -xf -
  else
    tar -C "$REPO" --exclude=./build --exclude=./.venv --exclude=./dist -cf - . | tar -C "$M/w/src" -xf -
  fi
  say "building the arm64 package inside $ROOT (QEMU_CPU=$CPU; several minutes under emulation)"
  run_arm "$M" "$CPU" /bin/bash /w/src/scripts/build-deb.sh --out /w/out >&2 || die "the build inside the arm64 root failed"
  mkdir -p "$OUT"
  deb=$(ls "$M"/w/out/emotiond_*_arm64.deb) || die "no arm64 .deb came out"
  cp "$deb" "$OUT/"
  say "wrote $OUT/$(basename "$deb") ($(du -h "$deb" | cut -f1))"
  echo "$OUT/$(basename "$deb")"
  exit 0
fi
PYTHON=$(command -v "$PYTHON") || die "no interpreter $PYTHON"
case "$(readlink -f "$PYTHON")" in
  /usr/bin/*) ;;
  *) die "$PYTHON is not the distribution's interpreter (/usr/bin/python3.X): the venv would point at a file the target does not have" ;;
esac
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON has no venv/ensurepip: apt-get install python3-venv"

VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/daemon/__init__.py")
ARCH=$(dpkg --print-architecture)
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYNEXT=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
PREFIX=/opt/emotiond
NAME=emotiond_${VERSION}_${ARCH}

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/emotiond-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
VENV=$ROOT$PREFIX/venv

# --- the venv ---------------------------------------------------------------------------------
say "venv with $PYTHON ($PYVER, $ARCH)"
"$PYTHON" -m venv "$VENV"
if [ -z "$WHEEL" ]; then
  # A wheel from a copy of the checkout's files (tracked, and untracked ones git does not
  # ignore): a stale build/ or .venv never gets in. It carries the default models (setup.py).
  mkdir -p "$STAGE/src"
  if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z -co --exclude-standard |
      tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$STAGE/src" -xf -
  else
    tar -C "$REPO" --exclude=./build --exclude=./.venv --exclude=./dist -cf - . | tar -C "$STAGE/src" -xf -
  fi
  "$VENV/bin/python" -m pip wheel -q --no-deps -w "$STAGE/wheel" "$STAGE/src" >&2
  WHEEL=$(ls "$STAGE"/wheel/emotiond-*.whl)
fi
# No .pyc yet: they would name the staging path; compiled below for the installed one.
# The updates (python-tuf) and http (prometheus-client) extras too: a device turns fleet updates
# and the live page on in its config alone (its venv has no pip to add them later, see below).
"$VENV/bin/python" -m pip install -q --no-compile --disable-pip-version-check "${WHEEL}[updates,http]" >&2
"$VENV/bin/python" - <<'EOF' || die "the venv cannot load the daemon and its models"
from daemon.model.paths import installed_models_dir
folder = installed_models_dir()
assert folder is not None and (folder / "emotion_wild.tflite").is_file(), folder
EOF

# --- what a device does not need (flash is small; docs/benchmarks/history.md, ".deb contents") --
# pip and setuptools install packages: a device never does, the .deb replaces the venv whole.
"$VENV/bin/python" -m pip uninstall -y -q --disable-pip-version-check setuptools pip >&2
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Every package's own test suite; NumPy's build tools (f2py, numpy.distutils), which the daemon
# never imports; LiteRT's ahead-of-time compilers for NPUs (tools/apply_plugin_main, the
# vendors' compiler plugins, aot/) and its benchmark tool: the daemon runs models on the CPU, a
# GPU or a delegate library and never compiles them (the vendors' dispatch libraries stay);
# OpenCV's Haar cascades but the one that detector: haar loads.
find "$SITE" -mindepth 2 -depth -type d -name tests -exec rm -rf {} +
rm -rf "$SITE/numpy/f2py" "$SITE/numpy/distutils" "$VENV/bin/f2py" \
  "$SITE/ai_edge_litert/tools" "$SITE/ai_edge_litert/aot" "$SITE"/ai_edge_litert/vendors/*/compiler \
  "$VENV/bin/litert-benchmark"
find "$SITE/cv2/data" -name 'haarcascade_*.xml' ! -name haarcascade_frontalface_default.xml -delete
"$VENV/bin/python" - <<'EOF' || die "the venv lost something the daemon needs"
import cv2, numpy
from ai_edge_litert import compiled_model, interpreter  # noqa: F401 - the GPU path imports it
from daemon.model.paths import installed_models_dir
from daemon.model.tflite import TfliteModel
from daemon.runtime.app import Daemon  # noqa: F401 - every module the daemon imports at start
from daemon.web import metrics  # noqa: F401 - http.enabled: prometheus-client
from daemon.vision.detectors.haar import default_cascade_path
model = TfliteModel(installed_models_dir() / "emotion_ferplus.tflite")
assert model.predict(numpy.zeros((2, *model._input["shape"][1:]), model._input["dtype"])).shape == (2, len(model.labels))
assert not cv2.CascadeClassifier(str(default_cascade_path())).empty()
EOF
# The venv was made at $VENV; it will live at $PREFIX/venv: every script and pyvenv.cfg that
# names its path is rewritten (the interpreter link, /usr/bin/python3.X, stays as it is).
grep -rlI --null -- "$VENV" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -0 -r sed -i "s#$VENV#$PREFIX/venv#g"
find "$VENV" -name __pycache__ -prune -exec rm -rf {} +
"$VENV/bin/python" -m compileall -q -j 0 -s "$ROOT" -p / "$VENV/lib" >/dev/null

# --- files --------------------------------------------------------------------------------------
install -d "$ROOT/lib/systemd/system" "$ROOT/etc/emotiond" "$ROOT/DEBIAN"
install -m 0644 "$REPO"/systemd/emotiond.service "$REPO"/systemd/emotiond@.service "$ROOT/lib/systemd/system/"
install -m 0644 "$REPO/config.yaml" "$ROOT/etc/emotiond/config.yaml"
install -m 0644 "$REPO/README.md" "$ROOT$PREFIX/README.md"
install -m 0644 "$REPO/systemd/README.md" "$ROOT$PREFIX/README.systemd.md"

# --- control ------------------------------------------------------------------------------------
echo /etc/emotiond/config.yaml >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/control" <<EOF
Package: emotiond
Version: $VERSION
Architecture: $ARCH
Maintainer: emotiond developers <emotiond@localhost>
Depends: python3 (>= $PYVER), python3 (<< $PYNEXT), libc6, libstdc++6, procps
Recommends: mosquitto
Section: misc
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Description: edge daemon for facial emotion recognition and driver-fatigue alerts
 Camera -> face detection -> TFLite emotion and eye-state models -> MQTT, as a hardened
 systemd service (Type=notify, watchdog, DynamicUser). The venv in /opt/emotiond/venv
 is for Python $PYVER on $ARCH.
EOF

cat >"$ROOT/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # First install: start at boot. An upgrade keeps what the admin chose.
    if [ -z "$2" ]; then
        systemctl enable emotiond.service >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        if systemctl is-enabled --quiet emotiond.service; then
            systemctl restart emotiond.service || true
        fi
        # Running per-camera instances get the new version too.
        systemctl try-restart 'emotiond@*.service' || true
    fi
fi
exit 0
EOF
cat >"$ROOT/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop emotiond.service 'emotiond@*.service' || true
    fi
    # Enablement links of the service and of every instance: the units go with the package.
    systemctl disable emotiond.service >/dev/null 2>&1 || true
    find /etc/systemd/system -path '*.wants/*' -type l \
        \( -name emotiond.service -o -name 'emotiond@*.service' \) -delete 2>/dev/null || true
fi
exit 0
EOF
cat >"$ROOT/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
    remove)
        # Byte code Python may have written beside the packaged files (a root-run tool).
        rm -rf /opt/emotiond
        ;;
    purge)
        rm -rf /opt/emotiond /etc/emotiond /var/lib/emotiond /var/lib/private/emotiond \
            /var/lib/emotiond-* /var/lib/private/emotiond-*
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl reset-failed 'emotiond.service' 'emotiond@*.service' >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm" "$ROOT/DEBIAN/postrm"

mkdir -p "$OUT"
# gzip: every dpkg reads it, and it is several times faster to make than xz on a small box.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$ROOT" "$OUT/$NAME.deb" >/dev/null
say "wrote $OUT/$NAME.deb ($(du -h "$OUT/$NAME.deb" | cut -f1))"
echo "$OUT/$NAME.deb"
