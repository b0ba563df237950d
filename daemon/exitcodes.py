"""Process exit codes (sysexits.h), one definition for the daemon, its tools and its tests.

The systemd units name ``EX_CONFIG`` in ``RestartPreventExitStatus=``: a daemon that cannot
start because of its config must not be restarted in a loop.
"""

EX_OK = 0
EX_USAGE = 64  # bad command line
EX_NOINPUT = 66  # input missing or unreadable
EX_SOFTWARE = 70  # internal error (a crashed or hung stage)
EX_CANTCREAT = 73  # output cannot be written
EX_CONFIG = 78  # invalid configuration
