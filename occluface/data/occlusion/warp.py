"""Piecewise-affine warping of an RGBA picture from template points to face points.

Triangles are fixed on the template (so the mesh topology never flips with pose); each target
triangle is rasterised with OpenCV and every pixel inside it is mapped back to the template with
that triangle's affine transform, then sampled with ``cv2.remap`` (bilinear).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T x 3 indices) of the template points."""
    return Delaunay(np.asarray(points, np.float64)).simplices


def warp_rgba(
    src: np.ndarray,
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    out_shape: tuple[int, int],
    triangles: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Warp float RGBA ``src`` (h x w x 4, premultiplied or not) so ``src_pts`` land on ``dst_pts``.

    Returns the warped patch (covering the target points' bounding box, clipped to ``out_shape``)
    and its top-left corner (x0, y0) in the output image.
    """
    src_pts = np.asarray(src_pts, np.float64)
    dst_pts = np.asarray(dst_pts, np.float64)
    tris = triangulate(src_pts) if triangles is None else triangles
    H, W = out_shape
    x0 = int(max(np.floor(dst_pts[:, 0].min()), 0))
    y0 = int(max(np.floor(dst_pts[:, 1].min()), 0))
    x1 = int(min(np.ceil(dst_pts[:, 0].max()) + 1, W))
    y1 = int(min(np.ceil(dst_pts[:, 1].max()) + 1, H))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, src.shape[2]), np.float32), (0, 0)
    h, w = y1 - y0, x1 - x0
    index = np.full((h, w), -1, np.int32)
    affines = np.zeros((len(tris), 2, 3), np.float64)
    local = dst_pts - [x0, y0]
    # Larger triangles first so small ones (nose, mouth detail) win where folds overlap.
    e1, e2 = local[tris[:, 1]] - local[tris[:, 0]], local[tris[:, 2]] - local[tris[:, 0]]
    areas = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    for i in np.argsort(areas)[::-1]:
        t = tris[i]
        affines[i] = cv2.getAffineTransform(local[t].astype(np.float32), src_pts[t].astype(np.float32))
        cv2.fillConvexPoly(index, np.round(local[t] * 16).astype(np.int32), int(i), lineType=cv2.LINE_8, shift=4)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    valid = index >= 0
    a = affines[np.clip(index, 0, None)]
    map_x = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
    map_y = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
    map_x[~valid] = -10.0
    map_y[~valid] = -10.0
    out = cv2.remap(
        src.astype(np.float32),
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if out.ndim == 2:
        out = out[..., None]
    return out, (x0, y0)
