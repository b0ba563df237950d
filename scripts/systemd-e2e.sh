#!/usr/bin/env bash
# The systemd units under a real systemd: boot a minimal Debian bookworm with systemd-nspawn,
# install emotiond from its .deb there, run it on a clip with Mosquitto, and check what only a
# real service manager can show. One line per check ("ok"/"FAIL"); exit 1 when any failed,
# 77 when this machine cannot run it (not root, no systemd-nspawn/debootstrap/overlayfs).
#
#   sudo scripts/systemd-e2e.sh
#   sudo scripts/systemd-e2e.sh --arch arm64   # the arm64 .deb in an arm64 container, under emulation
#
# --arch arm64: the root is debootstrapped for arm64 (cached in /var/cache/emotiond-e2e-arm64),
# the package is scripts/build-deb.sh --arch arm64, and systemd boots as PID 1 of the container
# through qemu-user-static (binfmt_misc with the F flag). Emulation is ~20x slower, so every wait
# and the watchdog's timings are stretched ($EMOTIOND_E2E_SLOW, default 8); the container's
# services run on QEMU_CPU=neoverse-n1 (qemu's default CPU makes LiteRT compute wrong results)
# with an arm64 /proc/cpuinfo bind-mounted (LiteRT reads it at load; the host's is x86).
#
# The root file system (debootstrap --variant=minbase with systemd, python3, mosquitto; about
# 75 s and 300 MB) is built once and cached in $EMOTIOND_E2E_CACHE (default
# /var/cache/emotiond-e2e); each run boots an overlay of it, so the cache stays pristine.
# The container has its own network (--private-network): its Mosquitto is not the host's.
#
# Environment:
#   EMOTIOND_E2E_CACHE   where the root is cached (default /var/cache/emotiond-e2e)
#   EMOTIOND_E2E_DEB     install this .deb instead of building one (scripts/build-deb.sh)
#   EMOTIOND_E2E_CLIP    the clip the daemon runs on (default ../shared/data/videos/talking_head_640x360.mp4)
#   EMOTIOND_E2E_MIRROR  the Debian mirror (default: the one apt is configured with here)
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${EMOTIOND_E2E_ARCH:-}
[ "${1:-}" = "--arch" ] && ARCH=${2:-}
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
[ -z "$ARCH" ] && ARCH=$HOST_ARCH
FOREIGN=
[ "$ARCH" != "$HOST_ARCH" ] && FOREIGN=$ARCH
if [ -n "$FOREIGN" ]; then
  CACHE=${EMOTIOND_E2E_CACHE:-/var/cache/emotiond-e2e-$ARCH}
  T=${EMOTIOND_E2E_SLOW:-8}
else
  CACHE=${EMOTIOND_E2E_CACHE:-/var/cache/emotiond-e2e}
  T=${EMOTIOND_E2E_SLOW:-1}
fi
QEMU_CPU_E2E=${EMOTIOND_ARM64_CPU:-neoverse-n1}
CLIP=${EMOTIOND_E2E_CLIP:-$REPO/../shared/data/videos/talking_head_640x360.mp4}
SUITE=bookworm
# procps: /bin/kill for ExecReload= (the .deb depends on it; the container has no network to fetch it)
PACKAGES=systemd,systemd-sysv,dbus,procps,python3,python3-venv,mosquitto,mosquitto-clients
STAMP="$SUITE minbase $PACKAGES v1${FOREIGN:+ $FOREIGN}"  # change it to rebuild every cached root
WATCHDOG_SEC=$((3 * T)) HANG_S=$((1 * T))

skip() { echo "systemd-e2e: skipped: $*"; exit 77; }
die() { echo "systemd-e2e: error: $*" >&2; exit 2; }
log() { echo "systemd-e2e: $*" >&2; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn, overlayfs)"
for tool in systemd-nspawn debootstrap nsenter; do
  command -v "$tool" >/dev/null || skip "no $tool (apt-get install systemd-container debootstrap)"
