"""``whalescan detect``: scenes → (scene, region) work units on a Ray actor pool → GeoParquet reports.

Each actor loads the bundle and its backend once (one GPU per actor where GPUs exist). At most
two regions per actor are in flight (one scoring, one reading ahead), so memory stays flat however
many scenes are queued; a scene's files are written as soon as its last region is back. Actors
are restarted by Ray if their process dies and their regions rerun, so output equals a clean run.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import click
import numpy as np

from jobs.options import address_option, verbose_option
from jobs.preflight import OptionError, check_detect
from jobs.worker import DetectorSettings, RegionResult, RegionTask, scene_regions
from tiling.bands import parse_scale, resolve_scaling, select_bands
from tiling.scene import SceneError, SceneInfo, SceneRef, describe, open_scene, resolve_scene

log = logging.getLogger(__name__)
MODES = ("fcn", "sliding")


@dataclass(frozen=True)
class DetectConfig:
    """One detection run. ``out`` is the reports root (a directory or ``s3://bucket/prefix``)."""

    bundle: str
    out: str
    scenes: tuple[str, ...] = ()
    mode: str = "fcn"
    stride: int | None = None  # sliding-window stride; fcn always uses the bundle's output stride
    region_size: int = 2048
    batch_size: int = 64
    threshold: float = 0.5
    bands: tuple[int, ...] | None = None
    scale: str = "auto"
    backend: str = "auto"
    workers: int | None = None  # None: one per GPU, else the CPU default; 0: in-process, no Ray
    address: str | None = None
    capacity_wait_s: float = 300.0  # no live actor this long (nodes lost): fail the rest
    run_id: str = field(default_factory=lambda: new_run_id())
    progress: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {MODES}")
        if self.region_size < 64:
            raise ValueError(f"region_size {self.region_size}: must be ≥ 64 px")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold}: must be in (0, 1)")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride {self.stride}: must be ≥ 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size}: must be ≥ 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers {self.workers}: must be ≥ 0")
        if self.capacity_wait_s <= 0:
            raise ValueError(f"capacity_wait_s {self.capacity_wait_s}: must be > 0 seconds")
        parse_scale(self.scale)


@dataclass(frozen=True)
class SceneOutcome:
    """What happened to one scene (also a row of the scenes table)."""

    uri: str
    status: str  # "ok" | "failed"
    error: str | None
    detections: int
    megapixels: float
    seconds: float
    detections_path: str | None = None


@dataclass
class _Scene:
    """Driver-side state of a scene whose regions are in flight."""

    index: int
    ref: SceneRef
    info: SceneInfo
    regions: int
    started: float
    results: list[RegionResult] = field(default_factory=list)


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_detect(config: DetectConfig) -> list[SceneOutcome]:
    """Detect in ``config.scenes`` (paths or ``s3://`` URIs); unusable ones become failed rows."""
    from models.bundle import load_bundle
    from reports.store import open_store

    bundle = load_bundle(config.bundle)
    check_detect(config, bundle)  # options that cannot work stop the run before any scene
    store = open_store(config.out)
    refs: list[SceneRef] = []
    failed: list[SceneOutcome] = []
    for uri in config.scenes:
        try:
            refs.append(resolve_scene(uri))
        except SceneError as e:
            ref = SceneRef(uri, "missing", _now())
            failed.append(_record_failure(config, bundle, store, ref, str(e)))
    return failed + detect_scenes(config, refs, bundle)


def detect_scenes(
    config: DetectConfig, scenes: Sequence[SceneRef], bundle=None
) -> list[SceneOutcome]:
    """Run detection over ``scenes``; write each scene's detections, then its ledger row.

    A scene that cannot be read is a ``failed`` outcome, never an exception; options that cannot
    work raise :class:`jobs.preflight.OptionError` first. ``bundle``: the loaded
    ``config.bundle``, if the caller has it already.
    """
    from models.bundle import load_bundle

    bundle = bundle or load_bundle(config.bundle)
    stride = (
        bundle.output_stride if config.mode == "fcn" else (config.stride or bundle.output_stride)
    )
    check_detect(config, bundle)
    settings = DetectorSettings(
        mode=config.mode, stride=stride, threshold=config.threshold,
        batch_size=config.batch_size, backend=config.backend,
    )  # fmt: skip
    writer = _Writer(config, bundle, stride)
    with _pool(config, str(bundle.path), settings) as pool:
        return writer.run(pool, scenes)


