#!/usr/bin/env bash
# emotiond on arm64, under emulation (qemu-user-static + binfmt_misc): correctness, not speed.
#
#   sudo scripts/arm64-check.sh            # the full form (about 10 minutes once the root is cached)
#   sudo scripts/arm64-check.sh --short    # the short form CI runs (tests/test_arm64.py)
#
# It builds once, and caches in $EMOTIOND_ARM64_CACHE (default /var/cache/emotiond-arm64), an
# arm64 Debian root (debootstrap --arch=arm64, about 4 minutes) and, keyed by the dependency
# ranges of pyproject.toml, a layer with a venv holding their aarch64 wheels (about 2 minutes).
# Each run mounts an overlay on them (the cache stays pristine), installs the wheel built from
# this checkout, and checks, one line each:
#   * the interpreter is aarch64, and `emotiond check` passes on the repository's config.yaml;
#   * classifier.precision auto decides by the CPU's features: qemu's cortex-a72 (no 8-bit dot
#     products: the float sibling) and neoverse-n1 (asimddp: int8);
#   * `emotiond analyze --results` on the same decoded frames (PNG, decoded once on the host)
#     agrees with the host's run row by row within tight tolerances (the compute is the same);
#   * on the .mp4 itself (full form) within looser ones: OpenCV's arm64 and amd64 builds decode
#     the H.264 frames 1-2 grey levels apart, and that moves boxes and probabilities a little;
#   * a subset of the test suite (no broker, no browser, no TensorFlow) passes on arm64.
# Two traps of emulation are handled here, not in the product: LiteRT segfaults at model load
# reading the host's x86 /proc/cpuinfo (an arm64 one, made from the emulated CPU's own hardware
# capabilities, is bind-mounted over it), and qemu 7.2's default CPU (max, with SME) makes
# XNNPACK compute wrong results (every CPU here is named: QEMU_CPU).
# Exit status: 0 all passed, 1 a check failed, 77 it cannot run here (not root, no binfmt_misc,
# no qemu-user-static or debootstrap, no ../shared/data, no network for a first build).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHORT=0
[ "${1:-}" = "--short" ] && SHORT=1
SHARED=$(cd "${EMOTIOND_SHARED:-$REPO/../shared/data}" 2>/dev/null && pwd || true)
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3

skip() { echo "SKIP arm64 check: $*"; exit 77; }
die() { echo "FAIL arm64 check: $*"; exit 1; }
FAILED=0
report() {  # report OK|FAIL text
  if [ "$1" = ok ]; then echo "ok   $2"; else echo "FAIL $2"; FAILED=1; fi
}

[ -n "$SHARED" ] && [ -f "$SHARED/videos/talking_head_640x360.mp4" ] || skip "shared data not found: ${EMOTIOND_SHARED:-$REPO/../shared/data}"
# shellcheck source=scripts/arm64-root.sh
. "$REPO/scripts/arm64-root.sh"   # the cached root, its lock, open_root/close_root/run_arm

# --- the dependency layer (a venv with the aarch64 wheels), keyed by the ranges ---------------
DEPS=$("$PY" - "$REPO/pyproject.toml" <<'EOF'
import shlex, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
test = [d for d in p["optional-dependencies"]["test"] if d.split(">")[0].split("<")[0].split("=")[0].strip() in ("pytest", "jsonschema")]
print(" ".join(shlex.quote(d) for d in p["dependencies"] + test))
EOF
)
KEY="$(echo "$STAMP $DEPS" | sha256sum | cut -c1-16) v1"
LAYER=$CACHE/layer
if [ "$(cat "$CACHE/layer.key" 2>/dev/null)" != "$KEY" ]; then
  echo "building the arm64 venv layer ($DEPS): once per dependency change, about 2-4 minutes"
  rm -rf "$LAYER.new" && mkdir -p "$LAYER.new"
  open_root "$ROOT" "$LAYER.new" "$RUN/build"
  # shellcheck disable=SC2086
  if ! run_arm "$RUN/build" "$CPU" /bin/sh -c "python3 -m venv $VENV && $VENV/bin/pip install -q --no-cache-dir $DEPS" \
       > "$CACHE/layer.log" 2>&1; then
    tail -5 "$CACHE/layer.log"
    grep -qi "no matching distribution\|connection\|network\|resolve" "$CACHE/layer.log" && skip "pip could not fetch the aarch64 wheels (a first build needs the network)"
    die "the venv layer failed: see $CACHE/layer.log"
  fi
  rm -f "$RUN/build/etc/resolv.conf" "$RUN/build/etc/ssl/certs/host-ca.crt"
  close_root "$RUN/build"
  rm -rf "$LAYER" && mv "$LAYER.new/upper" "$LAYER" && rm -rf "$LAYER.new" && echo "$KEY" > "$CACHE/layer.key"
