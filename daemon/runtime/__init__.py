"""The runtime: what drives the stages. ``app`` (threads, signals, reload, health, the stats
snapshot), ``systemd`` (sd_notify), ``logs`` (plain or JSON logging). No stage imports it."""
