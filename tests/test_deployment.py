"""The production units in deploy/systemd restart what dies and run what `make run` runs."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

from slaboard.run import worker_argv
from slaboard.settings import BASE_DIR

UNITS = BASE_DIR / "deploy" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_every_unit_is_restarted_whatever_made_it_stop() -> None:
    names = sorted(path.name for path in UNITS.glob("*.service"))
    assert names == ["slaboard-beat.service", "slaboard-web.service", "slaboard-worker@.service"]
    for name in names:
        parsed = unit(name)
        assert parsed["Service"]["Restart"] == "always", name
        assert parsed["Unit"]["StartLimitIntervalSec"] == "0", name  # never gives up


def test_the_worker_unit_runs_a_queue_as_make_run_does() -> None:
    argv = shlex.split(unit("slaboard-worker@.service")["Service"]["ExecStart"])
    local = worker_argv("%i", concurrency=2)
    assert argv[argv.index("worker") :] == [
        {"%i@%h": "%i@%H"}.get(arg, arg) for arg in local[local.index("worker") :]
    ]


def test_the_units_are_valid_for_systemd(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not a systemd machine: the parsing tests above still ran
        return
    for path in UNITS.glob("*.service"):
        instance = tmp_path / path.name.replace("@.", "@realtime.")
        instance.write_text(path.read_text())
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(instance)], capture_output=True, text=True
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and "is not executable" not in line  # /srv/slaboard is not here
        ]
        assert not problems, problems