class _Writer:
    """Plans scenes into region tasks, collects results, writes each scene when it completes."""

    def __init__(self, config: DetectConfig, bundle, stride: int):
        from reports.store import open_store

        self.config, self.bundle, self.stride = config, bundle, stride
        self.store = open_store(config.out)
        self.outcomes: list[SceneOutcome] = []
        self.backend_label = config.backend
        self.megapixels = 0.0
        self.started = time.perf_counter()

    def run(self, pool, scenes: Sequence[SceneRef]) -> list[SceneOutcome]:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="region", disable=not self.config.progress, leave=False)
        live: dict[int, _Scene] = {}
        for task in self._tasks(scenes, live, bar):
            while not pool.has_free():
                self._collect(pool.get_next_unordered(), live, bar)
            pool.submit_region(task)
        while pool.has_next():
            self._collect(pool.get_next_unordered(), live, bar)
        bar.close()
        return self.outcomes

    def _tasks(self, scenes, live, bar) -> Iterator[RegionTask]:
        for index, ref in enumerate(scenes):
            try:
                info, tasks = self._plan(index, ref)
            except SceneError as e:
                failure = _record_failure(self.config, self.bundle, self.store, ref, str(e))
                self._done(failure, bar)
                continue
            live[index] = _Scene(index, ref, info, len(tasks), time.perf_counter())
            bar.total += len(tasks)
            bar.refresh()
            yield from tasks

    def _plan(self, index: int, ref: SceneRef):
        cfg, b = self.config, self.bundle
        with open_scene(ref.uri) as ds:
            info = describe(ds, ref.uri)
            if min(info.width, info.height) < b.input_size:
                raise SceneError(
                    f"{ref.uri!r}: scene {info.width}×{info.height} px is smaller than one "
                    f"{b.input_size} px window"
                )
            bands = select_bands(ds, ref.uri, cfg.bands)
            scaling = resolve_scaling(ds, bands, cfg.scale)
        regions = scene_regions(b, self.stride, info.width, info.height, cfg.region_size)
        return info, [RegionTask(index, ref.uri, r, bands, scaling) for r in regions]

    def _collect(self, result: RegionResult, live: dict[int, _Scene], bar) -> None:
        scene = live[result.scene]
        scene.results.append(result)
        self.backend_label = result.backend or self.backend_label
        self.megapixels += result.megapixels
        rate = self.megapixels / max(time.perf_counter() - self.started, 1e-9)
        bar.set_postfix_str(f"{rate:.1f} MP/s", refresh=False)
        bar.update(1)
        if len(scene.results) == scene.regions:
            del live[result.scene]
            self._done(self._write(scene), bar)

    def _write(self, scene: _Scene) -> SceneOutcome:
        from reports.geoparquet import detections_table
        from reports.ledger import write_scene_result

        results = sorted(scene.results, key=lambda r: r.region)
        errors = [r.error for r in results if r.error]
        seconds = time.perf_counter() - scene.started
        info = scene.info
        meta = _scene_meta(scene.ref, info)
        store = self.store
        row = _attempt_row(self.config, self.bundle, errors[0] if errors else None, seconds,
                           self.backend_label)  # fmt: skip
        if errors:
            write_scene_result(store, meta, None, row)
            return SceneOutcome(scene.ref.uri, "failed", errors[0], 0, _mp(info), seconds)
        boxes = np.concatenate([r.boxes for r in results]) if results else np.zeros((0, 4))
        scores = np.concatenate([r.scores for r in results]) if results else np.zeros(0, np.float32)
        table = detections_table(
            meta, boxes, scores, label=_label(self.bundle), mode=self.config.mode,
            backend=self.backend_label, model_sha256=self.bundle.weights_sha256,
            run_id=self.config.run_id, detected_at=_now(),
        )  # fmt: skip
        written = write_scene_result(store, meta, table, row)
        return SceneOutcome(
            scene.ref.uri, "ok", None, len(boxes), _mp(info), seconds,
            store.uri(written.detections) if written.detections else None,
        )  # fmt: skip

    def _done(self, outcome: SceneOutcome, bar) -> None:
        self.outcomes.append(outcome)
        bar.write(_summary(outcome)) if self.config.progress else log.info(_summary(outcome))


