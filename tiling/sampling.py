"""A scene's sampling in a run: its GSD (georeferencing, or the user's) and the grid it is scored on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import rasterio

from tiling.gsd import Gsd, GsdError, scene_gsd
from tiling.resample import ScoredGrid, candidate_overviews, plan_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneSampling:
    """``gsd``: the scene's ground sample distance (None: unknown); ``grid``: where it is scored."""

    gsd: Gsd | None
    grid: ScoredGrid

    @property
    def gsd_m(self) -> float | None:
        return None if self.gsd is None else self.gsd.m


def scene_sampling(
    ds: rasterio.DatasetReader, uri: str, target_m: float | None, given_m: float | None = None
) -> SceneSampling:
    """How to score ``ds`` for a model trained at ``target_m`` metres per pixel.

    The scene's GSD is ``given_m`` when the user states one, else its own georeferencing's. When
    either is unknown the scene is scored at native pixels, and a scene that lacks a GSD for a
    model that has one says so in the log. Open ``ds`` inside ``tiling.scene.scene_env(uri)``:
    a matching overview is opened to learn its exact size.
    """
    gsd = Gsd.given(given_m) if given_m is not None else _own_gsd(ds, uri)
    if gsd is None and target_m is not None:
        log.warning(
            "%s: no georeferencing to take a ground sample distance from; scored at native "
            "pixels (pass --gsd M to score it at the model's %s m/px)",
            uri,
            target_m,
        )
    overviews = candidate_overviews(ds, gsd, target_m)
    return SceneSampling(gsd, plan_grid(ds.width, ds.height, gsd, target_m, overviews))


def _own_gsd(ds: rasterio.DatasetReader, uri: str) -> Gsd | None:
    try:
        return scene_gsd(ds)
    except GsdError as e:
        log.warning("%s: %s", uri, e)
        return None
