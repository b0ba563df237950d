"""The capture stage: frame sources, each read by its own thread into a one-frame slot.

``config`` (the ``source:`` section), ``base`` (what a source kind is), one file per kind
(``camera``: V4L2 or a camera index; ``stream``: RTSP/HTTP through FFmpeg; ``folder``: images;
``file``: a video file), ``registry`` (URI → kind, first match wins), ``normalize`` (every frame
leaves as 8-bit BGR, or is skipped and counted) and ``source`` (the capture thread: latest-frame
slot, reconnect with back-off, stall detection). Adding a kind (libcamera,
GStreamer) is adding its file and one line in ``registry``.
"""
