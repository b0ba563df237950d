#!/usr/bin/env bash
# Install emotiond as a systemd service. Idempotent: run it again to upgrade.
#
#   /opt/emotiond/venv      the daemon's own venv (the plain install: no TensorFlow)
#   /opt/emotiond/models    the models from the repository's models/
#   /etc/emotiond/config.yaml   from the repository's config.yaml, model paths made absolute;
#                           a config changed since the last install is kept, and the new
#                           default is written beside it as config.yaml.dist
#   /etc/systemd/system/emotiond.service, emotiond@.service
#
# Options:
#   --root DIR   install into DIR instead of / (a staging root or a test; also DESTDIR=DIR);
#                systemctl then only enables, offline (systemctl --root), never starts
#   --enable     enable emotiond.service (start at boot)
#   --start      (re)start emotiond.service now (implies --enable)
#   --no-venv    copy files only: no venv, no pip (tests; a venv managed elsewhere)
#   --no-deps    pip install the package without its dependencies (tests, offline images)
#   --python PY  interpreter for the venv (default: python3)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/emotiond
CONFDIR=/etc/emotiond
UNITDIR=/etc/systemd/system
ROOT=${DESTDIR:+$(realpath -m "$DESTDIR")}  # DESTDIR=DIR is the same as --root DIR
ENABLE=0 START=0 VENV=1 PIP_DEPS=1 PYTHON=python3

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$(realpath -m "$2"); shift 2 ;;
    --root=*) ROOT=$(realpath -m "${1#*=}"); shift ;;
    --enable) ENABLE=1; shift ;;
    --start) ENABLE=1 START=1; shift ;;
    --no-venv) VENV=0; shift ;;
    --no-deps) PIP_DEPS=0; shift ;;
    --python) PYTHON=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
booted() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or pass --root DIR to stage into a folder)" >&2
  exit 1
fi
[ -f "$REPO/config.yaml" ] || { echo "install.sh: $REPO/config.yaml not found" >&2; exit 1; }

# --- the venv and the package --------------------------------------------------------------
install -d -m 0755 "$ROOT$PREFIX"
if [ "$VENV" = 1 ]; then
  if [ ! -x "$ROOT$PREFIX/venv/bin/python" ]; then
    say "creating venv $ROOT$PREFIX/venv"
    "$PYTHON" -m venv "$ROOT$PREFIX/venv"
  fi
  pip_args=(--quiet --disable-pip-version-check --upgrade)
  [ "$PIP_DEPS" = 1 ] || pip_args+=(--no-deps)
  say "installing the emotiond package from $REPO"
  # the updates extra (python-tuf): a device turns fleet updates on in its config alone
  "$ROOT$PREFIX/venv/bin/python" -m pip install "${pip_args[@]}" "$REPO[updates]"
fi

# --- models and docs (replaced on every install: they belong to the package version) --------
rm -rf "$ROOT$PREFIX/models"
install -d -m 0755 "$ROOT$PREFIX/models"
if compgen -G "$REPO/models/*" >/dev/null; then
  cp -R "$REPO"/models/. "$ROOT$PREFIX/models/"
fi
[ ! -f "$REPO/README.md" ] || install -m 0644 "$REPO/README.md" "$ROOT$PREFIX/README.md"
install -m 0644 "$REPO/systemd/README.md" "$ROOT$PREFIX/README.systemd.md"

# --- config: never overwrite a changed one --------------------------------------------------
# The daemon resolves relative paths against the config's folder (/etc/emotiond), so the
# installed config names the installed models by absolute path.
install -d -m 0755 "$ROOT$CONFDIR"
new=$(mktemp)
trap 'rm -f "$new"' EXIT
sed -E "s#^([[:space:]]*(-[[:space:]]+)?model:[[:space:]]*[\"']?)(\./)?models/#\1$PREFIX/models/#" \
  "$REPO/config.yaml" >"$new"
conf="$ROOT$CONFDIR/config.yaml"
last="$ROOT$PREFIX/config.yaml.installed"  # what this installer wrote last time
if [ -e "$conf" ] && cmp -s "$conf" "$new"; then
  rm -f "$ROOT$CONFDIR/config.yaml.dist"  # up to date
elif [ ! -e "$conf" ] || { [ -f "$last" ] && cmp -s "$conf" "$last"; }; then
  install -m 0644 "$new" "$conf"  # new, or unchanged since the last install: upgrade it
  rm -f "$ROOT$CONFDIR/config.yaml.dist"
  say "wrote $CONFDIR/config.yaml"
else
  install -m 0644 "$new" "$ROOT$CONFDIR/config.yaml.dist"
  say "kept your changed $CONFDIR/config.yaml; the new default is $CONFDIR/config.yaml.dist"
fi
install -m 0644 "$new" "$last"

# --- units -----------------------------------------------------------------------------------
install -d -m 0755 "$ROOT$UNITDIR"
for unit in emotiond.service emotiond@.service; do
  install -m 0644 "$REPO/systemd/$unit" "$ROOT$UNITDIR/$unit"
done
if ! getent group video >/dev/null && [ -z "$ROOT" ]; then
  say "warning: no group 'video' on this system; create it or edit SupplementaryGroups= in the units"
fi

if booted; then
  systemctl daemon-reload
  [ "$ENABLE" = 1 ] && systemctl enable emotiond.service
  [ "$START" = 1 ] && systemctl restart emotiond.service
  say "done; status: systemctl status emotiond"
else
  [ "$ENABLE" = 1 ] && systemctl --quiet ${ROOT:+--root="$ROOT"} enable emotiond.service
  [ "$START" = 1 ] && say "systemd is not running here: not started"
  say "done (systemd not running here: no daemon-reload)"
fi
