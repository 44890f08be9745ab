"""``whalescan scan``: incremental scans of an S3 prefix (or a directory) against the scan ledger.

Each scan lists the source, keeps objects with a raster suffix, and compares each object version
with the ledger (the scenes table of the reports) on its scene key — (scene URI, ETag or
size+mtime, model SHA-256, mode). New and changed objects are detected; objects already ``ok``
are skipped; objects that failed at the same version are retried only with ``--retry-failed``;
objects gone from the source are reported (their reports stay). ``jobs.detect`` writes each
scene's detections before its ledger row, so a scan that is stopped half way leaves every scene
either fully recorded or absent from the ledger — and absent scenes are planned again next time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import click
import pyarrow as pa
import pyarrow.compute as pc

from jobs import options
from jobs.preflight import OptionError
from jobs.region_pool import CAPACITY_WAIT_S
from storage.s3 import list_objects
from storage.uri import S3Uri, is_s3
from tiling.scene import RASTER_SUFFIXES, Scene, SceneError, resolve_scene

__all__ = [
    "DEFAULT_SUFFIXES",
    "PlannedScene",
    "ScanConfig",
    "ScanPlan",
    "ScanSummary",
    "parse_interval",
    "plan_scan",
    "run_every",
    "run_scan",
    "scan",
]

log = logging.getLogger(__name__)

DEFAULT_SUFFIXES = (".tif", ".tiff", ".jp2", ".png", ".jpg")
LIST_PAGE_SIZE = 1000  # keys per ListObjectsV2 page (the S3 maximum)

_INTERVAL_PART = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str | float) -> float:
    """Seconds in an interval: ``"15m"``, ``"1h"``, ``"30s"``, ``"1h30m"``, ``"2d"`` or seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().replace(" ", "")
        parts = list(_INTERVAL_PART.finditer(value))
        if not value or "".join(m.group(0) for m in parts) != value:
            raise ValueError(f"every={text!r}: expected an interval like 30s, 15m, 1h or 1h30m")
        seconds = sum(float(m.group(1)) * _UNIT_S[m.group(2).lower()] for m in parts)
    if not seconds > 0:
        raise ValueError(f"every={text!r}: the interval must be positive")
    return seconds


def _normalise_suffixes(suffixes: str | Sequence[str]) -> tuple[str, ...]:
    items = suffixes.split(",") if isinstance(suffixes, str) else list(suffixes)
    out: list[str] = []
    for item in items:
        s = item.strip().lower()
        if not s:
            continue
        s = s if s.startswith(".") else "." + s
        if s not in RASTER_SUFFIXES:
            raise ValueError(
                f"suffixes: {item.strip()!r} is not a raster suffix GDAL may open through S3; "
                f"expected some of {', '.join(RASTER_SUFFIXES)}"
            )
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError(f"suffixes={suffixes!r}: expected at least one, e.g. .tif,.tiff")
    return tuple(out)


