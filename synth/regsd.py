"""A synthetic scene as if flown at another ground sample distance: resampled pixels and truth.

The copy covers the same ground from the same upper-left corner with square pixels of ``gsd_m``
metres; its pixels come from ``rasterio.warp.reproject`` (average to shrink — a coarser camera
integrates the ground — cubic to enlarge) and its truth sidecar's boxes are scaled to match.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.enums import Resampling

from synth.truth import truth_path, write_truth

__all__ = ["write_at_gsd"]

_PX_COLUMNS = ("px_xmin", "px_ymin", "px_xmax", "px_ymax", "px_cx", "px_cy")


def write_at_gsd(src: str | Path, dst: str | Path, gsd_m: float, src_gsd_m: float | None = None):
    """Write scene ``src`` (with its truth sidecar) at ``gsd_m`` m/px to ``dst``; returns ``dst``.

    ``src_gsd_m``: what ``src``'s pixels measure on the ground (default: its transform's pixel
    width); a synthetic scene can thus stand for imagery flown at any GSD. ``src`` must be north-up
    in a projected CRS in metres.
    """
    if not gsd_m > 0:
        raise ValueError(f"gsd_m {gsd_m!r}: must be metres per pixel > 0")
    dst = Path(dst)
    with rasterio.open(src) as ds:
        t = ds.transform
        if t.b or t.d or ds.crs is None or not ds.crs.is_projected:
            raise ValueError(f"{str(src)!r}: expected a north-up scene in a projected CRS")
        src_m = src_gsd_m or t.a
        src_transform = Affine(src_m, 0, t.c, 0, -src_m, t.f)
        k = src_m / gsd_m  # native px of dst per px of src
        width, height = math.ceil(ds.width * k), math.ceil(ds.height * k)
        transform = Affine(gsd_m, 0, t.c, 0, -gsd_m, t.f)
        profile = ds.profile | {"width": width, "height": height, "transform": transform}
        data = np.zeros((ds.count, height, width), ds.dtypes[0])
        rasterio.warp.reproject(
            ds.read(), data, src_transform=src_transform, src_crs=ds.crs,
            dst_transform=transform, dst_crs=ds.crs, src_nodata=ds.nodata, dst_nodata=ds.nodata,
            resampling=Resampling.average if k < 1 else Resampling.cubic,
        )  # fmt: skip
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.colorinterp = ds.colorinterp
        _write_scaled_truth(truth_path(src), truth_path(dst), k, transform, ds.crs)
    return dst


def _write_scaled_truth(src: Path, dst: Path, k: float, transform: Affine, crs) -> None:
    table = pq.read_table(src)
    columns = {name: table[name].to_numpy() * k for name in _PX_COLUMNS}
    xs, ys = transform @ (columns["px_cx"], columns["px_cy"])
    if len(xs):
        lon, lat = rasterio.warp.transform(crs, "EPSG:4326", xs, ys)
    else:
        lon = lat = []
    columns |= {"heading_deg": table["heading_deg"].to_numpy(), "lon": lon, "lat": lat}
    meta = json.loads((table.schema.metadata or {}).get(b"whalescan.synth", b"{}"))
    meta |= {"resampled_from": str(src), "scale": k}
    schema = table.schema.with_metadata({"whalescan.synth": json.dumps(meta)})
    arrays = [pa.array(np.asarray(columns[f.name], np.float64), pa.float64()) for f in schema]
    write_truth(dst, pa.Table.from_arrays(arrays, schema=schema))
