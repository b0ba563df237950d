"""The ``pipeline:`` section: how much work one frame may cost."""

from __future__ import annotations

from pydantic import Field

from ..configbase import Section


class PipelineConfig(Section):
    max_faces: int = Field(8, ge=1, le=64, title="most faces published per frame (largest first)")
    classify_per_frame: int = Field(
        0, ge=0, title="most faces classified in one frame, even new ones (0 = what classifier.max_rate_hz spreads "
                       "over frames, plus every new face on its first frame)")
    min_face_px: int = Field(0, ge=0, title="faces narrower than this (frame pixels) are tracked and counted but not "
                                            "classified (counted in stats as small)")
    min_sharpness: float = Field(
        0.0, ge=0.0, title="faces whose sharpness (variance of the Laplacian at 48x48 px) is below this are not classified "
                           "(counted in stats as blurry; 0 = off)")
    opencv_threads: int = Field(
        1, ge=0, title="OpenCV worker threads (1: the pipeline stays on one core, leaving the other to capture; 0 = OpenCV's default)"
    )
