"""The example DuckDB queries in ``reports/queries/*.sql``, filled in for one reports root.

A query file holds one SQL statement with ``{reports}`` where the reports root goes (always
inside a single-quoted string) and, optionally, numeric parameters ``{name}`` declared in the
header as ``-- param: name = default``. It reads the views of ``queries/views/`` (the latest
attempt of each scene key wins); :func:`load_query` puts those it names before it:
``load_query("top_detections", reports="out/reports", limit=5)`` returns SQL ready for
``duckdb.sql`` or the ``duckdb`` CLI.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

__all__ = ["load_query", "query_names", "query_params"]

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PARAM = re.compile(r"^--\s*param:\s*([a-z_][a-z0-9_]*)\s*=\s*(\S+)\s*$", re.MULTILINE)


# The views the queries read (``queries/views/NAME.sql``) → the views each one reads itself; in
# the order they are created.
VIEWS = {"latest_scenes": (), "current_detections": ("latest_scenes",)}


def _views(sql: str) -> str:
    """The statements creating the views that ``sql`` reads (and those they read), in order."""
    named = {v for v in VIEWS if re.search(rf"\bFROM {v}\b", sql)}
    named |= {dep for v in named for dep in VIEWS[v]}
    files = [_queries().joinpath("views", f"{v}.sql") for v in VIEWS if v in named]
    return "".join(f.read_text(encoding="utf-8") for f in files)


def _queries():
    return resources.files("reports").joinpath("queries")


def query_names() -> list[str]:
    """Names of the shipped queries (file stems), sorted."""
    return sorted(p.name[: -len(".sql")] for p in _queries().iterdir() if p.name.endswith(".sql"))


def _text(name: str) -> str:
    if name not in query_names():
        raise ValueError(f"query {name!r}: unknown; expected one of {', '.join(query_names())}")
    return _queries().joinpath(f"{name}.sql").read_text(encoding="utf-8")


def query_params(name: str) -> dict[str, float]:
    """The numeric parameters of query ``name`` and their defaults (from ``-- param:`` lines)."""
    return {k: _number(name, k, v) for k, v in _PARAM.findall(_text(name))}


def _number(name: str, key: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ValueError(f"query {name!r}: {key}={value!r}, expected a number") from err
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"query {name!r}: {key}={value!r}, expected a finite number")
    return number


def _reports_literal(reports: str | os.PathLike[str]) -> str:
    """The reports root as it goes inside '...': absolute for local paths, quotes doubled."""
    text = os.fspath(reports)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" not in text:
        text = Path(text).expanduser().resolve().as_posix()
    return text.rstrip("/").replace("'", "''")


def load_query(
    name: str, reports: str | os.PathLike[str], *, with_views: bool = True, **params: float
) -> str:
    """Query ``name`` with ``{reports}`` set to ``reports`` (a directory or ``s3://bucket/prefix``)
    and its parameters set from ``params`` or their defaults, after the statements that create
    the views it reads (``with_views=False``: the query alone, for a connection that has them).

    Numbers are written as literals (so DuckDB can prune row groups on them); a parameter the
    query does not declare, or one that is not a finite number, is a ``ValueError``.
    """
    text = _text(name)
    if with_views:
        text = _views(text) + text
    declared = query_params(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(
            f"query {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"it takes {', '.join(declared) or 'none'}"
        )
    values = {k: _number(name, k, params.get(k, v)) for k, v in declared.items()}
    literals = {k: repr(int(v)) if v.is_integer() else repr(v) for k, v in values.items()}
    literals["reports"] = _reports_literal(reports)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in literals:
            raise ValueError(f"query {name!r}: placeholder {{{key}}} is not declared")
        return literals[key]

    return _PLACEHOLDER.sub(fill, text)
