"""The ``pipeline:`` section: how much work one frame may cost."""

from __future__ import annotations

from pydantic import Field

from ..configbase import Section


class PipelineConfig(Section):
    max_faces: int = Field(8, ge=1, le=64, title="faces classified per frame (largest first)")
    opencv_threads: int = Field(
        1, ge=0, title="OpenCV worker threads (1: the pipeline stays on one core, leaving the other to capture; 0 = OpenCV's default)"
    )
