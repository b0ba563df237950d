# shellcheck shell=bash
# The cached arm64 Debian root and the mounts to run in it under emulation, for
# scripts/arm64-check.sh and scripts/build-deb.sh --arch arm64 (sourced, not run).
#
# The caller sets REPO and defines skip (exit 77: cannot run here) and die; this file checks
# what emulation needs (root, debootstrap, qemu-user-static, a binfmt_misc handler for aarch64
# with the F flag, so the root needs no qemu inside), builds the root once in
# $EMOTIOND_ARM64_CACHE (default /var/cache/emotiond-arm64; debootstrap --arch=arm64, about
# 4 minutes), takes its lock, and defines:
#   open_root LOWERS DIR MERGED   an overlay of the cached layers with a writable upper in DIR
#   close_root MERGED             unmount it again
#   run_arm MERGED CPU CMD...     CMD in the root on qemu's CPU model CPU (QEMU_CPU), with an
#                                 arm64 /proc/cpuinfo made from that CPU's hardware capabilities
# Every mount is undone on exit (cleanup, in the EXIT trap).
CACHE=${EMOTIOND_ARM64_CACHE:-/var/cache/emotiond-arm64}
SUITE=${EMOTIOND_ARM64_SUITE:-bookworm}
MIRROR=${EMOTIOND_ARM64_MIRROR:-http://deb.debian.org/debian}
CPU=${EMOTIOND_ARM64_CPU:-neoverse-n1}   # the CPU the checks run on (asimddp, like a Pi 5 or a Jetson Orin)
VENV=/opt/emotiond-check

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot and mounts)"
for tool in debootstrap qemu-aarch64-static chroot mount; do
  command -v "$tool" >/dev/null || skip "$tool not found (apt install debootstrap qemu-user-static)"
done
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || skip "binfmt_misc cannot be mounted here"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v update-binfmts >/dev/null; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || skip "no binfmt_misc handler for aarch64 (qemu-user-static registers it)"
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || skip "the aarch64 handler lacks the F flag (the root would need qemu inside)"

mkdir -p "$CACHE"
if [ -z "${EMOTIOND_ARM64_LOCKED:-}" ]; then  # a caller that holds the lock already passes it on
  exec 9>"$CACHE/.lock"
  flock -w 1800 9 || die "another arm64 run holds $CACHE/.lock"
  export EMOTIOND_ARM64_LOCKED=1
fi

# --- the cached root ---------------------------------------------------------------------------
ROOT=$CACHE/root
STAMP="$SUITE arm64 minbase python3 python3-venv ca-certificates v1"
if [ "$(cat "$CACHE/root.stamp" 2>/dev/null)" != "$STAMP" ]; then
  if [ ! -e "$CACHE/root.stamp" ] && [ -x "$ROOT/usr/bin/python3" ] && [ -x "$ROOT/usr/lib/python3.11/venv/__main__.py" -o -f "$ROOT/usr/lib/python3.11/venv/__init__.py" ] \
     && grep -q "Base system installed successfully" "$CACHE/debootstrap.log" 2>/dev/null; then
    echo "$STAMP" > "$CACHE/root.stamp"  # a root an earlier version of this script built
  else
    echo "building the arm64 root ($SUITE) in $ROOT: once, about 4 minutes"
    rm -rf "$ROOT.new"
    if ! debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
         "$SUITE" "$ROOT.new" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1; then
      tail -5 "$CACHE/debootstrap.log"
      grep -qi "failed getting\|couldn't download\|temporary failure\|could not resolve" "$CACHE/debootstrap.log" \
        && skip "debootstrap could not reach $MIRROR (a first build needs the network)"
      die "debootstrap failed: see $CACHE/debootstrap.log"
    fi
    rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT" && echo "$STAMP" > "$CACHE/root.stamp"
  fi
fi

# --- mounts ------------------------------------------------------------------------------------
RUN=$(mktemp -d /tmp/emotiond-arm64.XXXXXX)
MOUNTS=()
cleanup() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
mnt() { mount "$@"; MOUNTS+=("${@: -1}"); }

# An overlay of lower layers (colon-separated, topmost first) with a writable upper, and the
# /proc, /dev and resolv.conf a chroot needs.
open_root() {  # open_root LOWERS UPPER MERGED
  mkdir -p "$2/upper" "$2/work" "$3"
  mnt -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$3"
  mnt -t proc proc "$3/proc"
  mnt --bind /dev "$3/dev"
  cp -L /etc/resolv.conf "$3/etc/resolv.conf" 2>/dev/null || true
  # the host's trust store (it may hold a proxy's CA) for pip inside the root
  mkdir -p "$3/etc/ssl/certs" && cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$3/etc/ssl/certs/host-ca.crt" 2>/dev/null || true
}
close_root() {  # close_root MERGED: unmount what open_root mounted there
  local i keep=()
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
    case ${MOUNTS[$i]} in "$1"|"$1"/*) umount -l "${MOUNTS[$i]}" ;; *) keep=("${MOUNTS[$i]}" "${keep[@]}") ;; esac
  done
  MOUNTS=("${keep[@]}")
}
# A fake arm64 /proc/cpuinfo for an emulated CPU, from that CPU's own hardware capabilities
# (getauxval under qemu reports the emulated CPU's): LiteRT reads /proc/cpuinfo at load.
cpuinfo_for() {  # cpuinfo_for MERGED CPU > file
  local feats
  feats=$(QEMU_CPU=$2 chroot "$1" /usr/bin/python3 - <<'EOF'
import ctypes
g = ctypes.CDLL(None).getauxval
g.restype, g.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
h, h2 = g(16), g(26)
names = {0: "fp", 1: "asimd", 2: "evtstrm", 3: "aes", 4: "pmull", 5: "sha1", 6: "sha2", 7: "crc32", 8: "atomics",
         9: "fphp", 10: "asimdhp", 11: "cpuid", 12: "asimdrdm", 13: "jscvt", 14: "fcma", 15: "lrcpc", 16: "dcpop",
         17: "sha3", 18: "sm3", 19: "sm4", 20: "asimddp", 21: "sha512", 22: "sve", 23: "asimdfhm"}
names2 = {1: "sve2", 13: "i8mm", 14: "bf16"}
print(" ".join([n for b, n in names.items() if h >> b & 1] + [n for b, n in names2.items() if h2 >> b & 1]))
EOF
)
  local part
  case $2 in cortex-a53) part=0xd03 ;; cortex-a57) part=0xd07 ;; cortex-a72) part=0xd08 ;; cortex-a76) part=0xd0b ;;
             neoverse-n1) part=0xd0c ;; *) part=0xd0c ;; esac
  for n in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 50.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' "$n" "$feats" "$part"
  done
}
# run_arm MERGED CPU CMD...: a command in the arm64 root, on that emulated CPU, with its cpuinfo
run_arm() {
  local m=$1 cpu=$2; shift 2
  [ -f "$RUN/cpuinfo-$cpu" ] || cpuinfo_for "$m" "$cpu" > "$RUN/cpuinfo-$cpu"
  mount --bind "$RUN/cpuinfo-$cpu" "$m/proc/cpuinfo"
  local rc=0
  chroot "$m" /usr/bin/env -i PATH="$VENV/bin:/usr/bin:/bin" HOME=/root LANG=C.UTF-8 QEMU_CPU="$cpu" \
    PYTHONDONTWRITEBYTECODE=1 PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ${https_proxy:+https_proxy=$https_proxy} ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} "$@" || rc=$?
  umount "$m/proc/cpuinfo"
  return $rc
}

