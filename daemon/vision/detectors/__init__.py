"""Face detector plugins, one file each (Frigate style): a config model whose ``type`` literal
picks the plugin in YAML, and one class whose ``detect`` returns full-frame boxes.

Adding a detector is adding its file here and one entry in ``PLUGINS`` (the config union is
made from it). Plugin files import OpenCV inside the code that runs, so that validating a
config (which imports every plugin's config model) never loads it.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from .base import BaseDetectorConfig, Detector, DetectorError
from .haar import HaarConfig, HaarDetector
from .yunet import YunetConfig, YunetDetector

PLUGINS: dict[type[BaseDetectorConfig], type] = {HaarConfig: HaarDetector, YunetConfig: YunetDetector}

DetectorConfig = Annotated[Union[tuple(PLUGINS)], Field(discriminator="type")]

__all__ = ["DetectorConfig", "Detector", "DetectorError", "HaarConfig", "YunetConfig", "make_detector"]


def make_detector(cfg: BaseDetectorConfig) -> Detector:
    """The detector for a config section; raises DetectorError naming a missing file."""
    return PLUGINS[type(cfg)](cfg)
