"""``whalescan detect``: scenes → (scene, region) work units on a Ray actor pool → GeoParquet reports.

Each actor loads the bundle and its backend once (one GPU per actor where GPUs exist). At most
two regions per actor are in flight (one scoring, one reading ahead), so memory stays flat however
many scenes are queued; a scene's files are written as soon as its last region is back. A region
whose actor dies (process or node lost) runs again on a live actor (``jobs.region_pool``), so
output equals a clean run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import click
import numpy as np

from jobs.options import (
    MODES,
    address_option,
    backend_option,
    capacity_wait_option,
    mode_option,
    progress_option,
    verbose_option,
    workers_option,
)
from jobs.preflight import OptionError, check_detect
from jobs.region_pool import CAPACITY_WAIT_S
from jobs.worker import DetectorSettings, RegionResult, RegionTask, scene_regions
from models.second_look import in_use
from tiling.bands import parse_scale, resolve_scaling, select_bands
from tiling.sampling import SceneSampling, scene_sampling
from tiling.scene import Scene, SceneError, describe, open_scene, resolve_scene, scene_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectConfig:
    """One detection run. ``out`` is the reports root (a directory or ``s3://bucket/prefix``)."""

    bundle: str
    out: str
    scenes: tuple[str, ...] = ()
    mode: str | None = None  # None: from the bundle (boxes for a detector, else fcn)
    stride: int | None = None  # sliding-window stride; fcn always uses the bundle's output stride
    region_size: int = 2048
    batch_size: int = 64
    threshold: float | None = None  # None: the bundle's tuned threshold, else 0.5
    bands: tuple[int, ...] | None = None
    scale: str = "auto"
    backend: str = "auto"
    workers: int | None = None  # None: one per GPU, else the CPU default; 0: in-process, no Ray
    address: str | None = None
    capacity_wait_s: float = CAPACITY_WAIT_S  # no live actor this long (nodes lost): fail the rest
    run_id: str = field(default_factory=lambda: new_run_id())
    progress: bool = True
    rerun: bool = False  # detect scenes whose result (same scene key) is already ok, again
    gsd: float | None = None  # metres per pixel of every scene, instead of its georeferencing
    second_look: bool = True  # boxes: re-score candidates with the bundle's second look, if any

    def __post_init__(self):
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {MODES}")
        if self.region_size < 64:
            raise ValueError(f"region_size {self.region_size}: must be ≥ 64 px")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold}: must be in (0, 1)")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride {self.stride}: must be ≥ 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size}: must be ≥ 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers {self.workers}: must be ≥ 0")
        if self.capacity_wait_s <= 0:
            raise ValueError(f"capacity_wait_s {self.capacity_wait_s}: must be > 0 seconds")
        if self.gsd is not None and not self.gsd > 0:
            raise ValueError(f"gsd {self.gsd}: must be metres per pixel > 0")
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
    reused: bool = False  # already ok in the reports with the same key: not detected again
    gsd_m: float | None = None  # the scene's ground sample distance, None if unknown
    px_scale: float = 1.0  # native px per scored px (1: scored at native pixels)


@dataclass
class _Scene:
    """Driver-side state of a scene whose regions are in flight."""

    index: int
    scene: Scene  # described: size, bands, CRS, GSD
    sampling: SceneSampling
    regions: int
    started: float
    results: list[RegionResult] = field(default_factory=list)


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_detect(config: DetectConfig) -> list[SceneOutcome]:
    """Detect in ``config.scenes`` (paths or ``s3://`` URIs); unusable ones become failed rows.

    A scene whose result is already ``ok`` in ``config.out`` under the same scene key (scene
    version, model, mode, parameters) is not detected again unless ``config.rerun``: after a
    killed run, the same command finishes the missing scenes only.
    """
    from models.bundle import load_bundle
    from reports.store import open_store

    bundle = load_bundle(config.bundle)
    config = for_bundle(config, bundle)
    check_detect(config, bundle)  # options that cannot work stop the run before any scene
    store = open_store(config.out)
    refs: list[Scene] = []
    failed: list[SceneOutcome] = []
    for uri in config.scenes:
        try:
            refs.append(resolve_scene(uri))
        except SceneError as e:
            missing = Scene(uri, "missing", _now())
            failed.append(_record_failure(config, bundle, store, missing, str(e)))
    reused: list[SceneOutcome] = []
    if not config.rerun:
        refs, reused = _split_done(config, bundle, store, refs)
    return failed + reused + detect_scenes(config, refs, bundle)


