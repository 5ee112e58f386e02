"""What ``pip install .`` puts in the wheel: every package of the source tree.

The editable install the tests run on maps whole folders, so a package missing
from pyproject's list only shows on a real install (``pip install .``, the
quick start's first command): ``runtime.rest`` once went missing that way.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    listed = set(setuptools["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("sharder", "runtime")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"missing from [tool.setuptools] packages: {on_disk - listed}"
    for package in listed:
        top, _, rest = package.partition(".")
        folder = ROOT / folders.get(top, top) / rest.replace(".", "/")
        assert (folder / "__init__.py").is_file(), f"{package} is listed but has no folder"
