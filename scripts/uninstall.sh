#!/usr/bin/env bash
# Remove what scripts/install.sh installed: stop and disable the units (emotiond and every
# emotiond@ instance), remove them and /opt/emotiond. Keeps /etc/emotiond (your config) and
# /var/lib/emotiond (the outbox: events not yet delivered) unless --purge. Idempotent.
#
# Options:
#   --root DIR   uninstall from DIR instead of / (as given to install.sh --root)
#   --purge      also remove /etc/emotiond and the state directory
set -euo pipefail

PREFIX=/opt/emotiond
CONFDIR=/etc/emotiond
UNITDIR=/etc/systemd/system
ROOT=${DESTDIR:+$(realpath -m "$DESTDIR")} PURGE=0  # DESTDIR=DIR is the same as --root DIR

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$(realpath -m "$2"); shift 2 ;;
    --root=*) ROOT=$(realpath -m "${1#*=}"); shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "uninstall.sh: $*"; }
booted() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "uninstall.sh: run as root (or pass --root DIR)" >&2
  exit 1
fi

if booted; then
  # Instances are named after their config files; ask systemd which ones it knows.
  mapfile -t units < <(systemctl list-units --all --plain --no-legend 'emotiond.service' 'emotiond@*.service' | awk '{print $1}')
  if [ "${#units[@]}" -gt 0 ]; then
    systemctl disable --now "${units[@]}" || true
  fi
  systemctl disable emotiond.service 2>/dev/null || true
fi
# Enablement symlinks (also the ones `systemctl --root` made, and instances never started).
find "$ROOT$UNITDIR" -path "*.wants/*" \( -name 'emotiond.service' -o -name 'emotiond@*.service' \) \
  -type l -delete 2>/dev/null || true
rm -f "$ROOT$UNITDIR/emotiond.service" "$ROOT$UNITDIR/emotiond@.service"
rm -rf "$ROOT$UNITDIR/emotiond.service.d" "$ROOT$UNITDIR"/emotiond@*.service.d
rm -rf "$ROOT$PREFIX"
say "removed the units and $PREFIX"

if [ "$PURGE" = 1 ]; then
  # DynamicUser= keeps the state in /var/lib/private/emotiond behind a /var/lib/emotiond link
  # (instances: emotiond-NAME).
  rm -rf "$ROOT$CONFDIR" "$ROOT/var/lib/emotiond" "$ROOT/var/lib/private/emotiond" \
    "$ROOT"/var/lib/emotiond-* "$ROOT"/var/lib/private/emotiond-*
  say "purged $CONFDIR and /var/lib/emotiond"
else
  say "kept $CONFDIR and /var/lib/emotiond (the outbox); --purge removes them"
fi

if booted; then
  systemctl daemon-reload
  systemctl reset-failed 'emotiond.service' 'emotiond@*.service' 2>/dev/null || true
fi