done
[ -f "$CLIP" ] || skip "clip not found: $CLIP"
if [ -n "$FOREIGN" ]; then
  [ "$FOREIGN" = arm64 ] || skip "--arch $FOREIGN: only arm64 runs here under emulation"
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
    skip "binfmt_misc cannot be mounted here"
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
    skip "no binfmt_misc handler for aarch64 with the F flag (apt-get install qemu-user-static)"
fi

# --- the cached root ---------------------------------------------------------------------------
mirror() {
  [ -n "${EMOTIOND_E2E_MIRROR:-}" ] && { echo "$EMOTIOND_E2E_MIRROR"; return; }
  local uri
  # One-line sources ("deb URI bookworm main") first, then deb822 stanzas ("URIs: URI").
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
  [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }')
  echo "${uri:-http://deb.debian.org/debian}"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another systemd-e2e run holds $CACHE/.lock"
BASE=$CACHE/root
if [ "$(cat "$BASE/.emotiond-e2e" 2>/dev/null)" != "$STAMP" ]; then
  m=$(mirror)
  log "building the $SUITE root in $BASE from $m (once; about 75 s)"
  rm -rf "$BASE" "$BASE.tmp"
  debootstrap ${FOREIGN:+--arch=$FOREIGN} --variant=minbase --include="$PACKAGES" "$SUITE" "$BASE.tmp" "$m" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed, see $CACHE/debootstrap.log"
  echo "$STAMP" >"$BASE.tmp/.emotiond-e2e"
  mv "$BASE.tmp" "$BASE"
fi

# --- the package ----------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/emotiond-e2e.XXXXXX)
DEB=${EMOTIOND_E2E_DEB:-}
if [ -z "$DEB" ]; then
  log "building the .deb (scripts/build-deb.sh)"
  DEB=$("$REPO/scripts/build-deb.sh" ${FOREIGN:+--arch $FOREIGN} --out "$WORK/deb" 2>"$WORK/build-deb.log" | tail -1) ||
    { cat "$WORK/build-deb.log" >&2; die "scripts/build-deb.sh failed"; }
fi
[ -f "$DEB" ] || die "no .deb at $DEB"

# --- boot ----------------------------------------------------------------------------------------------
NSPAWN= PID1= MERGED=$WORK/merged
cleanup() {
  if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
    kill -TERM "$NSPAWN" 2>/dev/null  # nspawn --boot turns this into an orderly shutdown
    for _ in $(seq 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN" 2>/dev/null
    wait "$NSPAWN" 2>/dev/null
  fi
  mountpoint -q "$MERGED" && umount "$MERGED"
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK"/{upper,ovl,merged}
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/ovl" "$MERGED" ||
  skip "cannot mount overlayfs here"
install -d -m 0755 "$MERGED/srv/e2e"
cp "$DEB" "$MERGED/srv/e2e/"
install -m 0644 "$CLIP" "$MERGED/srv/e2e/clip.mp4"
install -m 0644 "$REPO/scripts/e2e/mjpeg_stall.py" "$MERGED/srv/e2e/"
DEB_IN=/srv/e2e/$(basename "$DEB")
NSPAWN_EMU=()
if [ -n "$FOREIGN" ]; then
  # every service of the container on a CPU LiteRT computes right on, and an arm64 cpuinfo
  install -d "$MERGED/etc/systemd/system.conf.d"
  printf '[Manager]\nDefaultEnvironment=QEMU_CPU=%s\n' "$QEMU_CPU_E2E" >"$MERGED/etc/systemd/system.conf.d/qemu-cpu.conf"
  for n in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' $n
  done >"$MERGED/srv/e2e/cpuinfo"
  # bound over /proc/cpuinfo from inside, early in the boot (nspawn cannot bind under its /proc)
  cat >"$MERGED/etc/systemd/system/e2e-cpuinfo.service" <<'UNIT'
[Unit]
Description=arm64 /proc/cpuinfo for LiteRT under emulation (e2e only)
DefaultDependencies=no
Before=sysinit.target
[Service]
Type=oneshot
ExecStart=/bin/mount --bind /srv/e2e/cpuinfo /proc/cpuinfo
[Install]
WantedBy=sysinit.target
UNIT
  install -d "$MERGED/etc/systemd/system/sysinit.target.wants"
  ln -sf ../e2e-cpuinfo.service "$MERGED/etc/systemd/system/sysinit.target.wants/e2e-cpuinfo.service"
  # qemu-user 7.2 cannot emulate unshare(CLONE_NEWUSER): PrivateUsers= fails the unit at step
  # USER ("Failed to set up user namespacing: Invalid argument", measured). Under emulation only,
  # a vendor drop-in (which the e2e's own drop-ins do not touch) turns it off; every other
  # sandboxing setting stays.
  for unit in emotiond.service emotiond@.service; do
    install -d "$MERGED/usr/lib/systemd/system/$unit.d"
    # and the service's own /proc (ProtectProc=, ProcSubset=) shows the host's x86 cpuinfo, on which
    # LiteRT crashes (SIGSEGV, measured): the arm64 one is bound over it in the service too
    printf '[Service]\nPrivateUsers=no\nBindReadOnlyPaths=/srv/e2e/cpuinfo:/proc/cpuinfo\n' \
      >"$MERGED/usr/lib/systemd/system/$unit.d/qemu-user.conf"
  done
  NSPAWN_EMU=(--setenv=QEMU_CPU="$QEMU_CPU_E2E")
fi

systemd-nspawn -D "$MERGED" --boot --register=no --keep-unit --private-network "${NSPAWN_EMU[@]}" \
  --machine="emotiond-e2e-$$" >"$WORK/console.log" 2>&1 </dev/null &
NSPAWN=$!
for _ in $(seq $((100 * T))); do
  PID1=$(ps -o pid= --ppid "$NSPAWN" 2>/dev/null | head -1 | tr -d ' ')
  # under emulation PID 1's comm is qemu's; its command line is systemd's
  [ -n "$PID1" ] && { [ "$(cat "/proc/$PID1/comm" 2>/dev/null)" = systemd ] ||
    tr '\0' ' ' <"/proc/$PID1/cmdline" 2>/dev/null | grep -q 'systemd'; } && break
  PID1=; sleep 0.1
done
[ -n "$PID1" ] || { cat "$WORK/console.log" >&2; skip "systemd-nspawn could not boot the container here"; }
C() { nsenter -t "$PID1" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 ${FOREIGN:+QEMU_CPU=$QEMU_CPU_E2E} "$@"; }
# PID 1 is up before its control socket: until then systemctl cannot answer at all.
for _ in $(seq $((300 * T))); do
  state=$(C systemctl is-system-running 2>/dev/null)
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
log "container booted (PID 1 = $PID1 on the host): $state"

# --- checks --------------------------------------------------------------------------------------------
FAILED=0 N=0
check() {  # check NAME OK(0/1) DETAIL
  N=$((N + 1))
  if [ "$2" = 0 ]; then printf 'ok    %-34s %s\n' "$1" "$3"; else printf 'FAIL  %-34s %s\n' "$1" "$3"; FAILED=$((FAILED + 1)); fi
}
prop() { C systemctl show -p "$2" --value "$1"; }  # prop UNIT PROPERTY
wait_for() {  # wait_for SECONDS COMMAND...: true once COMMAND succeeds
  local end=$((SECONDS + $1 * T)); shift  # stretched under emulation
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
journal_has() {  # journal_has UNIT SINCE_CURSOR_FILE PATTERN
  C journalctl -q -u "$1" --no-pager -o cat ${2:+--after-cursor="$(cat "$2")"} | grep -q -- "$3"
}
mark() { C journalctl -q -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p' >"$WORK/$1"; }
CLIP_SOURCE="{uri: /srv/e2e/clip.mp4, loop: true, realtime: true}" HEALTH_DEFAULT="{status_interval_s: 1.0}"
write_config() {  # write_config FILE DEVICE_ID [YAML lines]; $SRC and $HEALTH replace those sections
  local file=$1 device=$2; shift 2
  {
    echo "device_id: $device"
    echo "source: ${SRC:-$CLIP_SOURCE}"
    echo "rules: [{type: emotion_summary, period_s: 1.0}]"
    echo "mqtt: {host: 127.0.0.1, reconnect_max_s: 2}"
    echo "health: ${HEALTH:-$HEALTH_DEFAULT}"
    printf '%s\n' "$@"
  } | C tee "$file" >/dev/null
}
sub_one() {  # sub_one TOPIC: the first message on TOPIC within 10 s
  C mosquitto_sub -h 127.0.0.1 -t "$1" -C 1 -W $((10 * T)) 2>/dev/null
}

# 1. install from the .deb; postinst enables and starts the service
out=$(C env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$DEB_IN" 2>&1)
rc=$?
wait_for 60 C systemctl is-active --quiet emotiond.service
check "apt install ./emotiond_*.deb" $((rc != 0)) "rc $rc; $(prop emotiond.service UnitFileState), $(prop emotiond.service ActiveState) on the default config"
[ $rc = 0 ] || { echo "$out" | tail -20 >&2; echo "systemd-e2e: $FAILED of $N checks failed"; exit 1; }
CONF=/etc/emotiond/config.yaml

# 1b. the models are inside the package, and the packaged config (models/... relative to
# /etc/emotiond, where there are none) runs on them
listing=$(C /opt/emotiond/venv/bin/emotiond models 2>&1)
where=$(echo "$listing" | sed -n 's/^models in //p')
listed() { for m in "$@"; do echo "$listing" | grep -q "^$m " || return 1; done; }
ok=1
[[ $where == /opt/emotiond/venv/lib/python3*/site-packages/daemon/models ]] &&
  listed emotion_wild.tflite emotion_wild_fp16.tflite emotion_ferplus.tflite eye_state.tflite face_landmark.tflite iris_landmark.tflite &&
  C journalctl -q -u emotiond.service --no-pager -o cat | grep -qE 'model emotion_wild(_fp16)?\.tflite \((int8|float16)\)' && ok=0
check "emotiond models: packaged" $ok "$where: $(echo "$listing" | awk 'NR > 2 { printf "%s%s", sep, $1; sep = ", " }')"

# 2. active only after READY=1
write_config $CONF e2e
C systemctl stop emotiond.service
C systemctl start --no-block emotiond.service
seen=
for _ in $(seq $((300 * T))); do
  s=$(prop emotiond.service ActiveState)
  case "$s" in activating) seen=activating ;; active|failed) break ;; esac
  sleep 0.05
done
started=$(prop emotiond.service ExecMainStartTimestampMonotonic)
active_at=$(prop emotiond.service ActiveEnterTimestampMonotonic)
gap=$(( (active_at - started) / 1000 ))
ok=1; [ "$s" = active ] && [ "$seen" = activating ] && [ "$(prop emotiond.service Type)" = notify ] && [ $gap -gt 100 ] && ok=0
check "active only after READY=1" $ok "Type=notify; activating for $gap ms after exec (model load) then $s"

# 3. STATUS= in systemctl status
wait_for 30 sh -c "nsenter -t $PID1 -a systemctl show -p StatusText --value emotiond.service | grep -q 'frames [1-9]'"
status=$(prop emotiond.service StatusText)
C systemctl status --no-pager emotiond.service 2>/dev/null | grep -q "Status: \"$status" && [[ $status == frames\ [1-9]* ]]
check "systemctl status shows STATUS=" $? "\"$status\""

# 4. exposure of the running unit
sec=$(C systemd-analyze security emotiond.service --no-pager 2>/dev/null | grep -o 'Overall exposure level for emotiond.service: .*')
score=$(echo "$sec" | sed -n 's/.*: \([0-9.]*\).*/\1/p')
awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.5) }'
check "systemd-analyze security <= 2.5" $? "running emotiond.service: ${sec#*: }"

# 5. reload: a valid config is applied, an invalid one is refused and the running one kept
pid=$(prop emotiond.service MainPID)
mark reload
write_config $CONF e2e-reloaded
C systemctl reload emotiond.service
wait_for 20 journal_has emotiond.service "$WORK/reload" "reload: new config applied"
applied=$?
online=$(sub_one emotiond/e2e-reloaded/status)
ok=1; [ $applied = 0 ] && [ "$online" = online ] && [ "$(prop emotiond.service MainPID)" = "$pid" ] && ok=0
check "reload applies a valid config" $ok "same PID $pid; emotiond/e2e-reloaded/status: ${online:-nothing}"
mark reload
write_config $CONF e2e-reloaded "bogus_key: 1"
C systemctl reload emotiond.service
wait_for 20 journal_has emotiond.service "$WORK/reload" "reload rejected, keeping the running config"
rejected=$?
sleep $T
ok=1; [ $rejected = 0 ] && [ "$(prop emotiond.service ActiveState)" = active ] && [ "$(prop emotiond.service MainPID)" = "$pid" ] && ok=0
check "reload keeps it on an invalid config" $ok "same PID $pid, active; journal: reload rejected ($(C journalctl -q -u emotiond --no-pager -o cat --after-cursor="$(cat "$WORK/reload")" | grep -m1 -o 'bogus_key: unknown key'))"
write_config $CONF e2e

# 6. the outbox keeps events across a restart with the broker down, then delivers them
C systemctl restart emotiond.service
# A persistent session (clean session off) for the subscriber, so nothing delivered while it
# reconnects is lost; Debian's mosquitto.conf has persistence on, which keeps it across the
# broker's restart.
C mosquitto_sub -h 127.0.0.1 -c -i e2e-sub -q 1 -t 'emotiond/e2e/events' -W $T >/dev/null 2>&1
C systemctl stop mosquitto.service
DB=/var/lib/private/emotiond/outbox.sqlite
ids() { C python3 -c "
import json, sqlite3, sys
db = sqlite3.connect('file:$DB?mode=ro', uri=True)
for (p,) in db.execute(\"select payload from outbox where topic like '%/events'\"):
    print(json.loads(p)['id'])" 2>/dev/null | sort -u; }
wait_for 30 sh -c "[ \$(nsenter -t $PID1 -a python3 -c \"import sqlite3; print(sqlite3.connect('file:$DB?mode=ro', uri=True).execute('select count(*) from outbox').fetchone()[0])\" 2>/dev/null || echo 0) -ge 3 ]"
before=$(ids)
C systemctl restart emotiond.service
after=$(ids)
kept=$(comm -12 <(echo "$before") <(echo "$after") | grep -c .)
C systemctl start mosquitto.service
C timeout $((30 * T)) mosquitto_sub -h 127.0.0.1 -c -i e2e-sub -q 1 -t 'emotiond/e2e/events' -W $((20 * T)) >"$WORK/events.jsonl" 2>/dev/null &
wait_for 25 sh -c "for id in $(echo $before); do grep -q \$id '$WORK/events.jsonl' || exit 1; done"
delivered=$(for id in $before; do grep -q "$id" "$WORK/events.jsonl" && echo "$id"; done | grep -c .)
n=$(echo "$before" | grep -c .)
ok=1; [ "$n" -gt 0 ] && [ "$kept" = "$n" ] && [ "$delivered" = "$n" ] && ok=0
check "outbox across restart, broker down" $ok "$n events queued in $DB, $kept kept across restart, $delivered delivered when the broker returned"

# 7. a hung capture: the watchdog kills the unit (Result=watchdog) and systemd restarts it
C mkdir -p /etc/systemd/system/emotiond.service.d
printf '[Service]\nWatchdogSec=%s\n' $WATCHDOG_SEC | C tee /etc/systemd/system/emotiond.service.d/e2e-watchdog.conf >/dev/null
C systemctl daemon-reload
C rm -f /srv/e2e/stalled
C systemd-run -q --unit=e2e-mjpeg /opt/emotiond/venv/bin/python /srv/e2e/mjpeg_stall.py /srv/e2e/clip.mp4 8090 50 /srv/e2e/stalled
wait_for 20 C python3 -c "import socket; socket.create_connection(('127.0.0.1', 8090), 1)"
# stall_timeout_s bounds how long a network read may block: 600 s makes this read a hang.
SRC="{uri: 'http://127.0.0.1:8090/stream.mjpg', stall_timeout_s: 600}" HEALTH="{hang_timeout_s: $HANG_S, status_interval_s: 1.0}" \
  write_config $CONF e2e
mark watchdog
C systemctl restart emotiond.service
restarts0=$(prop emotiond.service NRestarts)
pid=$(prop emotiond.service MainPID)
wait_for 60 journal_has emotiond.service "$WORK/watchdog" "Failed with result 'watchdog'"
killed=$?
wait_for 30 sh -c "[ \$(nsenter -t $PID1 -a systemctl show -p NRestarts --value emotiond.service) -gt $restarts0 ]"
restarted=$?
line=$(C journalctl -q -u emotiond.service --no-pager -o short-unix --after-cursor="$(cat "$WORK/watchdog")" | grep -m1 'Watchdog timeout')
t_kill=${line%% *}
t_stall=$(C head -1 /srv/e2e/stalled 2>/dev/null)  # the first connection's stall
secs=$(awk -v a="${t_kill:-0}" -v b="${t_stall:-0}" 'BEGIN { printf "%.1f", a - b }')
limit=$((HANG_S + WATCHDOG_SEC + 5 * T))
ok=1; [ $killed = 0 ] && [ $restarted = 0 ] && [ -n "$t_stall" ] && awk -v s="$secs" -v l=$limit 'BEGIN { exit !(s > 0 && s <= l) }' && ok=0
check "watchdog kills a hung capture" $ok "stream stalled, killed ${secs} s later (limit $limit s), Result=watchdog, NRestarts $restarts0 -> $(prop emotiond.service NRestarts)"
C systemctl stop emotiond.service e2e-mjpeg.service
C rm -rf /etc/systemd/system/emotiond.service.d
C systemctl daemon-reload
C systemctl reset-failed emotiond.service 2>/dev/null
write_config $CONF e2e

# 8. an invalid config exits 78 and is not restarted
write_config /etc/emotiond/bad.yaml bad "classifier: {threads: 0}"
C systemctl start emotiond@bad.service 2>/dev/null
sleep $((7 * T))  # longer than RestartSec=5s (and the start, stretched): a restart would have happened by now
st=$(prop emotiond@bad.service ExecMainStatus) res=$(prop emotiond@bad.service Result)
nr=$(prop emotiond@bad.service NRestarts) as=$(prop emotiond@bad.service ActiveState)
ok=1; [ "$st" = 78 ] && [ "$res" = exit-code ] && [ "$nr" = 0 ] && [ "$as" = failed ] && ok=0
check "invalid config: exit 78, no restart" $ok "status $st, Result=$res, NRestarts=$nr, $as; $(C journalctl -q -u emotiond@bad --no-pager -o cat | grep -m1 -o 'classifier.threads.*')"
C systemctl reset-failed emotiond@bad.service 2>/dev/null

# 9. a second instance, emotiond@cam1, beside emotiond.service, with its own state directory
C systemctl start emotiond.service
write_config /etc/emotiond/cam1.yaml cam1
C systemctl start emotiond@cam1.service
s1=$(sub_one emotiond/cam1/status) s0=$(sub_one emotiond/e2e/status)
ok=1
[ "$(prop emotiond@cam1.service ActiveState)" = active ] && [ "$(prop emotiond.service ActiveState)" = active ] &&
  [ "$s1" = online ] && [ "$s0" = online ] && C test -d /var/lib/private/emotiond-cam1 && ok=0
check "emotiond@cam1 runs a second instance" $ok "beside emotiond.service ($(prop emotiond.service ActiveState)): cam1 $(prop emotiond@cam1.service ActiveState), status $s1, outbox in /var/lib/emotiond-cam1"

# 10. a changed conffile survives an upgrade whose default config changed too: dpkg keeps the
# user's file (--force-confold, as unattended upgrades run) and puts the new one beside it.
# The upgrade is this .deb repacked as version +1 with one more comment line in config.yaml.
sum0=$(C sha256sum $CONF)
NEXT=$WORK/next
dpkg-deb -R "$DEB" "$NEXT"
sed -i 's/^Version: \(.*\)$/Version: \1+e2e1/' "$NEXT/DEBIAN/control"
echo "# a new default in the next version" >>"$NEXT/etc/emotiond/config.yaml"
dpkg-deb --root-owner-group -Znone -b "$NEXT" "$MERGED/srv/e2e/next.deb" >/dev/null && rm -rf "$NEXT"
out=$(C env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /srv/e2e/next.deb 2>&1)
rc=$?
C rm -f /srv/e2e/next.deb
wait_for 60 C systemctl is-active --quiet emotiond.service
ok=1
[ $rc = 0 ] && [ "$(C sha256sum $CONF)" = "$sum0" ] && C grep -q 'new default' $CONF.dpkg-dist &&
  [[ $(C dpkg-query -W -f '${Version}' emotiond) == *+e2e1 ]] && ok=0
check "changed conffile kept on upgrade" $ok "rc $rc; $(C dpkg-query -W -f '${Version}' emotiond) installed, /etc/emotiond/config.yaml unchanged (device_id $(C sed -n 's/^device_id: //p' $CONF)), new default in config.yaml.dpkg-dist; service $(prop emotiond.service ActiveState) after postinst restart"

# 11. apt remove: units, processes, /opt/emotiond gone; the conffile stays (Debian policy)
C env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q emotiond >"$WORK/remove.log" 2>&1
rc=$?
left=$( { C systemctl list-units --all --plain --no-legend 'emotiond*' | awk '$2 != "not-found" || $3 != "inactive"' | grep .; \
          C systemctl list-unit-files --no-legend 'emotiond*' | grep .; \
          C find /etc/systemd/system -name 'emotiond*' | grep .; \
          C sh -c 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " <$f; echo; done' | grep 'bin/emotiond run'; \
          C test -e /opt/emotiond && echo /opt/emotiond; } 2>/dev/null)
ok=1; [ $rc = 0 ] && [ -z "$left" ] && C test -f $CONF && ok=0
check "apt remove leaves it clean" $ok "${left:-no units, no processes, no /opt/emotiond}; $CONF kept"

# 12. apt purge: config and state gone too
C env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q emotiond >"$WORK/purge.log" 2>&1
rc=$?
left=$(for p in /etc/emotiond /var/lib/emotiond /var/lib/private/emotiond /var/lib/emotiond-cam1 /var/lib/private/emotiond-cam1 /opt/emotiond; do C test -e $p && echo $p; done
       C dpkg-query -W -f '${Status}' emotiond 2>/dev/null)
ok=1; [ $rc = 0 ] && [ -z "$left" ] && ok=0
check "apt purge leaves it clean" $ok "${left:-no /etc/emotiond, no state, no dpkg record}"

echo "systemd-e2e: $((N - FAILED)) of $N checks passed ($ARCH$([ -n "$FOREIGN" ] && echo ", under emulation"))"
[ $FAILED = 0 ]
