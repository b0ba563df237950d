"""The publish stage: where observations and alerts leave the device.

``base`` (the ``Publisher`` protocol and ``FanOut`` over several), ``outputs`` (the ``outputs:``
registry: type → config model and implementation), one file per output (``mqtt`` with its
``mqtt_config``, ``outbox``, ``commands`` and ``ha_discovery``; ``jsonl``: JSON lines to a file
or stdout), and ``payloads`` (the JSON every output writes, fixed by daemon/schemas/).
"""