@dataclass(frozen=True)
class ScanConfig:
    """One scan (or, with ``every``, a scan repeated at that interval).

    ``source`` is ``s3://bucket[/prefix]`` or a local directory (a prefix names a folder: a
    trailing ``/`` is implied). ``reports`` is the reports root (a directory or
    ``s3://bucket/prefix``) whose scenes table is the ledger. ``suffixes`` are matched
    case-insensitively; ``every`` is seconds (or a string like ``"15m"``).
    """

    source: str
    bundle: str
    reports: str
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    every: float | None = None
    max_scenes: int | None = None
    dry_run: bool = False
    retry_failed: bool = False
    mode: str | None = None  # None: from the bundle (boxes for a box detector, else fcn)
    threshold: float | None = None  # None: the bundle's tuned threshold, else 0.5
    backend: str = "auto"
    workers: int | None = None
    address: str | None = None
    capacity_wait_s: float = CAPACITY_WAIT_S  # no live actor this long (nodes lost): fail the rest
    progress: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"source={self.source!r}: expected s3://bucket/prefix or a directory")
        if is_s3(self.source):
            source = S3Uri.parse(self.source)
            prefix = source.key.strip("/")
            set_(self, "source", str(source.child(f"{prefix}/" if prefix else "")))
        elif "://" in self.source:
            raise ValueError(f"source={self.source!r}: expected s3://bucket/prefix or a directory")
        else:
            path = Path(self.source).expanduser()
            if not path.is_dir():
                raise ValueError(f"source={self.source!r}: not a directory (or use s3://…)")
            set_(self, "source", str(path.resolve()) + os.sep)
        if isinstance(self.bundle, os.PathLike):
            set_(self, "bundle", os.fspath(self.bundle))
        if not isinstance(self.bundle, str) or not self.bundle:
            raise ValueError(f"bundle={self.bundle!r}: expected a directory, .tar or s3://…")
        if is_s3(self.bundle):
            try:  # the object itself is fetched and validated by load_bundle
                key = S3Uri.parse(self.bundle).key
            except ValueError as e:
                raise ValueError(f"bundle={e}") from None
            if not key or key.endswith("/"):
                raise ValueError(f"bundle={self.bundle!r}: expected s3://bucket/key.tar")
        elif "://" in self.bundle or not Path(self.bundle).expanduser().exists():
            raise ValueError(
                f"bundle={self.bundle!r}: no model bundle (directory, .tar or s3://…) there"
            )
        if not self.reports:
            raise ValueError(
                "reports: a reports root (directory or s3://bucket/prefix) is required"
            )
        set_(self, "suffixes", _normalise_suffixes(self.suffixes))
        if self.every is not None:
            set_(self, "every", parse_interval(self.every))
        if self.max_scenes is not None and self.max_scenes < 1:
            raise ValueError(f"max_scenes={self.max_scenes}: must be ≥ 1 (or None for all)")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: must be in (0, 1)")
        if self.mode is not None and self.mode not in options.MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {', '.join(options.MODES)}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers={self.workers}: must be ≥ 0")
        if not self.capacity_wait_s > 0:
            raise ValueError(f"capacity_wait_s={self.capacity_wait_s}: must be > 0 seconds")

    def detect_config(self):
        """The ``jobs.detect.DetectConfig`` this scan detects with (its settings make the keys)."""
        from jobs.detect import DetectConfig

        return DetectConfig(
            bundle=self.bundle, out=self.reports, mode=self.mode, threshold=self.threshold,
            backend=self.backend, workers=self.workers, address=self.address,
            capacity_wait_s=self.capacity_wait_s, progress=self.progress,
        )  # fmt: skip

    @property
    def is_s3(self) -> bool:
        return is_s3(self.source)


@dataclass(frozen=True)
class PlannedScene:
    """A scene version to detect, and why: ``new``, ``changed`` (new version) or ``retry``."""

    ref: Scene
    reason: str  # "new", "changed" or "retry"
    scene_key: str  # the result's name, derived once from the scene and the run