def _split_done(config: DetectConfig, bundle, store, scenes: list[Scene]):
    """``(scenes still to detect, outcomes of those already ok under the same scene key)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from reports.ledger import read_ledger

    stamp = run_stamp(config, bundle, config.backend)
    keys = {scene.uri: stamp.scene_key(scene.uri, scene.version) for scene in scenes}
    ledger = read_ledger(store, ["scene_key", "status", "detections", "megapixels"])
    wanted = pc.is_in(ledger["scene_key"], pa.array(list(keys.values()), pa.string()))
    done = {r["scene_key"]: r for r in ledger.filter(wanted).to_pylist() if r["status"] == "ok"}
    todo, reused = [], []
    for scene in scenes:
        row = done.get(keys[scene.uri])
        if row is None:
            todo.append(scene)
            continue
        reused.append(
            SceneOutcome(
                scene.uri,
                "ok",
                None,
                row["detections"] or 0,
                row["megapixels"] or 0.0,
                0.0,
                reused=True,
            )  # fmt: skip
        )
        log.info("%s: already done (key %s); --rerun to detect again", scene.uri, keys[scene.uri])
    return todo, reused


def detect_scenes(config: DetectConfig, scenes: Sequence[Scene], bundle=None) -> list[SceneOutcome]:
    """Run detection over ``scenes``; write each scene's detections, then its ledger row.

    A scene that cannot be read is a ``failed`` outcome, never an exception; options that cannot
    work raise :class:`jobs.preflight.OptionError` first. ``bundle``: the loaded
    ``config.bundle``, if the caller has it already.
    """
    from models.bundle import load_bundle

    bundle = bundle or load_bundle(config.bundle)
    config = for_bundle(config, bundle)
    check_detect(config, bundle)
    if bundle.gsd_m is None:
        log.warning(
            "%s records no ground sample distance: scenes are scored at their native pixels",
            config.bundle,
        )
    stride = _stride(config, bundle)
    settings = DetectorSettings(
        mode=config.mode, stride=stride, threshold=config.threshold,
        batch_size=config.batch_size, backend=config.backend, second_look=config.second_look,
    )  # fmt: skip
    writer = _Writer(config, bundle, settings)
    with _pool(config, str(bundle.path), settings) as pool:
        return writer.run(pool, scenes)


class _Writer:
    """Plans scenes into region tasks, collects results, writes each scene when it completes."""

    def __init__(self, config: DetectConfig, bundle, settings: DetectorSettings):
        from reports.store import open_store

        self.config, self.bundle, self.settings = config, bundle, settings
        self.store = open_store(config.out)
        self.outcomes: list[SceneOutcome] = []
        self.backend_label = config.backend
        self.megapixels = 0.0
        self.started = time.perf_counter()

    def run(self, pool, scenes: Sequence[Scene]) -> list[SceneOutcome]:
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
        for index, listed in enumerate(scenes):
            try:
                scene, sampling, tasks = self._plan(index, listed)
            except SceneError as e:
                failure = _record_failure(self.config, self.bundle, self.store, listed, str(e))
                self._done(failure, bar)
                continue
            live[index] = _Scene(index, scene, sampling, len(tasks), time.perf_counter())
            bar.total += len(tasks)
            bar.refresh()
            yield from tasks

    def _plan(self, index: int, listed: Scene):
        cfg, b, uri = self.config, self.bundle, listed.uri
        with scene_env(uri), open_scene(uri) as ds:
            sampling = scene_sampling(ds, uri, b.gsd_m, cfg.gsd)
            scene = replace(describe(ds, listed), gsd_m=sampling.gsd_m)
            grid = sampling.grid
            if min(grid.width, grid.height) < b.input_size:
                at = "" if grid.is_native else f" (at {b.gsd_m} m/px)"
                raise SceneError(
                    f"{uri!r}: scene {grid.width}×{grid.height} px{at} is smaller than one "
                    f"{b.input_size} px window"
                )
            bands = select_bands(ds, uri, cfg.bands)
            scaling = resolve_scaling(ds, bands, cfg.scale, uri)
        regions = scene_regions(self.settings, b, grid.width, grid.height, cfg.region_size)
        task_grid = None if grid.is_native else grid
        tasks = [RegionTask(index, uri, r, bands, scaling, task_grid) for r in regions]
        return scene, sampling, tasks

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
        from reports.run import SceneRun

        results = sorted(scene.results, key=lambda r: r.region)
        errors = [r.error for r in results if r.error]
        seconds = time.perf_counter() - scene.started
        uri, mp, store = scene.scene.uri, scene.scene.megapixels, self.store
        run = SceneRun(scene.scene, run_stamp(self.config, self.bundle, self.backend_label))
        attempt = _attempt(errors[0] if errors else None, seconds, scene.sampling.grid.scale)
        if errors:
            write_scene_result(store, run, attempt)
            return SceneOutcome(uri, "failed", errors[0], 0, mp, seconds)
        boxes = np.concatenate([r.boxes for r in results]) if results else np.zeros((0, 4))
        scores = np.concatenate([r.scores for r in results]) if results else np.zeros(0, np.float32)
        table = detections_table(run, boxes, scores, label=_label(self.bundle), detected_at=_now())
        written = write_scene_result(store, run, attempt, table)
        return SceneOutcome(
            uri, "ok", None, len(boxes), mp, seconds,
            store.uri(written.detections) if written.detections else None,
            gsd_m=scene.sampling.gsd_m, px_scale=scene.sampling.grid.scale,
        )  # fmt: skip

    def _done(self, outcome: SceneOutcome, bar) -> None:
        self.outcomes.append(outcome)
        bar.write(_summary(outcome))  # a result line, printed with or without the bar


def run_stamp(config: DetectConfig, bundle, backend: str | None = None):
    """The run stamp of this run's rows; ``backend``: the label of the backend that scored
    (default: the configured one). Its ``scene_key`` is what scan and detect compare."""
    from reports.run import RunStamp

    config = for_bundle(config, bundle)
    key_parameters = result_parameters(config, bundle)
    parameters = {**key_parameters, "region_size": config.region_size,
                  "batch_size": config.batch_size}  # fmt: skip
    backend = backend or config.backend
    return RunStamp(config.run_id, bundle.weights_sha256, config.mode, backend, parameters,
                    key_parameters)  # fmt: skip


def result_parameters(config: DetectConfig, bundle) -> dict:
    """The settings, besides model and mode, that change a scene's detections: part of its key.

    Not here, because they leave the boxes unchanged: ``region_size`` (tiling is invisible),
    ``batch_size``, ``workers`` and the backend (``auto`` may pick another one on another node;
    the default backends agree with torch to 1e-6 — README, "Backends"). A new option that
    changes results must be added here, or runs with other values would overwrite each other.
    """
    return {
        "threshold": config.threshold,
        "nms_iou": DetectorSettings.nms_iou,  # not an option yet: the library default
        "stride": _stride(config, bundle),
        "bands": list(config.bands) if config.bands else None,
        "scale": config.scale,
        "gsd": config.gsd,
        "model_gsd_m": bundle.gsd_m,
        "second_look": _second_look_key(config, bundle),
    }


def _second_look_key(config: DetectConfig, bundle) -> str | None:
    """The second look's weights hash when the run uses it (it changes the scores)."""
    second = in_use(bundle, config.mode, config.second_look)
    return second.load(bundle).weights_sha256 if second else None


