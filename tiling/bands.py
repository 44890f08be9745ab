"""Band selection and value scaling: any imagery → 3 channels on the 0..255 scale of 8-bit RGB.

Models are trained on 8-bit RGB chips. ``--scale auto`` (the default) maps other data onto that
scale without changing its contrast: 8-bit data passes through; integer data wider than 8 bits is
divided by its bit depth: the file's own (the ``NBITS`` tag GDAL reports for packed and unpacked
12-bit GeoTIFFs), else the smallest of 10/12/14/16 bits that holds the 99.99th percentile of the
scene's overview (so 12-bit-in-16-bit imagery without the tag is read as 12-bit); float data ≤ 1
is treated as reflectance (× 255), larger floats are stretched between the 0.1th and 99.9th
percentiles. Pixels outside the scene and nodata take the scene's median colour (``fill``).
Explicit specs: ``none``, ``bits:N``, ``range:LO,HI``, ``percentile:P1,P2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from tiling.scene import SceneError


@dataclass(frozen=True)
class Scaling:
    """Per-band linear map to 0..255: ``out = clip((raw − offset) · gain, 0, 255)``.

    ``fill``: the 0..255 value per band that pixels outside the scene or nodata take (the scene's
    median colour: open water, not a dark edge a model takes for a head); empty means 0.
    """

    offset: tuple[float, ...]
    gain: tuple[float, ...]
    fill: tuple[float, ...] = ()

    def apply(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(bands, rows, cols) raw values → float32 on the 0..255 scale, into ``out`` if given."""
        if out is None:
            out = np.empty(raw.shape, np.float32)
        if all(o == 0 for o in self.offset) and all(g == 1 for g in self.gain):
            np.copyto(out, raw, casting="unsafe")
            return out
        off = np.asarray(self.offset, np.float32)[:, None, None]
        gain = np.asarray(self.gain, np.float32)[:, None, None]
        np.subtract(raw, off, out=out, casting="unsafe")
        np.multiply(out, gain, out=out)
        return np.clip(out, 0, 255, out=out)


def select_bands(
    ds: rasterio.DatasetReader, uri: str, spec: tuple[int, ...] | None
) -> tuple[int, ...]:
    """1-based band indexes for R, G, B: ``spec`` if given, else by colour interpretation, else 1,2,3."""
    if spec:
        if len(spec) != 3 or any(b < 1 or b > ds.count for b in spec):
            raise SceneError(f"{uri!r}: --bands {spec} must name 3 of bands 1..{ds.count}")
        return tuple(spec)
    if ds.count < 3:
        raise SceneError(f"{uri!r}: {ds.count} band(s), expected 3 or more (RGB); pass --bands")
    interp = list(ds.colorinterp)
    want = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in want):
        return tuple(interp.index(c) + 1 for c in want)
    return (1, 2, 3)


def parse_scale(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"bits:12"`` → ("bits", (12.0,)); validates the kind and argument count."""
    kind, _, args = spec.partition(":")
    values = tuple(float(v) for v in args.split(",")) if args else ()
    arity = {"auto": 0, "none": 0, "bits": 1, "range": 2, "percentile": 2}
    if kind not in arity or len(values) != arity[kind]:
        raise ValueError(
            f"--scale {spec!r}: expected auto, none, bits:N, range:LO,HI or percentile:P1,P2"
        )
    return kind, values


def resolve_scaling(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], spec: str, uri: str | None = None
) -> Scaling:
    """The :class:`Scaling` for ``bands`` of ``ds`` under ``spec`` (statistics from an overview).

    ``uri``: the scene as the user named it, for errors (default: GDAL's name of ``ds``)."""
    sample = _sample(ds, bands, uri or ds.name)
    offset, gain = _linear(ds, bands, spec, sample)
    median = np.nan_to_num(_nanmedian(sample), nan=0.0)
    fill = tuple(
        float(np.clip((m - o) * g, 0, 255)) for m, o, g in zip(median, offset, gain, strict=True)
    )
    return Scaling(offset, gain, fill)


def _linear(ds, bands: tuple[int, ...], spec: str, sample: np.ndarray):
    """(offset, gain) per band under ``spec``; ``sample``: the scene's decimated valid pixels."""
    kind, args = parse_scale(spec)
    n = len(bands)
    dtype = np.dtype(ds.dtypes[bands[0] - 1])
    if kind == "auto":
        if dtype == np.uint8:
            kind = "none"
        elif dtype.kind in "ui":
            kind, args = "bits", (metadata_bits(ds, bands) or _bit_depth(sample),)
        else:
            hi = float(np.nanmax(sample))
            kind, args = ("range", (0.0, 1.0)) if hi <= 1.0 else ("percentile", (0.1, 99.9))
    if kind == "none":
        return (0.0,) * n, (1.0,) * n
    if kind == "bits":
        return (0.0,) * n, (255.0 / (2 ** args[0] - 1),) * n
    if kind == "range":
        lo, hi = args
        return (lo,) * n, (255.0 / max(hi - lo, 1e-12),) * n
    lo = np.nanpercentile(sample, args[0], axis=(1, 2))
    hi = np.nanpercentile(sample, args[1], axis=(1, 2))
    gain = tuple(
        float(255.0 / max(top - bottom, 1e-12)) for bottom, top in zip(lo, hi, strict=True)
    )
    return tuple(map(float, lo)), gain


def metadata_bits(ds: rasterio.DatasetReader, bands: tuple[int, ...]) -> int | None:
    """The bit depth the file declares (GDAL's ``NBITS`` in the IMAGE_STRUCTURE domain), if any.

    GeoTIFFs written with ``NBITS=12`` (packed or not) carry it per band; the widest band wins.
    """
    declared = [ds.tags(b, ns="IMAGE_STRUCTURE").get("NBITS") for b in bands]
    declared.append(ds.tags(ns="IMAGE_STRUCTURE").get("NBITS"))
    bits = [int(v) for v in declared if v and v.isdigit() and 0 < int(v) <= 32]
    return max(bits) if bits else None


def _nanmedian(sample: np.ndarray) -> np.ndarray:
    """Per-band median of the valid (non-NaN) values; NaN for a band with none."""
    flat = sample.reshape(sample.shape[0], -1)
    return np.array(
        [np.median(b[np.isfinite(b)]) if np.isfinite(b).any() else np.nan for b in flat]
    )


def _sample(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], uri: str, side: int = 1024
) -> np.ndarray:
    """A decimated read of the whole scene (GDAL serves it from overviews when present), valid pixels only."""
    f = max(1, max(ds.width, ds.height) // side)
    shape = (len(bands), max(1, ds.height // f), max(1, ds.width // f))
    try:
        data = ds.read(bands, out_shape=shape, masked=True).astype(np.float64)
    except RasterioError as e:
        # the first read of a scene: a truncated or corrupt file fails here
        raise SceneError(f"{uri!r}: read failed ({str(e).splitlines()[0]})") from e
    return data.filled(np.nan)


def _bit_depth(sample: np.ndarray) -> int:
    top = float(np.nanpercentile(sample, 99.99)) if np.isfinite(sample).any() else 255.0
    for bits in (8, 10, 12, 14, 16):
        if top <= 2**bits - 1:
            return bits
    return 32
