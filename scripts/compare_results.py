#!/usr/bin/env python3
"""Compare two ``emotiond analyze --results`` CSV files row by row, against stated tolerances.

Used by ``scripts/arm64-check.sh`` (an arm64 run under emulation against the same run on the
host). Rows are matched by (frame, track); the faces found must be the same rows; then, over the
rows both have a face in: the box corners, every class probability, eye closure, head pose and
gaze within the tolerances, and the share of rows whose label differs at most ``--labels``.
Prints one line per quantity (the worst difference found) and exits 1 on any failure.
Standard library only: it runs on the host and in the arm64 root alike.

    python scripts/compare_results.py host.csv arm64.csv --box-px 1 --prob 0.02 --labels 0
"""

from __future__ import annotations

import argparse
import csv
import sys

GROUPS = {  # quantity -> (columns, the option holding its tolerance)
    "box": (("x", "y", "w", "h"), "box_px"),
    "probabilities": (("p_angry", "p_disgust", "p_fear", "p_happy", "p_neutral", "p_sad", "p_surprise"), "prob"),
    "eye closure": (("eye_closed",), "eye"),
    "head pose": (("head_pose.yaw", "head_pose.pitch", "head_pose.roll"), "pose_deg"),
    "gaze": (("gaze.yaw", "gaze.pitch"), "gaze_deg"),
    "lid openness": (("gaze.openness",), "openness"),
}


def read(path: str) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="") as fh:
        return {(r["file"].rsplit("/", 1)[-1], r["frame"], r["track"]): r for r in csv.DictReader(fh)}


def _num(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


PROBS = GROUPS["probabilities"][0]


def top_two_margin(row: dict[str, str]) -> float:
    p = sorted((float(row[c]) for c in PROBS if row.get(c) not in (None, "")), reverse=True)
    return p[0] - p[1] if len(p) > 1 else 1.0


def compare(a: dict, b: dict, tol: dict[str, float], max_label_share: float,
            label_margin: float = 0.0) -> list[tuple[bool, str]]:
    """(ok, line) per check."""
    out: list[tuple[bool, str]] = []
    faces_a = {k for k, r in a.items() if r.get("label") not in (None, "") or r.get("x")}
    faces_b = {k for k, r in b.items() if r.get("label") not in (None, "") or r.get("x")}
    only = sorted(faces_a ^ faces_b)
    out.append((not only, f"faces: {len(faces_a)} rows against {len(faces_b)}"
                + (f"; only in one: {len(only)} (first {only[:3]})" if only else ", the same rows")))
    both = sorted(faces_a & faces_b)
    for name, (cols, key) in GROUPS.items():
        worst, where, unread = 0.0, None, 0
        for k in both:
            for c in cols:
                va, vb = _num(a[k].get(c)), _num(b[k].get(c))
                if va is None and vb is None:
                    continue
                if va is None or vb is None:
                    unread += 1  # read on one side only: a reading at a threshold's edge
                    continue
                d = abs(va - vb)
                if d > worst:
                    worst, where = d, (k, c)
        ok = worst <= tol[key] and unread <= max(1, len(both) // 100)
        out.append((ok, f"{name}: max |difference| {worst:.4g} (tolerance {tol[key]:g})"
                    + (f" at frame {where[0][1]} {where[1]}" if where else "")
                    + (f"; read on one side only in {unread} cells" if unread else "")))
    labels = [k for k in both if a[k].get("label") != b[k].get("label")]
    # a label may flip where the reference's two best classes are closer than label_margin
    close = [k for k in labels if top_two_margin(a[k]) <= label_margin]
    counted = [k for k in labels if k not in close]
    share = len(counted) / max(1, len(both))
    out.append((share <= max_label_share, f"labels: {len(labels)} of {len(both)} rows differ"
                + (f" ({len(close)} where the top two were within {label_margin:g})" if close else "")
                + f"; {share:.1%} otherwise, at most {max_label_share:.1%}"
                + (f"; frames {[k[1] for k in labels[:5]]}, top-two margins "
                   f"{[round(top_two_margin(a[k]), 3) for k in labels[:5]]}" if labels else "")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference")
    p.add_argument("other")
    p.add_argument("--box-px", type=float, default=1.0)
    p.add_argument("--prob", type=float, default=0.02)
    p.add_argument("--eye", type=float, default=0.02)
    p.add_argument("--pose-deg", type=float, default=0.5)
    p.add_argument("--gaze-deg", type=float, default=1.0)
    p.add_argument("--openness", type=float, default=0.01)
    p.add_argument("--labels", type=float, default=0.0, help="largest share of rows whose label may differ")
    p.add_argument("--label-margin", type=float, default=0.0,
                   help="a label may differ where the reference's top two probabilities are this close")
    p.add_argument("--prefix", default="", help="printed before every line")
    args = p.parse_args(argv)
    tol = {k: getattr(args, k) for k in ("box_px", "prob", "eye", "pose_deg", "gaze_deg", "openness")}
    results = compare(read(args.reference), read(args.other), tol, args.labels, args.label_margin)
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {args.prefix}{line}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
