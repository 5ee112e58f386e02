"""Session-wide runs shared by the reliability tests.

The soak and the two restart scenarios run once each: their own tests assert
on the figures, and the security test scans everything they printed or wrote
for the token.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import anyio
import pytest

from benchmarks.soak import SoakOptions, SoakResult, run_soak
from tests.reliability.scenarios import RestartRun, run_sigkill_restart, run_sigterm_restart

SOAK_SECONDS = float(os.environ.get("BOTRUN_SOAK_SECONDS", "55"))
"""The soak's fault phase in CI; the settling after it brings the run to about 60 s."""


def _log(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr)


@pytest.fixture(scope="session")
def soak_result(tmp_path_factory: pytest.TempPathFactory) -> SoakResult:
    seed = os.environ.get("BOTRUN_SOAK_SEED")
    options = SoakOptions(
        duration=SOAK_SECONDS,
        workdir=tmp_path_factory.mktemp("soak"),
        seed=int(seed) if seed else None,
        warmup=5.0,
    )
    return anyio.run(functools.partial(run_soak, options, log=_log))


@pytest.fixture(scope="session")
def sigterm_run(tmp_path_factory: pytest.TempPathFactory) -> RestartRun:
    workdir: Path = tmp_path_factory.mktemp("sigterm")
    return anyio.run(run_sigterm_restart, workdir)


@pytest.fixture(scope="session")
def sigkill_run(tmp_path_factory: pytest.TempPathFactory) -> RestartRun:
    workdir: Path = tmp_path_factory.mktemp("sigkill")
    return anyio.run(run_sigkill_restart, workdir)
