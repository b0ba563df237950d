"""Fleet ingest: every device's events and status, from the clustered broker into PostgreSQL.

A separate package (``pip install emotiond[fleet]``, the ``emotiond-fleet-ingest`` command),
never imported by the daemon. See ``fleet/ingest.py`` and ``fleet/schema.sql``.
"""