fi

# --- this checkout in a fresh overlay ------------------------------------------------------------
M=$RUN/root
open_root "$LAYER:$ROOT" "$RUN/rw" "$M"
mkdir -p "$RUN/wheel" "$M/w/emotiond" "$M/w/shared/data" "$M/w/wheel" "$M/w/out"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$RUN/wheel" "$REPO" >/dev/null 2>&1 \
  || "$PY" -m pip wheel -q --no-deps -w "$RUN/wheel" "$REPO" >/dev/null
cp "$RUN"/wheel/emotiond-*.whl "$M/w/wheel/"
# the tracked files (tests, config, models) as the source tree the test subset runs from
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$M/w/emotiond"
mnt --bind -o ro "$SHARED" "$M/w/shared/data"
run_arm "$M" "$CPU" /bin/sh -c "$VENV/bin/pip install -q --no-deps --no-index /w/wheel/emotiond-*.whl" >/dev/null \
  || die "the wheel did not install in the arm64 venv"

arch=$(run_arm "$M" "$CPU" python3 -c 'import platform; print(platform.machine())')
[ "$arch" = aarch64 ] && report ok "python in the arm64 root runs as $arch (QEMU_CPU=$CPU)" \
  || report FAIL "python in the arm64 root reports ${arch:-nothing}, not aarch64"

# emotiond check on the repository's config (models beside it), from the installed wheel: the
# source is the talking-head clip, the broker a Mosquitto on the host (a chroot shares its network)
BROKER_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BROKER_PID=
if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -p "$BROKER_PORT" >/dev/null 2>&1 &
  BROKER_PID=$!
  trap 'kill $BROKER_PID 2>/dev/null || true; cleanup' EXIT
fi
"$PY" - "$REPO/config.yaml" "$M/w/emotiond/check.yaml" "$BROKER_PORT" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["source"]["uri"] = "/w/shared/data/videos/talking_head_640x360.mp4"
cfg["mqtt"]["port"] = int(sys.argv[3])
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
EOF
if out=$(run_arm "$M" "$CPU" /bin/sh -c "cd /w/emotiond && $VENV/bin/emotiond check -c check.yaml --timeout 60" 2>&1); then
  report ok "emotiond check passes on arm64 (config.yaml, the clip as source$([ -n "$BROKER_PID" ] && echo ", the host's Mosquitto"))"
else
  echo "$out" | tail -8
  if [ -z "$BROKER_PID" ] && ! echo "$out" | grep -v "^broker" | grep -q failed; then
    report ok "emotiond check on arm64: all but the broker (no mosquitto on the host)"
  else
    report FAIL "emotiond check on arm64"
  fi
fi

