"""The web stage: the optional local HTTP endpoint (``/healthz``, ``/metrics``, live preview).

``http`` (server, routes, preview slot), ``metrics`` (Prometheus collector) and ``config`` (the
``http:`` section). It gets a ``WebView`` (callables and shared counters), never the daemon.
"""
