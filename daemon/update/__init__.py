"""Fleet updates on the device: signed releases fetched with TUF, installed beside the running
one, switched to, watched through a health window, committed or rolled back.

``config`` is the ``updates:`` section, ``client`` fetches and verifies (python-tuf's ngclient),
``store`` keeps the installed releases and which one is good (atomic, power-cut safe),
``health`` judges a new release (a golden face before the switch, frames and faces after).
The runtime drives them (``daemon/runtime/updates.py``); none of them imports the runtime.
"""
