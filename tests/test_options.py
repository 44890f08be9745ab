"""Options shared by ``detect`` and ``scan``: declared once, the backend a choice from the registry."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from jobs.detect import detect
from jobs.scan import scan
from models.backends import REGISTRY


def test_detect_and_scan_refuse_an_unknown_backend_naming_the_registry(tmp_path):
    for command, args in (
        (detect, ["bundle", "scene.tif", "--out", str(tmp_path)]),
        (scan, [str(tmp_path), "--bundle", "b", "--reports", str(tmp_path)]),
    ):
        result = CliRunner().invoke(command, [*args, "--backend", "tflite"])
        assert result.exit_code == 2, result.output
        assert "'tflite' is not one of" in result.output
        assert all(name in result.output for name in REGISTRY)


def test_detect_and_scan_share_mode_backend_workers_address_and_capacity_wait():
    def params(command):
        return {p.name: (type(p.type).__name__, p.default, p.help) for p in command.params}

    shared = {"mode", "backend", "workers", "address", "capacity_wait_s"}
    assert {k: v for k, v in params(detect).items() if k in shared} == {
        k: v for k, v in params(scan).items() if k in shared
    }
    assert shared <= set(params(detect))


def test_options_do_not_import_the_cli_or_torch():
    code = "import sys, jobs.options; bad = {'jobs.cli', 'torch', 'ray'} & set(sys.modules); assert not bad, bad"
    subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=60, cwd=Path(__file__).parents[1]
    )


def test_detect_scan_and_train_share_one_progress_option():
    from jobs.train import train

    def progress(command):
        (p,) = [p for p in command.params if p.name == "progress"]
        return p.opts, p.secondary_opts, p.default, p.help

    assert progress(detect) == progress(scan) == progress(train)
    assert progress(detect)[:2] == (["--progress"], ["--no-progress"])


class _Stderr:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_defaults_to_whether_stderr_is_a_terminal(monkeypatch):
    import click

    from jobs.options import progress_option

    @click.command()
    @progress_option
    def command(progress):
        return progress

    for tty in (True, False):
        monkeypatch.setattr(sys, "stderr", _Stderr(tty))
        assert command.main([], standalone_mode=False) is tty
        assert command.main(["--progress"], standalone_mode=False) is True
        assert command.main(["--no-progress"], standalone_mode=False) is False
