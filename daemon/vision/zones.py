"""Named polygon zones of the camera's view (Frigate style), in fractions of the frame.

A zone is where something counts: the driver's seat (the primary face), a shop's entrance or
counter (visitor figures per zone). Points are fractions of the frame's width and height
(0..1), not pixels, so a zone stays right when the camera's resolution changes and can be
checked when the config loads, before any frame has arrived: a point outside the frame, a
polygon with no area or whose edges cross is a config error with its key path (exit 78).

Pure Python: validating a config must not import OpenCV, and a point test on a handful of
faces costs microseconds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from ..configbase import Section
from ..types import Box

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1, p2, q1, q2) -> bool:
    """True when two segments properly cross or touch (collinear overlaps included)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a, b, c) -> bool:  # c on segment ab (given collinear)
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return ((d1 == 0 and on(q1, q2, p1)) or (d2 == 0 and on(q1, q2, p2))
            or (d3 == 0 and on(p1, p2, q1)) or (d4 == 0 and on(p1, p2, q2)))


def polygon_area(points: list[tuple[float, float]]) -> float:
    """Signed area (shoelace): positive when the points run counter-clockwise."""
    n = len(points)
    return 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))


class ZoneConfig(Section):
    polygon: list[Point] = Field(
        ..., min_length=3,
        title="corners [[x, y], ...] as fractions of the frame (0..1, x right, y down), in drawing order")

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        n = len(pts)
        for i in range(n):
            for j in range(i + 1, n):
                if j == i + 1 or (i == 0 and j == n - 1):
                    continue  # neighbouring edges share a corner
                if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                    raise ValueError(f"edges {i}-{(i + 1) % n} and {j}-{(j + 1) % n} cross: the polygon intersects "
                                     "itself; list the corners in drawing order")
        if abs(polygon_area(pts)) < 1e-6:
            raise ValueError("the polygon has no area (all corners on one line?)")
        return pts

    def contains(self, x: float, y: float) -> bool:
        """Is the point (fractions of the frame) inside? Ray casting; points on an edge count."""
        pts, inside = self.polygon, False
        n = len(pts)
        for i in range(n):
            (x1, y1), (x2, y2) = pts[i], pts[(i + 1) % n]
            if (y1 > y) != (y2 > y):
                xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if x == xc:
                    return True
                if x < xc:
                    inside = not inside
        return inside


def rect_zone(rect: tuple[float, float, float, float]) -> ZoneConfig:
    """A rectangle [x0, y0, x1, y1] (fractions) as a zone."""
    x0, y0, x1, y1 = rect
    return ZoneConfig(polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def centre_of(box: Box, frame_hw: tuple[int, int]) -> tuple[float, float]:
    """The centre of a pixel box as fractions of the frame."""
    h, w = frame_hw
    x, y, bw, bh = box
    return (x + bw / 2.0) / max(w, 1), (y + bh / 2.0) / max(h, 1)


def zones_holding(zones: dict[str, ZoneConfig], box: Box, frame_hw: tuple[int, int]) -> list[str]:
    """Names of the zones whose polygon holds the box's centre."""
    cx, cy = centre_of(box, frame_hw)
    return [name for name, z in zones.items() if z.contains(cx, cy)]
