r"""WindowData: R-CNN's training windows, cut out of images, warped to a square, in batches
of background and foreground windows. Read ahead by a thread.

Caffe's `window_data_layer.cpp` (built only with OpenCV there; Pillow here, through
`minicaffe.io.image`), on the prefetching base `base_data.py`.

Device twin: none. A data layer only copies a prepared batch into its tops, so
forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from minicaffe import common, protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.io.image import decode_image, resize_bilinear
from minicaffe.layer import register_layer
from minicaffe.layers.base_data import PrefetchingDataLayer
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)


def c_round(x: np.float32) -> int:
    """C's round(): halves go away from zero (Python's round() goes to even)."""
    return int(np.sign(x) * np.floor(abs(x) + np.float32(0.5)))


@register_layer
class WindowDataLayer(PrefetchingDataLayer):
    r"""Samples `batch_size` windows per forward from an R-CNN window file.

    The window file (`source`) repeats, per image: `# i` (the image's index, 0, 1, ...),
    its path (appended to `root_folder`), its channels, height and width, the number of
    windows, then one line per window: `label overlap x1 y1 x2 y2` (inclusive pixel
    corners; overlap is the window's IoU with a ground-truth box). A window with
    overlap $\ge$ `fg_threshold` is foreground (its label must be positive); one with
    overlap $<$ `bg_threshold` is background and gets label 0; the others are unused.

    Each batch holds $B - \lfloor B f \rfloor$ background windows then $\lfloor B f
    \rfloor$ foreground ones ($B$ = `batch_size`, $f$ = `fg_fraction`), each drawn
    uniformly with replacement. A window is cut out of its image (decoded in colour, BGR)
    and warped to `crop_size` x `crop_size` (from `transform_param`) by bilinear
    resizing. With `context_pad` $p$ or `crop_mode: "square"` the box is first grown
    about its centre by $s / (s - 2p)$ ($s$ = crop_size; square mode also makes it
    square), so that after warping $p$ pixels of context surround the object; where the
    grown box leaves the image, that part of the output stays 0. With `mirror` the warped
    window is flipped left-right with probability 1/2 (the padding too). Each pixel
    becomes $(x - \mu)\cdot$ `window_data_param.scale` (note: this layer's own scale, as
    in Caffe, not transform_param's), with $\mu$ the centre crop_size square of
    `transform_param.mean_file` (offset by the padding) or `mean_value`.

    Tops: data (B, 3, crop_size, crop_size) and label (B,). Batch k's draws come from
    a generator seeded for batch k, so a resumed run repeats an uninterrupted one.
    No backward.

        layer {
          name: "data" type: "WindowData" top: "data" top: "label"
          transform_param { mirror: true crop_size: 227 mean_file: "imagenet_mean.binaryproto" }
          window_data_param { source: "window_file_train.txt" batch_size: 128
                              fg_threshold: 0.5 bg_threshold: 0.5 fg_fraction: 0.25
                              context_pad: 16 crop_mode: "warp" }
        }
    """

    type = "WindowData"
    exact_num_top_blobs = 2

    def layer_setup(self, bottom, top):
        p = self.layer_param.window_data_param
        t = self.layer_param.transform_param
        self.owner = f"{self.type} layer {self.name!r}"
        self.source = p.source
        if p.batch_size <= 0:
            raise MinicaffeError(f"{self.owner}: window_data_param.batch_size must be positive, "
                                 f"got {p.batch_size}")
        if t.crop_size <= 0:
            raise MinicaffeError(f"{self.owner}: transform_param.crop_size must be positive: it "
                                 f"is the side of the warped windows")
        if p.crop_mode not in ("warp", "square"):
            raise MinicaffeError(f"{self.owner}: crop_mode is 'warp' or 'square', got {p.crop_mode!r}")
        if 2 * p.context_pad >= t.crop_size:
            raise MinicaffeError(f"{self.owner}: context_pad {p.context_pad} leaves no room in a "
                                 f"crop_size {t.crop_size} window")
        self.batch_size, self.crop = int(p.batch_size), int(t.crop_size)
        log.info("%s: foreground overlap threshold %s, background threshold %s, foreground "
                 "fraction %s", self.owner, p.fg_threshold, p.bg_threshold, p.fg_fraction)
        self.images, self.fg, self.bg = self.read_window_file()
        self.num_fg = int(np.float32(self.batch_size) * np.float32(p.fg_fraction))
        for kind, windows, wanted in (("foreground", self.fg, self.num_fg),
                                      ("background", self.bg, self.batch_size - self.num_fg)):
            if wanted and not windows:
                raise MinicaffeError(f"{self.owner}: each batch needs {wanted} {kind} window(s) "
                                     f"but {p.source!r} has none (check fg_threshold/bg_threshold)")
        self.cache = None
        if p.cache_images:
            self.cache = [self.read_file(path) for path, _ in self.images]
        self.channels = 3  # Caffe decodes every image in colour
        for path, (c, _, _) in self.images:
            if c != 3:
                raise MinicaffeError(f"{self.owner}: {p.source!r} gives {path!r} {c} channel(s); "
                                     f"WindowData reads every image in colour (3 channels)")
        self.scale = np.float32(p.scale)
        self.mean = self.mean_values = None
        if t.HasField("mean_file") and len(t.mean_value):
            raise MinicaffeError(f"{self.owner}: cannot specify mean_file and mean_value at the "
                                 f"same time; give one")
        if t.HasField("mean_file"):
            blob = Blob(name=t.mean_file)
            blob.from_proto(protoio.read_binary(t.mean_file, caffe_pb2.BlobProto()))
            self.mean = blob.cpu_data().reshape(blob.channels, blob.height, blob.width).copy()
            if self.mean.shape[0] != 3 or min(self.mean.shape[1:]) < self.crop:
                raise MinicaffeError(f"{self.owner}: mean_file {t.mean_file!r} is "
                                     f"{'x'.join(map(str, self.mean.shape))} (C x H x W); it needs 3 "
                                     f"channels and at least crop_size {self.crop} pixels a side")
        if len(t.mean_value):
            if len(t.mean_value) not in (1, 3):
                raise MinicaffeError(f"{self.owner}: specify either 1 mean_value or as many as "
                                     f"channels (3), got {len(t.mean_value)}")
            self.mean_values = np.resize(np.asarray(t.mean_value, np.float32), 3)
        self.seed = int(common.rng().integers(2**63))
        self.top_shapes = [(self.batch_size, self.channels, self.crop, self.crop), (self.batch_size,)]
        log.info("%s: output data size: %s", self.owner, ",".join(map(str, self.top_shapes[0])))
        self.prefetch = int(self.layer_param.data_param.prefetch)
        self.set_batch_index(0)

    def reshape(self, bottom, top):
        for blob, shape in zip(top, self.top_shapes):
            blob.reshape(shape)

    # ---- the window file
    def read_window_file(self):
        """[(path, (C, H, W))], foreground and background windows as
        (image index, label, overlap, x1, y1, x2, y2) tuples."""
        p = self.layer_param.window_data_param
        try:
            tokens = Path(p.source).read_text().split()
        except OSError as err:
            raise MinicaffeError(f"{self.owner}: failed to open window file {p.source!r}: "
                                 f"{err.strerror or err}") from None
        if not tokens:
            raise MinicaffeError(f"{self.owner}: window file {p.source!r} is empty")
        images, fg, bg, hist = [], [], [], Counter({0: 0})
        at = 0

        def take(kind, what):
            nonlocal at
            if at >= len(tokens):
                raise MinicaffeError(f"{self.owner}: window file {p.source!r} ends inside image "
                                     f"{len(images)}'s entry (expected {what})")
            try:
                value = kind(tokens[at])
            except ValueError:
                raise MinicaffeError(f"{self.owner}: window file {p.source!r}: expected {what}, "
                                     f"got {tokens[at]!r} (image {len(images)})") from None
            at += 1
            return value

        while at < len(tokens):
            if take(str, "'#'") != "#":
                raise MinicaffeError(f"{self.owner}: window file {p.source!r}: expected '#' to "
                                     f"start image {len(images)}, got {tokens[at - 1]!r}")
            index = take(int, "the image index")
            if index != len(images):
                raise MinicaffeError(f"{self.owner}: window file {p.source!r}: image {len(images)} "
                                     f"is numbered {index}; images are numbered 0, 1, ... in order")
            path = p.root_folder + take(str, "the image path")
            size = tuple(take(int, what) for what in ("channels", "height", "width"))
            images.append((path, size))
            for _ in range(take(int, "the number of windows")):
                label = take(int, "a window's label")
                overlap = np.float32(take(float, "a window's overlap"))  # float, as in Caffe
                box = tuple(take(int, f"a window's {c}") for c in ("x1", "y1", "x2", "y2"))
                if overlap >= np.float32(p.fg_threshold):
                    if label <= 0:
                        raise MinicaffeError(f"{self.owner}: window file {p.source!r}: a foreground "
                                             f"window of image {index} has label {label}; "
                                             f"foreground labels are positive (0 is background)")
                    fg.append((index, label, float(overlap), *box))
                    hist[label] += 1
                elif overlap < np.float32(p.bg_threshold):
                    bg.append((index, 0, 0.0, *box))
                    hist[0] += 1
        log.info("%s: number of images: %d", self.owner, len(images))
        for label in sorted(hist):
            log.info("%s: class %d has %d samples", self.owner, label, hist[label])
        return images, fg, bg

    def read_file(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            raise MinicaffeError(f"could not open or find file {path!r}: {err.strerror or err}") from None

    def image(self, index: int) -> np.ndarray:
        path = self.images[index][0]
        data = self.cache[index] if self.cache is not None else self.read_file(path)
        return decode_image(data, True, name=f"could not load {path!r}")

    # ---- one batch
    def warp(self, pixels: np.ndarray, box, mirror: bool) -> np.ndarray:
        """The window `box` of `pixels` (3, H, W), warped into a zeroed 3 x s x s float32
        array (before the mean and scale), Caffe's arithmetic step by step."""
        p = self.layer_param.window_data_param
        s, f32 = self.crop, np.float32
        _, rows, cols = pixels.shape
        x1, y1, x2, y2 = box
        out_w = out_h = s
        pad_w = pad_h = 0
        if p.context_pad > 0 or p.crop_mode == "square":
            context_scale = f32(s) / f32(s - 2 * p.context_pad)
            half_h, half_w = f32(y2 - y1 + 1) / f32(2), f32(x2 - x1 + 1) / f32(2)
            cx, cy = f32(x1) + half_w, f32(y1) + half_h
            if p.crop_mode == "square":
                half_h = half_w = max(half_h, half_w)
            x1, x2 = c_round(cx - half_w * context_scale), c_round(cx + half_w * context_scale)
            y1, y2 = c_round(cy - half_h * context_scale), c_round(cy + half_h * context_scale)
            unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
            pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
            pad_x2, pad_y2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
            x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
            scale_x, scale_y = f32(s) / f32(unclipped_w), f32(s) / f32(unclipped_h)
            out_w = c_round(f32(x2 - x1 + 1) * scale_x)
            out_h = c_round(f32(y2 - y1 + 1) * scale_y)
            pad_x1, pad_x2 = c_round(f32(pad_x1) * scale_x), c_round(f32(pad_x2) * scale_x)
            pad_h = c_round(f32(pad_y1) * scale_y)
            pad_w = pad_x2 if mirror else pad_x1  # the padding is mirrored too
            out_h, out_w = min(out_h, s - pad_h), min(out_w, s - pad_w)  # rounding may overflow
        if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows) or out_h <= 0 or out_w <= 0:
            raise MinicaffeError(f"window ({box[0]}, {box[1]}, {box[2]}, {box[3]}) does not fit "
                                 f"its {rows}x{cols} image")
        window = resize_bilinear(pixels[:, y1:y2 + 1, x1:x2 + 1], out_h, out_w)
        if mirror:
            window = window[:, :, ::-1]
        out = np.zeros((self.channels, s, s), np.float32)
        region = (slice(None), slice(pad_h, pad_h + out_h), slice(pad_w, pad_w + out_w))
        x = window.astype(np.float32)
        if self.mean is not None:
            off = (self.mean.shape[2] - s) // 2
            x -= self.mean[:, off + pad_h:off + pad_h + out_h, off + pad_w:off + pad_w + out_w]
        elif self.mean_values is not None:
            x -= self.mean_values[:, None, None]
        out[region] = x * self.scale
        return out

    def load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(batch_index)])
        mirror = self.layer_param.transform_param.mirror
        data = np.empty(self.top_shapes[0], np.float32)
        labels = np.empty(self.batch_size, np.float32)
        picks = [(self.bg, i) for i in range(self.batch_size - self.num_fg)] + \
                [(self.fg, i) for i in range(self.num_fg)]  # background first, as in Caffe
        for item, (windows, _) in enumerate(picks):
            index, label, _, *box = windows[int(rng.integers(len(windows)))]
            flip = bool(mirror and rng.integers(2))
            try:
                data[item] = self.warp(self.image(index), box, flip)
            except MinicaffeError as err:
                raise MinicaffeError(f"image {index} ({self.images[index][0]!r}): {err}") from None
            labels[item] = label
        return data, labels