def _attempt_row(config, bundle, error, seconds, backend) -> dict:
    now = _now()
    return {
        "status": "failed" if error else "ok",
        "error": error,
        "seconds": seconds,
        "mode": config.mode,
        "backend": backend,
        "model_sha256": bundle.weights_sha256,
        "run_id": config.run_id,
        "started_at": now - dt.timedelta(seconds=seconds),
        "finished_at": now,
    }


def _record_failure(config: DetectConfig, bundle, store, ref: SceneRef, error: str) -> SceneOutcome:
    """A scene that never reached the actors: its ledger row says why."""
    from reports.ledger import write_scene_result
    from reports.schema import SceneMeta

    row = _attempt_row(config, bundle, error, 0.0, config.backend)
    write_scene_result(store, SceneMeta(ref.uri, ref.version, modified=ref.modified), None, row)
    return SceneOutcome(ref.uri, "failed", error, 0, 0.0, 0.0)


def _scene_meta(ref: SceneRef, info):
    from reports.schema import SceneMeta

    return SceneMeta(
        uri=ref.uri, version=ref.version, width=info.width, height=info.height,
        bands=info.count, dtype=info.dtype, crs=info.crs, transform=info.transform,
        modified=ref.modified,
    )  # fmt: skip


def _pool(config: DetectConfig, bundle_path: str, settings: DetectorSettings):
    from jobs.pool import actor_pool, inline_pool

    if config.workers == 0:
        return inline_pool(bundle_path, settings)
    return actor_pool(bundle_path, settings, config.workers, config.address, config.capacity_wait_s)


def _label(bundle) -> str:
    name = bundle.positive_class
    return name if name.startswith("whale") else f"whale_{name}"


def _mp(info) -> float:
    return info.width * info.height / 1e6


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _summary(o: SceneOutcome) -> str:
    if o.status != "ok":
        return f"{o.uri}: FAILED — {o.error}"
    rate = o.megapixels / o.seconds if o.seconds else 0.0
    return (
        f"{o.uri}: {o.detections} whale face(s), {o.megapixels:.1f} MP in {o.seconds:.1f} s "
        f"({rate:.1f} MP/s) → {o.detections_path}"
    )


def _parse_bands(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected band numbers like 1,2,3") from None


@click.command()
@click.argument("bundle", type=click.Path())
@click.argument("scenes", nargs=-1, required=True)
@click.option("--out", required=True, help="Reports root: a directory or s3://bucket/prefix.")
@click.option("--mode", type=click.Choice(MODES), default="fcn", show_default=True)
@click.option("--stride", type=int, default=None, help="Sliding-window stride in px.")
@click.option(
    "--region-size", type=int, default=2048, show_default=True, help="Core px per region."
)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Windows per batch (sliding)."
)
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option(
    "--bands", callback=_parse_bands, default=None, help="R,G,B band numbers, e.g. 3,2,1."
)
@click.option("--scale", default="auto", show_default=True,
              help="auto | none | bits:N | range:LO,HI | percentile:P1,P2")  # fmt: skip
@click.option("--backend", default="auto", show_default=True,
              help="auto | torch | onnxruntime | openvino | tensorrt")  # fmt: skip
@click.option("--workers", type=int, default=None,
              help="Detection actors (default: one per GPU, else the CPU default); 0 = no Ray.")  # fmt: skip
@address_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@verbose_option
def detect(bundle, scenes, out, mode, stride, region_size, batch_size, threshold, bands, scale,
           backend, workers, address, quiet):  # fmt: skip
    """Detect whale faces in SCENES (GeoTIFF paths or s3:// URIs) with the model BUNDLE."""
    try:
        config = DetectConfig(
            bundle=bundle, out=out, scenes=tuple(scenes), mode=mode, stride=stride,
            region_size=region_size, batch_size=batch_size, threshold=threshold, bands=bands,
            scale=scale, backend=backend, workers=workers, address=address, progress=not quiet,
        )  # fmt: skip
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    from models.bundle import BundleError

    try:
        outcomes = run_detect(config)
    except OptionError as e:
        raise click.UsageError(str(e)) from e
    except BundleError as e:
        raise click.ClickException(str(e)) from e
    ok = sum(o.status == "ok" for o in outcomes)
    found = sum(o.detections for o in outcomes)
    click.echo(f"{ok}/{len(outcomes)} scene(s) ok, {found} whale face(s); reports in {out}")
    if ok < len(outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    detect()
