"""A plugin installed with pip is found through its entry point and runs in a real bot.

botrun itself and the sample plugin (``tests/e2e/sample_plugin``) are
pip-installed, not editable, into a fresh venv. The venv sees the system
site-packages so that the dependencies already installed are reused and nothing
is downloaded; the system also holds botrun's editable install, so the test
checks that what runs is the venv's copy and that nothing is listed twice.
"""

from __future__ import annotations

import json
import re
import shutil
import site
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from sharder.testing import FakeDiscord

from .helpers import (
    REPO,
    SAMPLE_PLUGIN,
    STEP_TIMEOUT,
    assert_clean_log,
    bot_env,
    guild_message,
    run_cli,
    start_bot,
    wait_for_records,
    wait_until_ready,
    write_config,
)

pytestmark = pytest.mark.slow

PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "runtime", "sharder", "plugins")
SAMPLE_HOOKS = ["on_message_create", "on_ready", "on_shutdown", "on_startup"]
PIP_TIMEOUT = 60.0


def _copy_source(source: Path, target: Path, names: tuple[str, ...] | None = None) -> Path:
    """A clean copy to build from: pip builds in the source tree, and ours stays untouched."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    target.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if names is not None and entry.name not in names:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=ignore)
        elif entry.name not in ("build", "dist"):
            shutil.copy2(entry, target / entry.name)
    return target


_BUILD_TOOLS = """\
import importlib.metadata, json
def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
print(json.dumps({"setuptools": version("setuptools"), "wheel": version("wheel")}))
"""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _can_build_offline(project: Path, tools: dict[str, str | None]) -> bool:
    """Whether the setuptools the venv sees can build ``project`` into a wheel."""
    requires = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))["build-system"]
    wanted = next((r for r in requires["requires"] if r.startswith("setuptools")), "setuptools")
    match = re.search(r">=\s*([\d.]+)", wanted)
    setuptools = tools["setuptools"]
    if setuptools is None or (match and _version_tuple(setuptools) < _version_tuple(match[1])):
        return False
    # setuptools has its own bdist_wheel since 70.1; before, the wheel package has it.
    return _version_tuple(setuptools) >= (70, 1) or tools["wheel"] is not None


def _see_outer_venv(venv: Path) -> None:
    """Let ``venv`` see the packages of the venv pytest runs in, if it runs in one.

    ``--system-site-packages`` shows only the base interpreter's packages; a .pth
    file adds ours, after the venv's own, so that what pip installs there wins.
    """
    if sys.prefix == sys.base_prefix:
        return
    target = Path(sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv}))
    lines = [f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages()]
    (target / "_botrun_e2e_outer_venv.pth").write_text("".join(lines), encoding="utf-8")


def _inside(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


async def _make_venv(tmp_path: Path) -> Path:
    """A venv holding botrun and the sample plugin, both installed for real: its bin folder."""
    venv = tmp_path / "venv"
    # --without-pip: the pip already installed (seen through --system-site-packages)
    # installs into the venv when the venv's interpreter runs it; copying pip is slow.
    done = await run_cli(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.output
    _see_outer_venv(venv)
    python = venv / "bin" / "python"
    tools = await run_cli([python, "-c", _BUILD_TOOLS], cwd=tmp_path)
    assert tools.returncode == 0, tools.output
    project = _copy_source(REPO, tmp_path / "src" / "botrun", PROJECT_FILES)
    sample = _copy_source(SAMPLE_PLUGIN, tmp_path / "src" / "sample")
    pip: list[str | Path] = [
        python,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--disable-pip-version-check",
    ]
    for source in (project, sample):
        # Offline with the setuptools already installed if it can build the package
        # (setuptools>=70.1 can); else pip fetches one into an isolated build environment.
        offline = ["--no-build-isolation", "--no-index"]
        if not _can_build_offline(source, json.loads(tools.stdout)):
            offline = []
        done = await run_cli([*pip, *offline, source], cwd=tmp_path, timeout=PIP_TIMEOUT)
        assert done.returncode == 0, done.output
    return venv / "bin"


async def test_pip_installed_plugin_is_listed_and_its_hooks_run(
    discord: FakeDiscord, tmp_path: Path
) -> None:
    bin_dir = await _make_venv(tmp_path)
    venv = bin_dir.parent
    botrun = bin_dir / "botrun"
    assert botrun.is_file(), "pip did not install the botrun console script into the venv"

    # The venv's copies are the ones imported, not the editable checkout.
    where = await run_cli(
        [
            bin_dir / "python",
            "-c",
            "import json, importlib.metadata as m, runtime, botrun_plugins, botrun_e2e_sample\n"
            "print(json.dumps({'runtime': runtime.__file__,"
            " 'botrun_plugins': botrun_plugins.__file__,"
            " 'sample': botrun_e2e_sample.__file__,"
            " 'botrun_dist': str(m.distribution('botrun').locate_file(''))}))",
        ],
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.output
    for name, path in json.loads(where.stdout).items():
        assert _inside(path, venv), f"{name} comes from {path}"

    record = tmp_path / "record.jsonl"
    config = write_config(
        tmp_path,
        api_base=discord.api_base,
        record=record,
        plugin_paths=(),
        recording_plugins=("e2e_sample",),
    )

    listed = await run_cli([botrun, "plugins", config, "--json"], cwd=tmp_path)
    assert listed.returncode == 0, listed.output
    rows = json.loads(listed.stdout)
    names = [row["name"] for row in rows]
    assert sorted(names) == ["e2e_sample", "event_logger", "ping"]  # nothing listed twice
    by_name = {row["name"]: row for row in rows}
    sample = by_name["e2e_sample"]
    assert sample["source"] == "entry point"
    assert sample["origin"] == "botrun-e2e-sample 0.3.0: botrun_e2e_sample"
    assert sample["version"] == "0.3.0"
    assert sample["hooks"] == SAMPLE_HOOKS
    assert sample["loaded"]
    assert sample["error"] is None
    assert by_name["ping"]["source"] == "bundled"
    assert by_name["ping"]["loaded"]

    async with start_bot([botrun, config], cwd=tmp_path, env=bot_env()) as bot:
        await wait_until_ready(discord, bot, record, plugin="e2e_sample")
        message = guild_message("hello, installed plugin")
        await discord.dispatch(0, "MESSAGE_CREATE", message)
        [received] = await wait_for_records(
            record, bot, lambda r: r["hook"] == "on_message_create", timeout=STEP_TIMEOUT
        )
        assert received["id"] == message["id"]
        assert received["content"] == "hello, installed plugin"
        assert await bot.terminate() == 0, bot.output

    log = bot.stderr
    assert "plugins: 3 loaded, 0 failed, 0 disabled" in log
    assert "shutting down" in log
    assert_clean_log(bot.output)
    records = [json.loads(line) for line in record.read_text("utf-8").splitlines()]
    assert [r["hook"] for r in records] == [
        "on_startup",
        "on_ready",
        "on_message_create",
        "on_shutdown",
    ]
    assert {r["plugin"] for r in records} == {"e2e_sample"}
    # The bot that ran imported the plugin and the runtime from the venv.
    startup = records[0]
    assert _inside(startup["module"], venv), startup
    assert _inside(startup["runtime"], venv), startup
