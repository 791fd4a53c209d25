"""Augmentation that covers what differs between scanners and sites, applied to a batch of grey
frames and their lesion masks together (tf ops, inside the tf.data pipeline):

geometry   random crop / zoom-out with black borders (frame size and letterbox), aspect jitter, mirror
intensity  gain, contrast, gamma (time-gain and dynamic-range settings)
texture    multiplicative speckle, blur, lower resolution (probe frequency, scan conversion)
overlays   burned-in text, caliper crosses, dotted measurement lines, depth ticks
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

_TEXTS = ("L", "R", "RT", "LT", "5.2 cm", "D 1.34cm", "GE", "12L", "BREAST", "ANTI RAD", "1:00 3CMFN",
          "Gn 48", "DR 66", "+ 0.87 cm", "x 1.21 cm", "FR 23", "MI 1.1", "TIS 0.3", "A", "B", "2", "4")


def overlay_bank(side: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """n random overlay masks (side x side, float32 in [0, 1]) of marks scanners burn into frames."""
    rng = np.random.default_rng(seed)
    bank = np.zeros((n, side, side), dtype=np.float32)
    for k in range(n):
        img = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(1, 4)):  # calipers: small crosses
            x, y, r = rng.integers(10, side - 10), rng.integers(10, side - 10), int(rng.integers(2, 5))
            draw.line([(x - r, y), (x + r, y)], fill=255)
            draw.line([(x, y - r), (x, y + r)], fill=255)
        if rng.random() < 0.5:  # dotted measurement line
            x0, y0, x1, y1 = (int(v) for v in rng.integers(20, side - 20, 4))
            for t in np.linspace(0, 1, 14):
                draw.point((x0 + t * (x1 - x0), y0 + t * (y1 - y0)), fill=255)
        for _ in range(rng.integers(0, 4)):  # text near the edges
            x = int(rng.choice([rng.integers(2, 30), rng.integers(side - 70, side - 30)]))
            y = int(rng.integers(2, side - 14))
            draw.text((x, y), str(rng.choice(_TEXTS)), fill=255)
        if rng.random() < 0.4:  # depth scale ticks on one side
            x = int(rng.choice([4, side - 6]))
            for y in range(10, side - 10, int(rng.integers(12, 24))):
                draw.line([(x, y), (x + 3, y)], fill=255)
        bank[k] = np.asarray(img, dtype=np.float32) / 255.0
    return bank


def _boxes(batch: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """Crop boxes [y1, x1, y2, x2] (normalised): side 0.65-1.2 of the frame (> 1 zooms out with
    black borders), aspect 0.8-1.25, random centre, mirrored half of the time (x1 > x2)."""
    side = rng.uniform([batch], 0.65, 1.2)
    aspect = tf.exp(rng.uniform([batch], np.log(0.8), np.log(1.25)))
    h, w = side * tf.sqrt(aspect), side / tf.sqrt(aspect)
    cy = 0.5 + rng.uniform([batch], -1.0, 1.0) * tf.abs(1.0 - h) / 2
    cx = 0.5 + rng.uniform([batch], -1.0, 1.0) * tf.abs(1.0 - w) / 2
    y1, y2, x1, x2 = cy - h / 2, cy + h / 2, cx - w / 2, cx + w / 2
    mirror = rng.uniform([batch]) < 0.5
    x1, x2 = tf.where(mirror, x2, x1), tf.where(mirror, x1, x2)
    return tf.stack([y1, x1, y2, x2], axis=1)


def _per_image(rng, batch, lo, hi):
    return tf.reshape(rng.uniform([batch], lo, hi), [batch, 1, 1, 1])


def augment_batch(x: tf.Tensor, mask: tf.Tensor, rng: tf.random.Generator, bank: tf.Tensor):
    """x, mask: (B, S, S) uint8 -> x (B, S, S, 3) float32 in [0, 255], mask (B, S, S, 1) in [0, 1]."""
    batch, side = tf.shape(x)[0], x.shape[1]
    img = tf.cast(x, tf.float32)[..., None] / 255.0
    msk = tf.cast(mask, tf.float32)[..., None] / 255.0
    boxes, index = _boxes(batch, rng), tf.range(batch)
    img = tf.image.crop_and_resize(img, boxes, index, (side, side), extrapolation_value=0.0)
    msk = tf.image.crop_and_resize(msk, boxes, index, (side, side), extrapolation_value=0.0)
    inside = tf.cast(img > 0.0, tf.float32)  # keep black borders black
    gamma = tf.exp(_per_image(rng, batch, -0.4, 0.4))
    img = tf.pow(tf.maximum(img, 1e-6), gamma) * _per_image(rng, batch, 0.7, 1.3) + _per_image(rng, batch, -0.08, 0.08)
    speckle = _per_image(rng, batch, 0.0, 0.25)
    img = img * (1.0 + speckle * rng.normal(tf.shape(img)))
    if rng.uniform([]) < 0.3:  # blur
        k = tf.constant([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]])[:, :, None, None] / 16.0
        img = tf.nn.depthwise_conv2d(img, k, [1, 1, 1, 1], "SAME")
    if rng.uniform([]) < 0.3:  # lower resolution, scaled back up
        small = tf.cast(tf.cast(side, tf.float32) * rng.uniform([], 0.35, 0.8), tf.int32)
        img = tf.image.resize(tf.image.resize(img, (small, small), antialias=True), (side, side))
    img = tf.clip_by_value(img, 0.0, 1.0) * inside
    pick = rng.uniform([batch], 0, tf.cast(tf.shape(bank)[0], tf.float32))
    marks = tf.gather(bank, tf.cast(pick, tf.int32))[..., None]
    use = tf.cast(_per_image(rng, batch, 0.0, 1.0) < 0.5, tf.float32) * _per_image(rng, batch, 0.6, 1.0)
    img = tf.maximum(img, marks * use)
    return tf.repeat(img * 255.0, 3, axis=-1), msk