def _stride(config: DetectConfig, bundle) -> int:
    """The heatmap stride in px: the bundle's for fcn and boxes (one pass of the network),
    ``--stride`` (else the bundle's) for sliding."""
    if config.mode in ("fcn", "boxes"):
        if config.stride not in (None, bundle.output_stride):
            raise OptionError(
                f"--stride {config.stride}: {config.mode} mode scores at the bundle's stride "
                f"{bundle.output_stride}"
            )
        return bundle.output_stride
    return config.stride or bundle.output_stride


def _attempt(error: str | None, seconds: float, px_scale: float | None = None):
    """How a scene attempt that ended now, after ``seconds``, went (scored at ``px_scale``)."""
    from reports.run import Attempt

    now = _now()
    return Attempt(
        "failed" if error else "ok", error, seconds, now - dt.timedelta(seconds=seconds), now,
        px_scale,
    )  # fmt: skip


def _record_failure(config: DetectConfig, bundle, store, scene: Scene, error: str) -> SceneOutcome:
    """A scene that never reached the actors: its ledger row says why."""
    from reports.ledger import write_scene_result
    from reports.run import SceneRun

    run = SceneRun(scene, run_stamp(config, bundle, config.backend))
    write_scene_result(store, run, _attempt(error, 0.0))
    return SceneOutcome(scene.uri, "failed", error, 0, 0.0, 0.0)


def for_bundle(config: DetectConfig, bundle) -> DetectConfig:
    """``config`` with mode and threshold resolved for ``bundle`` (see :func:`resolve_mode`):
    by default the threshold tuned with the second look when the run uses one, else the
    bundle's own."""
    mode = resolve_mode(config.mode, bundle)
    second = in_use(bundle, mode, config.second_look)
    tuned = second.threshold if second else float(bundle.metrics.get("threshold", 0.5))
    return dataclasses.replace(config, mode=mode, threshold=config.threshold or tuned)