@dataclass(frozen=True)
class ScanPlan:
    """What a scan found and will do. ``todo`` is in processing order (oldest version first)."""

    source: str
    model_sha256: str
    mode: str
    listed: int  # objects under the source (any suffix)
    todo: tuple[PlannedScene, ...]
    deferred: tuple[PlannedScene, ...]  # over --max-scenes: left for the next scan
    unchanged: int  # already ok in the ledger at this version (a count: may be millions)
    failed_before: tuple[Scene, ...]  # failed at this version; retried with --retry-failed
    deleted: tuple[str, ...]  # URIs in the ledger that are no longer in the source
    ignored: int  # objects without a matching suffix

    def describe(self) -> list[str]:
        """Human-readable lines: a summary, then one line per scene to detect, deferred or gone."""
        reasons = {r: sum(p.reason == r for p in self.todo) for r in ("new", "changed", "retry")}
        lines = [
            f"scan {self.source}: {self.listed} object(s), {self.ignored} ignored by suffix; "
            f"model {self.model_sha256[:12]}, mode {self.mode}",
            f"  to detect: {len(self.todo)} ({reasons['new']} new, {reasons['changed']} changed, "
            f"{reasons['retry']} retried); unchanged: {self.unchanged}; "
            f"failed before: {len(self.failed_before)}; deferred: {len(self.deferred)}; "
            f"deleted: {len(self.deleted)}",
        ]
        lines += [f"  + {p.reason:<7} {p.ref.uri} (version {p.ref.version})" for p in self.todo]
        lines += [f"  ~ later   {p.ref.uri} (over --max-scenes)" for p in self.deferred[:20]]
        if len(self.deferred) > 20:
            lines.append(f"  ~ later   … and {len(self.deferred) - 20} more (over --max-scenes)")
        lines += [
            f"  ! failed  {r.uri} (same version failed before; --retry-failed to retry)"
            for r in self.failed_before
        ]
        lines += [f"  - deleted {uri} (its reports are kept)" for uri in self.deleted]
        return lines


