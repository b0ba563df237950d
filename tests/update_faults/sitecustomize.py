"""Power cuts at chosen steps of a fleet update, for tests/test_updates_power.py.

A daemon started with this folder on PYTHONPATH and ``EMOTIOND_TEST_KILL_AT`` set SIGKILLs
itself at that step (the test side's fault injection; the daemon has no such hook):

* ``download``: the model half written in the download folder;
* ``install``: the release renamed into ``releases/`` but not switched to;
* ``switch``: ``state.json`` says ``trying`` and the new pipeline is not built yet.

(A cut during the health window needs no help: the test SIGKILLs the daemon while its status
says ``trying``.)
"""

import os
import signal

STEP = os.environ.get("EMOTIOND_TEST_KILL_AT")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if STEP:
    from pathlib import Path

    from daemon.update import client, store

    if STEP == "download":
        fetch = client.Client.fetch

        def half_then_die(self, name, dest):
            path = fetch(self, name, dest)
            if name.endswith(".tflite"):
                data = Path(path).read_bytes()
                Path(path).write_bytes(data[: len(data) // 2])
                _die()
            return path

        client.Client.fetch = half_then_die
    elif STEP == "install":
        install = store.Store.install

        def installed_then_die(self, version, downloaded):
            install(self, version, downloaded)
            _die()

        store.Store.install = installed_then_die
    elif STEP == "switch":
        begin = store.Store.begin

        def begun_then_die(self, version):
            begin(self, version)
            _die()

        store.Store.begin = begun_then_die
