"""scripts/systemd-e2e.sh from the test suite: the units under a real systemd (PID 1 of a
systemd-nspawn container), installed from the .deb that scripts/build-deb.sh makes.

Slow by nature (about 4 minutes; the first run also builds and caches the Debian root); skipped
with the script's own reason where it cannot run (not root, no systemd-nspawn or debootstrap,
no clip). Every check's line is printed, so a failure in CI shows which one.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import REPO, TALKING_HEAD, shared_file

SCRIPT = REPO / "scripts" / "systemd-e2e.sh"
SKIPPED = 77


@pytest.mark.slow
def test_units_under_a_real_systemd():
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap, systemd-nspawn and overlayfs")
    for tool in ("systemd-nspawn", "debootstrap", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup.sh installs systemd-container and debootstrap)")
    clip = shared_file(TALKING_HEAD)
    res = subprocess.run(["bash", str(SCRIPT)], env=dict(os.environ, EMOTIOND_E2E_CLIP=str(clip)),
                         capture_output=True, text=True, timeout=1500)
    print(res.stdout)
    if res.returncode == SKIPPED:
        pytest.skip(res.stdout.strip().splitlines()[-1])
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert res.returncode == 0, "\n".join(failed) or res.stdout[-3000:] + res.stderr[-3000:]
    assert "checks passed" in res.stdout and not failed