@dataclass(frozen=True)
class ScanSummary:
    """The counts of one scan, and the failures (URI, reason) of its batch."""

    listed: int
    todo: int
    ok: int
    failed: int
    unchanged: int
    failed_before: int
    deferred: int
    deleted: int
    ignored: int
    dry_run: bool
    failures: tuple[tuple[str, str], ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 when every scene of the batch is ok, 1 when some failed (a scheduler sees it)."""
        return 1 if self.failed else 0


class ListingPage(NamedTuple):
    """One page of a source listing: scenes with a matching suffix, and every other URI."""

    refs: list[Scene]
    other_uris: list[str]


def _list_s3(config: ScanConfig) -> Iterator[ListingPage]:
    objects = list_objects(S3Uri.parse(config.source), page_size=LIST_PAGE_SIZE)
    while page := list(itertools.islice(objects, LIST_PAGE_SIZE)):
        refs, others = [], []
        for obj in page:
            if obj.uri.key.endswith("/"):  # a "folder" marker
                continue
            if obj.uri.key.lower().endswith(config.suffixes):
                refs.append(Scene.from_head(obj))
            else:
                others.append(str(obj.uri))
        yield ListingPage(refs, others)


def _list_local(config: ScanConfig) -> Iterator[ListingPage]:
    for dirpath, dirnames, filenames in os.walk(config.source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        refs, others = [], []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            uri = os.path.join(dirpath, name)
            if not name.lower().endswith(config.suffixes):
                others.append(uri)
                continue
            try:
                refs.append(resolve_scene(uri))
            except SceneError:  # removed between the walk and the stat: it is gone
                continue
        yield ListingPage(refs, others)


def list_source(config: ScanConfig) -> Iterator[ListingPage]:
    """The source listing, page by page (S3: 1000 keys a page; local: one folder a page)."""
    return _list_s3(config) if config.is_s3 else _list_local(config)


_LISTING_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("version", pa.string()),
        ("modified", pa.timestamp("us", tz="UTC")),
        ("scene_key", pa.string()),
    ]
)


def _listing_table(
    pages: Iterable[ListingPage], key_of: Callable[[Scene], str]
) -> tuple[pa.Table, pa.Array, int]:
    """``(scenes listed, as columns; URIs of every object; count ignored by suffix)``.

    Columnar page by page, so a listing of 1M objects costs ~150 bytes an object, not a
    Python object each.
    """
    batches, uris, ignored = [], [], 0
    for page in pages:
        refs = page.refs
        batches.append(
            pa.record_batch(
                [
                    pa.array([r.uri for r in refs], pa.string()),
                    pa.array([r.version for r in refs], pa.string()),
                    pa.array([r.modified for r in refs], pa.timestamp("us", tz="UTC")),
                    pa.array([key_of(r) for r in refs], pa.string()),
                ],
                schema=_LISTING_SCHEMA,
            )
        )
        uris.append(pa.array(page.other_uris, pa.string()))
        ignored += len(page.other_uris)
    listing = pa.Table.from_batches(batches, schema=_LISTING_SCHEMA).combine_chunks()
    all_uris = pa.concat_arrays([listing.column("uri").combine_chunks(), *uris])
    return listing, all_uris, ignored


def _reasons(todo: pa.Table, ledger: pa.Table) -> pa.ChunkedArray:
    """Why each scene of ``todo`` is planned: ``retry`` (its key failed before), ``changed`` (the
    ledger knows the URI, only at other versions) or ``new`` (incl. a known version under
    another model or other parameters)."""
    uri, version = todo["uri"], todo["version"]
    same_uri = ledger.filter(pc.is_in(ledger["scene_uri"], uri))  # ≤ a few rows per todo scene
    sep = "\x1f"
    known = pc.binary_join_element_wise(same_uri["scene_uri"], same_uri["scene_version"], sep)
    pair = pc.binary_join_element_wise(uri, version, sep)
    changed = pc.and_(pc.is_in(uri, same_uri["scene_uri"]), pc.invert(pc.is_in(pair, known)))
    return pc.if_else(todo["tried"], "retry", pc.if_else(changed, "changed", "new"))


def plan_scan(
    config: ScanConfig, pages: Iterable[ListingPage] | None = None, stamp=None
) -> ScanPlan:
    """List the source, compare with the ledger and decide what to detect. Writes nothing.

    The comparison is columnar (pyarrow): the ledger's latest attempt per scene key
    (``reports.ledger.read_ledger``, a few columns of a compacted table) against the listing,
    so planning over 1M objects and 1M ledger rows takes ~18 s of CPU and < 1 GiB (bench/README.md).
    Keys come from the run stamp detection will write with (model, mode, result-affecting
    settings), so a scan with other settings plans the scenes as new work. ``pages`` /
    ``stamp``: a listing and a ``reports.run.RunStamp`` to use instead of the source's and the
    bundle's (the ledger benchmark feeds a synthetic listing).
    """
    from reports.ledger import read_ledger
    from reports.store import open_store

    if stamp is None:
        from jobs.detect import run_stamp
        from models.bundle import load_bundle

        stamp = run_stamp(config.detect_config(), load_bundle(config.bundle))
    ledger = read_ledger(
        open_store(config.reports), columns=["scene_uri", "scene_version", "scene_key", "status"]
    )
    listing, all_uris, ignored = _listing_table(
        list_source(config) if pages is None else pages,
        lambda r: stamp.scene_key(r.uri, r.version),
    )
    status = pc.take(
        ledger.column("status"), pc.index_in(listing.column("scene_key"), ledger["scene_key"])
    )
    is_ok = pc.fill_null(pc.equal(status, "ok"), False)
    tried = pc.is_valid(status)  # a latest attempt that is not ok: failed (or skipped)
    held = pc.and_(pc.and_not(tried, is_ok), pa.scalar(not config.retry_failed))
    # Only the few scenes to detect need a reason, so the URI comparisons run on them alone.
    todo = listing.filter(pc.invert(pc.or_(is_ok, held))).append_column(
        "tried", pc.filter(tried, pc.invert(pc.or_(is_ok, held)))
    )
    todo = todo.append_column("reason", _reasons(todo, ledger)).sort_by(
        [("modified", "ascending"), ("uri", "ascending")]
    )
    planned = [
        PlannedScene(Scene(r["uri"], r["version"], r["modified"]), r["reason"], r["scene_key"])
        for r in todo.select(["uri", "version", "modified", "reason", "scene_key"]).to_pylist()
    ]
    failed_before = listing.filter(held).sort_by([("modified", "ascending"), ("uri", "ascending")])
    ledger_uris = pc.unique(ledger["scene_uri"])
    gone = ledger_uris.filter(
        pc.and_(
            pc.starts_with(ledger_uris, config.source),
            pc.invert(pc.is_in(ledger_uris, all_uris)),
        )
    )
    cap = config.max_scenes if config.max_scenes is not None else len(planned)
    return ScanPlan(
        source=config.source,
        model_sha256=stamp.model_sha256,
        mode=stamp.mode,
        listed=len(all_uris),
        todo=tuple(planned[:cap]),
        deferred=tuple(planned[cap:]),
        unchanged=pc.sum(is_ok).as_py() or 0,
        failed_before=tuple(
            Scene(r["uri"], r["version"], r["modified"]) for r in failed_before.to_pylist()
        ),
        deleted=tuple(sorted(gone.to_pylist())),
        ignored=ignored,
    )


def run_scan(config: ScanConfig, echo: Callable[[str], None] = click.echo) -> ScanSummary:
    """Plan, print the plan, then (unless ``dry_run``) detect the planned scenes on Ray.

    Every planned scene ends as an ``ok`` or ``failed`` ledger row written by ``jobs.detect``;
    one that came back without an outcome has no row, counts as failed here and is planned
    again by the next scan.
    """
    plan = plan_scan(config)
    for line in plan.describe():
        echo(line)
    counts = dict(
        listed=plan.listed, todo=len(plan.todo), unchanged=plan.unchanged,
        failed_before=len(plan.failed_before), deferred=len(plan.deferred),
        deleted=len(plan.deleted), ignored=plan.ignored, dry_run=config.dry_run,
    )  # fmt: skip
    if config.dry_run or not plan.todo:
        if config.dry_run:
            echo("dry run: nothing detected, nothing written")
        return ScanSummary(ok=0, failed=0, **counts)

    from jobs.detect import detect_scenes

    detect_config = config.detect_config()
    started = time.perf_counter()
    outcomes = {o.uri: o for o in detect_scenes(detect_config, [p.ref for p in plan.todo])}
    ok, failures = 0, []
    for planned in plan.todo:
        uri, outcome = planned.ref.uri, outcomes.get(planned.ref.uri)
        if outcome is not None and outcome.status == "ok":
            ok += 1
            echo(f"  ok      {uri}: {outcome.detections} detection(s)")
            continue
        reason = (outcome.error or "failed") if outcome else "no outcome; planned again next scan"
        failures.append((uri, reason))
        echo(f"  FAILED  {uri}: {reason}")
    echo(
        f"scan done in {time.perf_counter() - started:.1f} s: {ok} ok, {len(failures)} failed; "
        f"ledger in {config.reports}"
    )
    _compact_written(config, plan)
    return ScanSummary(ok=ok, failed=len(failures), failures=tuple(failures), **counts)


COMPACT_AT = 16  # objects in a dt= partition that make a scan compact it (bench/README.md)


def _compact_written(config: ScanConfig, plan: ScanPlan) -> None:
    """Fold the ``dt=`` partitions this scan wrote to, once they hold ``COMPACT_AT`` objects, so
    the next plan reads a few segments instead of one object per scene attempt."""
    from reports.compact import compact
    from reports.keys import partition_date
    from reports.store import open_store

    written = {partition_date(p.ref.modified) for p in plan.todo}
    summary = compact(open_store(config.reports), COMPACT_AT, partitions=written)
    if summary.partitions:
        log.info("compacted %d ledger partition(s): %d object(s) → %d row(s)",
                 summary.partitions, summary.objects_in, summary.rows_out)  # fmt: skip


# Errors a scan can meet that are about the world, not the code: S3 unreachable after
# botocore's retries, access denied, an unreadable ledger or bundle. In --every mode they are
# reported and the next scan tries again.
def _scan_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError, ValueError)


def run_every(
    config: ScanConfig, stop: threading.Event, echo: Callable[[str], None] = click.echo
) -> int:
    """Scan every ``config.every`` seconds (start to start) until ``stop`` is set.

    A scan that cannot run (S3 down, access denied) is reported and retried at the next tick.
    Returns the exit code of the last scan.
    """
    if config.every is None:
        raise ValueError("run_every: config.every is None; use run_scan for a single scan")
    code = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            code = run_scan(config, echo).exit_code
        except _scan_errors() as err:
            log.error("scan of %s failed: %s", config.source, err)
            echo(f"scan of {config.source} failed: {err}; trying again in {config.every:g} s")
            code = 1
        if stop.wait(max(0.0, config.every - (time.monotonic() - started))):
            break
    echo("scanner stopped")
    return code


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, echo: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (the current batch finishes); a second one abandons the batch.

    Abandoning is safe: a scene's ledger row is written only after its detections, so an
    abandoned scene has no row and the next scan plans it again. Handlers are restored on exit.
    """

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            echo(f"{name} again: abandoning the current batch")
            raise KeyboardInterrupt
        stop.set()
        echo(f"{name}: finishing the current batch, then stopping (send again to abandon it)")

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@click.command()
@click.argument("source")
@click.option(
    "--bundle", required=True, help="Model bundle: directory, .tar, or s3://bucket/key.tar."
)
@click.option(
    "--reports", required=True, help="Reports root (directory or s3://bucket/prefix): the ledger."
)
@click.option(
    "--suffix", "suffixes", default=",".join(DEFAULT_SUFFIXES), show_default=True,
    help="Comma-separated object suffixes to scan (case-insensitive).",
)  # fmt: skip
@click.option("--every", default=None, help="Keep scanning at this interval, e.g. 15m, 1h, 30s.")
@click.option("--max-scenes", type=int, default=None, help="Detect at most N scenes per scan.")
@click.option("--dry-run", is_flag=True, help="Print what would be detected; write nothing.")
@click.option("--retry-failed", is_flag=True, help="Retry scenes that failed at the same version.")
@options.mode_option
@click.option(
    "--threshold", type=float, default=None,
    help="Detection threshold (default: the bundle's tuned one, else 0.5); part of each "
    "result's key, so another value is new work.",
)  # fmt: skip
@options.backend_option
@options.workers_option
@options.address_option
@options.capacity_wait_option
@options.progress_option
@options.verbose_option
@click.pass_context
def scan(ctx, source, bundle, reports, suffixes, every, max_scenes, dry_run, retry_failed, mode,
         threshold, backend, workers, address, capacity_wait_s, progress):  # fmt: skip
    """Detect whale faces in new or changed scenes under SOURCE (s3://BUCKET/PREFIX or a directory).

    Exit code: 0 all scenes ok, 1 some scenes failed (or the scan could not run), 2 usage error.
    """
    try:
        config = ScanConfig(
            source=source, bundle=bundle, reports=reports, suffixes=suffixes, every=every,
            max_scenes=max_scenes, dry_run=dry_run, retry_failed=retry_failed, mode=mode,
            threshold=threshold, backend=backend, workers=workers, address=address,
            capacity_wait_s=capacity_wait_s, progress=progress,
        )  # fmt: skip
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    stop = threading.Event()
    try:
        with stop_on_signals(stop, click.echo):
            if config.every is not None:
                ctx.exit(run_every(config, stop))
            ctx.exit(run_scan(config).exit_code)
    except KeyboardInterrupt:
        click.echo(
            "scan abandoned: scenes without a ledger row are planned again next scan", err=True
        )
        ctx.exit(1)
    except OptionError as err:  # a user error: not retried at the next tick
        raise click.UsageError(str(err)) from err
    except _scan_errors() as err:
        click.echo(f"scan of {config.source} failed: {err}", err=True)
        ctx.exit(1)


if __name__ == "__main__":
    scan()
