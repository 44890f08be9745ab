"""A detect request checked against its bundle and this machine before any scene is read."""

from __future__ import annotations

import os

from models.archs import EXACT_FCN
from models.backends import EXTRAS as BACKEND_LIBRARIES
from models.backends import REGISTRY, BackendUnavailableError, require


class OptionError(ValueError):
    """A detect option that cannot work with this bundle or machine; says which and the fix."""


def check_detect(config, bundle) -> None:
    """Raise :class:`OptionError` if ``config`` (a ``DetectConfig``) cannot run ``bundle``."""
    check_backend(config.backend, local=not (config.address or os.environ.get("RAY_ADDRESS")))
    check_mode(config.mode, config.stride, bundle)


def check_backend(name: str, local: bool = True) -> None:
    """``name`` must be a registered backend, and where the run is ``local`` its library installed.

    On a cluster the actors' machines decide (their image may differ from the driver's); there
    a missing library fails each scene with the install hint instead.
    """
    if name not in REGISTRY:
        raise OptionError(f"--backend {name!r}: unknown; use one of {', '.join(sorted(REGISTRY))}")
    if local and name in BACKEND_LIBRARIES:
        try:
            require(name)
        except BackendUnavailableError as e:
            raise OptionError(f"--backend {name!r}: not available here: {e}") from e


def check_mode(mode: str, stride: int | None, bundle) -> None:
    """FCN mode scores at the bundle's own stride and only with nets whose FCN form is exact."""
    if mode != "fcn":
        return
    if stride not in (None, bundle.output_stride):
        raise OptionError(
            f"--stride {stride}: --mode fcn scores at the bundle's output stride "
            f"{bundle.output_stride}; drop --stride, or use --mode sliding for another stride"
        )
    if not EXACT_FCN.get(bundle.arch, False):
        raise OptionError(
            f"--mode fcn: bundle arch {bundle.arch!r} pads its convolutions, so its FCN scores "
            "near region borders would change with --region-size; use --mode sliding "
            "(exact for every arch) or a whalenet bundle"
        )