# classifier.precision auto by the emulated CPU's features
for pair in "cortex-a72 emotion_wild_fp16.tflite" "neoverse-n1 emotion_wild.tflite"; do
  set -- $pair
  got=$(run_arm "$M" "$1" /bin/sh -c "cd /tmp && python3 -c \"
from pathlib import Path
from daemon.model.precision import _host, choose_model
c = choose_model(Path('/w/emotiond/models/emotion_wild.tflite'), 'auto', 'cpu', 'int8')
m, f = _host()
print(c.path.name, '|', ' '.join(sorted(x for x in f if x in ('asimddp', 'i8mm', 'asimdhp', 'fphp'))) or '-', '|', c.reason or 'int8 is the fast path')
\"" 2>&1 | tail -1)
  [ "${got%% *}" = "$2" ] && report ok "precision auto on $1 (features: $(echo "$got" | cut -d'|' -f2 | xargs)): ${got%% *}" \
    || report FAIL "precision auto on $1: expected $2, got: $got"
done

# One model file on both sides: classifier.precision auto picks by the CPU (an x86 host without
# VNNI runs the fp16 sibling, neoverse-n1 the int8 file), and the two files differ by up to 0.16
# in a probability on these frames (talking head, an AVX2 host): the model's precision, not the
# port. Both run config.yaml with precision: file (the host's copy beside a link to models/).
"$PY" - "$REPO/config.yaml" "$M/w/emotiond/same_model.yaml" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg.setdefault("classifier", {})["precision"] = "file"
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
EOF
mkdir -p "$RUN/host" && ln -sfn "$REPO/models" "$RUN/host/models" && cp "$M/w/emotiond/same_model.yaml" "$RUN/host/"
SAME="$RUN/host/same_model.yaml"

