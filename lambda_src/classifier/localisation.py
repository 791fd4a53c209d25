"""The model's lesion heatmap -> a box in image pixels and a small grid for the response."""

from __future__ import annotations

import dataclasses

import numpy as np

from .preprocessing import Placement

#: Cells at or above this fraction of the peak belong to the localised region.
REGION_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class Localisation:
    box: list[int] | None  # [x, y, width, height] in image pixels (after EXIF orientation)
    peak: float  # highest heatmap value (the lesion-likelihood of the most lesion-like cell)
    heatmap: list[list[float]]  # g x g over the model input (letterboxed), values in [0, 1]
    # Where the image sits in the model input, to draw the heatmap over the image (the page does):
    # {"size", "left", "top", "scale_x", "scale_y"}: input pixel = image pixel * scale + (left, top).
    placement: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _peak_region(heat: np.ndarray) -> np.ndarray:
    """Boolean mask of the 4-connected cells >= REGION_FRACTION * peak around the peak cell."""
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    keep = heat >= REGION_FRACTION * heat[peak]
    region = np.zeros_like(keep)
    stack = [peak]
    while stack:
        r, c = stack.pop()
        if region[r, c] or not keep[r, c]:
            continue
        region[r, c] = True
        stack.extend((r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                     if 0 <= r + dr < heat.shape[0] and 0 <= c + dc < heat.shape[1])
    return region


def localise(heat: np.ndarray, where: Placement) -> Localisation:
    """Box around the connected region of the heatmap's peak, mapped back to image pixels."""
    grid = heat.shape[0]
    cell = where.size / grid
    box = None
    if heat.max() > 0:
        rows, cols = np.nonzero(_peak_region(heat))
        x0, y0 = where.to_image(cols.min() * cell, rows.min() * cell)
        x1, y1 = where.to_image((cols.max() + 1) * cell, (rows.max() + 1) * cell)
        if x1 > x0 and y1 > y0:
            box = [int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))]
    return Localisation(box=box, peak=round(float(heat.max()), 4),
                        heatmap=[[round(float(v), 3) for v in row] for row in heat],
                        placement={"size": where.size, "left": where.left, "top": where.top,
                                   "scale_x": round(where.scale_x, 6), "scale_y": round(where.scale_y, 6)})
