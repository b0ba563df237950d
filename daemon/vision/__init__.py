"""The vision stage: one frame in, one ``Observation`` out.

``pipeline`` (detect every Nth frame → track → classify emotions → face signals), ``detectors/``
(face detector plug-ins and their registry), ``tracking`` (stable ids, smoothing, the primary
face), ``signals/`` (per-face measurements such as eye closure: one object, one method each),
``annotate`` (drawing what was seen) and ``config`` (the ``pipeline:`` section).
"""