# the same decoded frames on both: the compute must agree closely
N_FRAMES=$([ $SHORT = 1 ] && echo 25 || echo 225)
mkdir -p "$M/w/out/frames"
"$PY" - "$SHARED/videos/talking_head_640x360.mp4" "$M/w/out/frames" "$N_FRAMES" <<'EOF'
import sys, cv2
cap, n = cv2.VideoCapture(sys.argv[1]), int(sys.argv[3])
step = max(1, 225 // n)
for i in range(225):
    ok, f = cap.read()
    if not ok:
        break
    if i % step == 0:
        cv2.imwrite(f"{sys.argv[2]}/frame{i:04d}.png", f)
EOF
(cd "$REPO" && "$PY" -m daemon analyze "$M/w/out/frames" -c "$SAME" --results "$RUN/host_frames.csv" >/dev/null 2>&1) \
  || report FAIL "the host's analyze of the frames"
if run_arm "$M" "$CPU" /bin/sh -c "cd /w/emotiond && emotiond analyze /w/out/frames -c same_model.yaml --results /w/out/arm_frames.csv" >/dev/null 2>&1; then
  # The float models (FaceMesh, Iris) agree to rounding; the int8 emotion model runs XNNPACK's
  # Arm dotprod kernels here and VNNI (or AVX2) ones on the host, whose requantisation rounds
  # differently: measured up to 0.053 in a probability with the box crop, 0.072 with the default's
  # five-point crop (which follows YuNet's float points, not a rounded box, so any last-digit
  # difference between the builds moves the face by a fraction of a pixel). A label may flip only where the top two
  # are closer than twice the probability tolerance (each can move by it): --label-margin 0.16.
  if "$PY" scripts/compare_results.py "$RUN/host_frames.csv" "$M/w/out/arm_frames.csv" --prefix "same frames ($(ls "$M/w/out/frames" | wc -l) PNG): " \
       --box-px 1 --prob 0.08 --eye 0.03 --pose-deg 0.2 --gaze-deg 1 --openness 0.01 --labels 0 --label-margin 0.16; then :; else FAILED=1; fi
else
  report FAIL "emotiond analyze of the frames on arm64"
fi

# the .mp4 itself: each build decodes it (the difference is the decoder's, stated in docs/install/arm64.md:
# 1-2 grey levels on most pixels move a box by up to 12 px, and the 24 px eye patch with it)
if [ $SHORT = 0 ]; then
  for clip in talking_head_640x360.mp4; do
    (cd "$REPO" && "$PY" -m daemon analyze "$SHARED/videos/$clip" -c "$SAME" --results "$RUN/host_$clip.csv" >/dev/null 2>&1) \
      || report FAIL "the host's analyze of $clip"
    if run_arm "$M" "$CPU" /bin/sh -c "cd /w/emotiond && emotiond analyze /w/shared/data/videos/$clip -c same_model.yaml --results /w/out/arm_$clip.csv" >/dev/null 2>&1; then
      if "$PY" scripts/compare_results.py "$RUN/host_$clip.csv" "$M/w/out/arm_$clip.csv" --prefix "$clip decoded on each: " \
           --box-px 12 --prob 0.1 --eye 0.4 --pose-deg 5 --gaze-deg 6 --openness 0.04 --labels 0.03 --label-margin 0.2; then :; else FAILED=1; fi
    else
      report FAIL "emotiond analyze $clip on arm64"
    fi
  done
fi

# the arm64 .deb (full form): built inside the root (scripts/build-deb.sh --arch arm64), installed
# with apt in a fresh overlay of it, and run from /opt/emotiond/venv with the packaged models
if [ $SHORT = 0 ]; then
  if deb=$(EMOTIOND_ARM64_LOCKED=1 "$REPO/scripts/build-deb.sh" --arch arm64 --out "$RUN/deb" 2>"$RUN/build-deb.log" | tail -1) && [ -f "$deb" ]; then
    report ok "arm64 .deb built: $(basename "$deb") ($(du -h "$deb" | cut -f1))"
    D=$RUN/debroot
    open_root "$ROOT" "$RUN/debrw" "$D"
    mkdir -p "$D/w/deb" "$D/w/frames" && cp "$deb" "$D/w/deb/" && cp "$M/w/out/frames/frame0000.png" "$D/w/frames/"
    if run_arm "$D" "$CPU" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /w/deb/$(basename "$deb")" > "$RUN/apt.log" 2>&1; then
      if out=$(run_arm "$D" "$CPU" /bin/sh -c "cd /tmp && /opt/emotiond/venv/bin/emotiond analyze /w/frames/frame0000.png -c /etc/emotiond/config.yaml --results /tmp/r.csv && /opt/emotiond/venv/bin/emotiond models" 2>&1) \
         && echo "$out" | grep -q "faces in 1" && echo "$out" | grep -q "emotion_wild.tflite"; then
        report ok "arm64 .deb installed with apt (no systemd as PID 1 here) and its venv analyzes a photo with the packaged models"
      else
        echo "$out" | tail -5; report FAIL "the installed arm64 .deb did not run"
      fi
    else
      tail -5 "$RUN/apt.log"; report FAIL "apt could not install the arm64 .deb"
    fi
    close_root "$D"
  else
    tail -5 "$RUN/build-deb.log"; report FAIL "scripts/build-deb.sh --arch arm64"
  fi
fi

# a subset of the test suite on arm64 (no broker, no browser, no TensorFlow)
if [ $SHORT = 1 ]; then
  TESTS="tests/test_precision.py tests/test_track.py tests/test_schedule.py"
else
  TESTS="tests/test_precision.py tests/test_track.py tests/test_schedule.py tests/test_rules.py tests/test_attention.py tests/test_results.py"
fi
if out=$(run_arm "$M" "$CPU" /bin/sh -c "cd /w/emotiond && python3 -m pytest -q -p no:cacheprovider -m 'not slow' $TESTS" 2>&1); then
  report ok "tests on arm64: $(echo "$out" | tail -1) ($TESTS)"
else
  echo "$out" | grep -E "^(FAILED|ERROR)" | head -10
  report FAIL "tests on arm64: $(echo "$out" | tail -1)"
fi

[ $FAILED = 0 ] && echo "arm64 check passed ($([ $SHORT = 1 ] && echo short || echo full) form)" || echo "arm64 check FAILED"
exit $FAILED