def resolve_mode(mode: str | None, bundle) -> str:
    """The detection mode for ``bundle``: ``mode`` if it fits the bundle's kind, else BundleError."""
    from models.bundle import BundleError

    if mode is None:
        return "boxes" if bundle.kind == "detector" else "fcn"
    if (mode == "boxes") != (bundle.kind == "detector"):
        wants = "boxes" if bundle.kind == "detector" else "fcn or sliding"
        raise BundleError(
            f"{str(bundle.path)!r}: a {bundle.kind} bundle runs in mode {wants}, not {mode!r}"
        )
    return mode


def _pool(config: DetectConfig, bundle_path: str, settings: DetectorSettings):
    from jobs.pool import actor_pool, inline_pool

    if config.workers == 0:
        return inline_pool(bundle_path, settings)
    return actor_pool(bundle_path, settings, config.workers, config.address, config.capacity_wait_s)


def _label(bundle) -> str:
    name = bundle.positive_class
    return name if name.lower().startswith("whale") else f"whale_{name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _summary(o: SceneOutcome) -> str:
    if o.status != "ok":
        return f"{o.uri}: FAILED — {o.error}"
    rate = o.megapixels / o.seconds if o.seconds else 0.0
    return (
        f"{o.uri}: {o.detections} whale face(s), {o.megapixels:.1f} MP in {o.seconds:.1f} s "
        f"({rate:.1f} MP/s), {format_scale(o)} → {o.detections_path}"
    )


def format_scale(o: SceneOutcome) -> str:
    """``GSD 3.0 cm/px, scored at ×0.60`` (scored px per native px), or ``…, native pixels``."""
    gsd = "GSD unknown" if o.gsd_m is None else f"GSD {o.gsd_m * 100:.1f} cm/px"
    scored = "native pixels" if o.px_scale == 1.0 else f"scored at ×{1 / o.px_scale:.2f}"
    return f"{gsd}, {scored}"


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
@mode_option
@click.option("--stride", type=int, default=None, help="Sliding-window stride in px.")
@click.option(
    "--region-size", type=int, default=2048, show_default=True, help="Core px per region."
)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Windows per batch (sliding)."
)
@click.option("--threshold", type=float, default=None,
              help="Score threshold; default the bundle's tuned one, else 0.5.")  # fmt: skip
@click.option(
    "--bands", callback=_parse_bands, default=None, help="R,G,B band numbers, e.g. 3,2,1."
)
@click.option("--scale", default="auto", show_default=True,
              help="auto | none | bits:N | range:LO,HI | percentile:P1,P2")  # fmt: skip
@backend_option
@click.option("--gsd", type=float, default=None,
              help="Scenes' metres per pixel, instead of their georeferencing (for files without).")  # fmt: skip
@workers_option
@address_option
@capacity_wait_option
@progress_option
@click.option("--quiet", is_flag=True, hidden=True, help="Same as --no-progress.")
@click.option(
    "--second-look/--no-second-look", default=True, show_default=True,
    help="Box detectors trained with a second look: re-score each candidate with its chip "
    "classifier (threshold then applies to the fused score).",
)  # fmt: skip
@click.option(
    "--rerun", is_flag=True,
    help="Detect scenes again even if the reports already hold an ok result for the same scene "
    "version, model and parameters (the new attempt then wins).",
)  # fmt: skip
@verbose_option
def detect(bundle, scenes, out, mode, stride, region_size, batch_size, threshold, bands, scale,
           backend, gsd, workers, address, capacity_wait_s, progress, quiet, second_look,
           rerun):  # fmt: skip
    """Detect whale faces in SCENES (GeoTIFF paths or s3:// URIs) with the model BUNDLE."""
    try:
        config = DetectConfig(
            bundle=bundle, out=out, scenes=tuple(scenes), mode=mode, stride=stride,
            region_size=region_size, batch_size=batch_size, threshold=threshold, bands=bands,
            scale=scale, backend=backend, workers=workers, address=address,
            capacity_wait_s=capacity_wait_s, progress=progress and not quiet, rerun=rerun, gsd=gsd,
            second_look=second_look,
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
    reused = sum(o.reused for o in outcomes)
    note = f" ({reused} already done, not rerun; --rerun to redo)" if reused else ""
    click.echo(f"{ok}/{len(outcomes)} scene(s) ok{note}, {found} whale face(s); reports in {out}")
    if ok < len(outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    detect()
