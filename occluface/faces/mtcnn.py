"""MTCNN (Zhang et al. 2016): a cascade of three small CNNs, with facenet-pytorch's trained weights.

facenet-pytorch pins an old torch and imports extra packages at import time, so it is installed
``--no-deps`` and only its weight files (``data/{p,r,o}net.pt``) are used: they load into the
small modules below, which reproduce its layer names. The cascade follows facenet-pytorch's
``detect_face`` (same thresholds, pyramid factor and NMS), written for a single image.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from occluface.errors import OccluFaceError
from occluface.faces.base import Detector, Face, register
from occluface.models.files import package_dir

_LOCK = threading.Lock()


def _nets():
    import torch
    from torch import nn

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
            self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu4(self.dense4(x.flatten(1)))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.flatten(1)))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)

    return PNet, RNet, ONet


@lru_cache(maxsize=None)
def load_nets():
    """The three networks with facenet-pytorch's weights, in eval mode (loaded once)."""
    import torch

    folder = package_dir("facenet_pytorch") / "data"
    nets = []
    for cls, stem in zip(_nets(), ("pnet", "rnet", "onet")):
        path = folder / f"{stem}.pt"
        if not path.is_file():
            raise OccluFaceError(f"{path}: MTCNN weights missing; reinstall facenet-pytorch (pip install --no-deps)")
        net = cls()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        nets.append(net.eval())
    return tuple(nets)


def _square(boxes):
    """Make boxes square around their centre (MTCNN's ``rerec``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes, reg):
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] += reg[:, 0] * w
    boxes[:, 1] += reg[:, 1] * h
    boxes[:, 2] += reg[:, 2] * w
    boxes[:, 3] += reg[:, 3] * h
    return boxes


def _nms_min(boxes, scores, threshold):
    """NMS with overlap measured against the smaller box (MTCNN's last stage)."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = w * h / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def _crops(img, boxes, size):
    """Resize each (integer, clipped) box region of the 1x3xHxW tensor to size x size."""
    import torch
    from torch.nn.functional import interpolate

    _, _, h, w = img.shape
    b = np.trunc(boxes[:, :4]).astype(int)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    out, valid = [], []
    for k in range(len(b)):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            out.append(interpolate(img[:, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]], size=(size, size), mode="area"))
            valid.append(k)
    if not out:
        return None, np.array([], dtype=np.int64)
    return (torch.cat(out) - 127.5) * 0.0078125, np.array(valid)


def detect_mtcnn(image: np.ndarray, min_face: int = 20, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709):
    """Boxes (N x 5 with score) and landmarks (N x 5 x 2) for an HxWx3 uint8 RGB image."""
    import torch
    from torch.nn.functional import interpolate
    from torchvision.ops import nms

    pnet, rnet, onet = load_nets()
    h, w = image.shape[:2]
    empty = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    with torch.inference_mode():
        img = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
        m = 12.0 / min_face
        scales, minl = [], min(h, w) * m
        while minl >= 12:
            scales.append(m * factor ** len(scales))
            minl *= factor

        # Stage 1: a fully convolutional proposal net over an image pyramid.
        found = []
        for s in scales:
            data = (interpolate(img, size=(int(h * s + 1), int(w * s + 1)), mode="area") - 127.5) * 0.0078125
            reg, prob = pnet(data)
            prob = prob[0, 1]
            ys, xs = torch.nonzero(prob >= thresholds[0], as_tuple=True)
            if len(ys) == 0:
                continue
            score = prob[ys, xs]
            bb = torch.stack([xs, ys], 1).float()
            q1 = ((2 * bb + 1) / s).floor()
            q2 = ((2 * bb + 12) / s).floor()
            boxes = torch.cat([q1, q2, score[:, None], reg[0][:, ys, xs].T], 1)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return empty
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)].numpy().astype(np.float64)
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = np.stack(
            [boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], 1
        )
        boxes = _square(boxes)

        # Stage 2: refine and reject proposals on 24x24 crops.
        data, valid = _crops(img, boxes, 24)
        if data is None:
            return empty
        boxes = boxes[valid]
        reg, prob = rnet(data)
        score = prob[:, 1].numpy()
        keep = score > thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg = reg.numpy()[keep]
        if len(boxes) == 0:
            return empty
        pick = nms(torch.from_numpy(boxes[:, :4]), torch.from_numpy(boxes[:, 4]), 0.7).numpy()
        boxes = _square(_regress(boxes[pick], reg[pick]))

        # Stage 3: final boxes, scores and 5 landmarks on 48x48 crops.
        data, valid = _crops(img, boxes, 48)
        if data is None:
            return empty
        boxes = boxes[valid]
        reg, pts, prob = onet(data)
        score = prob[:, 1].numpy()
        keep = score > thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg, pts = reg.numpy()[keep], pts.numpy()[keep]
        if len(boxes) == 0:
            return empty
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        points = np.stack(
            [bw[:, None] * pts[:, :5] + boxes[:, 0:1] - 1, bh[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], axis=2
        )
        boxes = _regress(boxes, reg)
        pick = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return boxes[pick].astype(np.float32), points[pick].astype(np.float32)


class MtcnnDetector(Detector):
    """MTCNN on CPU with torch; fast on small images, decent on partly covered faces."""

    name = "mtcnn"
    min_side = 320
    max_side = 1024

    def __init__(self, min_face: int = 20, thresholds=(0.6, 0.7, 0.7)) -> None:
        super().__init__()
        self.min_face = min_face
        self.thresholds = tuple(thresholds)
        with _LOCK:
            load_nets()

    def _detect(self, image: np.ndarray) -> list[Face]:
        import torch

        # These nets are tiny: one thread is ~5x cheaper in CPU time than torch's default pool
        # (measured 60 vs 460 ms per image on 2 busy cores), so run them single-threaded.
        with _LOCK:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                boxes, points = detect_mtcnn(image, self.min_face, self.thresholds)
            finally:
                torch.set_num_threads(threads)
        return [Face(b[:4], b[4], p, self.name) for b, p in zip(boxes, points)]


@register("mtcnn", "MTCNN with facenet-pytorch's weights (torch; good landmarks)")
def _make_mtcnn() -> Detector:
    return MtcnnDetector()
