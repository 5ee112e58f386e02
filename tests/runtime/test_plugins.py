"""Plugin discovery and loading: sources, filters, broken plugins, settings, safety."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Config, PluginsConfig, load_config
from runtime.errors import ConfigError, PluginError
from runtime.plugins import LOAD_PLUGINS_ENV, PluginSet, discover_plugins, load_plugins

SAMPLES = Path(__file__).parent / "plugins"
BUNDLED = {"event_logger", "ping"}


@pytest.fixture(autouse=True)
def _forget_drop_ins() -> Iterator[None]:
    """Each test starts without drop-ins in sys.modules and leaves none behind."""
    forget_drop_ins()
    yield
    forget_drop_ins()


def forget_drop_ins() -> None:
    for name in [n for n in sys.modules if n.startswith("botrun_dropin_")]:
        del sys.modules[name]


def drop_in_folder(tmp_path: Path, *samples: str) -> Path:
    """A private folder holding copies of these sample plugins."""
    folder = tmp_path / "plugins"
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    for sample in samples:
        source = SAMPLES / sample
        if source.is_dir():
            shutil.copytree(source, folder / sample)
        else:
            shutil.copy(source, folder / sample)
    return folder


def make_config(tmp_path: Path, *samples: str, **plugins: Any) -> Config:
    paths = (drop_in_folder(tmp_path, *samples),) if samples else ()
    return Config(plugins=PluginsConfig(paths=paths, **plugins), path=tmp_path / "config.toml")


def load(config: Config, *, strict: bool | None = None, **environ: str) -> PluginSet:
    return load_plugins(config, strict=strict, environ=environ)


# ---------------------------------------------------------------------------
# Discovery


def test_bundled_plugins_are_found_through_entry_points(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path))
    assert {p.name for p in plugins.plugins} >= BUNDLED
    for name in BUNDLED:
        plugin = plugins.by_name(name)
        assert plugin.source == "bundled"
        assert plugin.loaded
        assert plugin.origin.startswith("botrun ")
        assert plugin.origin.endswith(f"botrun_plugins.{name}")
        assert plugins.manager.get_plugin(name) is plugin.module
    assert plugins.by_name("ping").hooks == ["on_message_create"]


def test_drop_in_modules_and_packages_are_found_in_a_folder(tmp_path: Path) -> None:
    config = make_config(tmp_path, "greeter.py", "greeter_package")
    (config.plugins.paths[0] / "_private.py").write_text("raise RuntimeError\n")
    (config.plugins.paths[0] / "notes.txt").write_text("not a plugin\n")
    (config.plugins.paths[0] / "no_init").mkdir()
    found, clashes = discover_plugins(config)
    drop_ins = [p for p in found if p.source == "drop-in"]
    assert [p.name for p in drop_ins] == ["greeter", "greeter_package"]
    assert clashes == []
    assert all(p.module is None for p in found), "discovery imports nothing"

    plugins = load(config)
    greeter, package = plugins.by_name("greeter"), plugins.by_name("greeter_package")
    assert (greeter.loaded, package.loaded) == (True, True)
    assert greeter.origin == str(config.plugins.paths[0] / "greeter.py")
    assert greeter.version == "2.1.0"
    assert package.module is not None
    assert "botrun_dropin_greeter_package.replies" in sys.modules  # its relative import worked
    assert plugins.summary() == "plugins: 4 loaded, 0 failed, 0 disabled"


def test_bundled_plugins_come_first_in_registration_order(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "greeter.py"))
    names = [p.name for p in plugins.plugins]
    assert names.index("ping") < names.index("greeter")
    assert [name for name, _ in plugins.manager.list_name_plugin()] == names


def test_a_plugins_hooks_are_listed(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "greeter.py"))
    greeter = plugins.by_name("greeter")
    assert greeter.hooks == ["on_guild_create", "on_message_create"]
    assert greeter.as_dict() == {
        "name": "greeter",
        "version": "2.1.0",
        "source": "drop-in",
        "origin": greeter.origin,
        "enabled": True,
        "loaded": True,
        "hooks": ["on_guild_create", "on_message_create"],
        "error": None,
    }
    assert plugins.by_name("event_logger").hooks == [
        "on_close",
        "on_guild_create",
        "on_ready",
        "on_resumed",
    ]


# ---------------------------------------------------------------------------
# Broken plugins


def test_a_misspelled_hook_is_an_error_naming_the_plugin_and_the_real_hook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = load(make_config(tmp_path, "misspelled.py", "greeter.py"))
    misspelled = plugins.by_name("misspelled")
    assert not misspelled.loaded
    assert misspelled.error is not None
    assert "'misspelled'" in misspelled.error
    assert "'on_mesage_create'" in misspelled.error
    assert "did you mean 'on_message_create'?" in misspelled.error
    assert misspelled.error in caplog.text
    assert plugins.manager.get_plugin("misspelled") is None
    assert [p.name for p in plugins.failed] == ["misspelled"]
    assert plugins.by_name("greeter").loaded
    assert plugins.summary() == "plugins: 3 loaded, 1 failed, 0 disabled"


def test_strict_makes_a_misspelled_hook_fatal(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="on_message_create") as caught:
        load(make_config(tmp_path, "misspelled.py"), strict=True)
    assert caught.value.plugin == "misspelled"


def test_an_import_error_is_reported_by_name_and_the_plugin_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = load(make_config(tmp_path, "broken_import.py", "greeter.py"))
    broken = plugins.by_name("broken_import")
    assert broken.error is not None
    assert broken.error.startswith("plugin 'broken_import' (")
    assert "No module named 'botrun_test_no_such_dependency'" in broken.error
    assert not broken.loaded
    assert plugins.manager.get_plugin("broken_import") is None
    assert "botrun_dropin_broken_import" not in sys.modules
    assert "Traceback (most recent call last)" in caplog.text
    assert plugins.summary() == "plugins: 3 loaded, 1 failed, 0 disabled"


def test_strict_makes_an_import_error_fatal(tmp_path: Path) -> None:
    config = make_config(tmp_path, "broken_import.py", strict=True)
    with pytest.raises(PluginError, match="broken_import") as caught:
        load(config)  # strict from the config
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert load(config, strict=False).by_name("broken_import").error is not None


def test_a_hook_wrapper_is_refused(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "wrapper.py"))
    wrapper = plugins.by_name("wrapper")
    assert wrapper.error is not None
    assert "hook wrapper" in wrapper.error
    assert plugins.manager.get_plugin("wrapper") is None


def test_every_failure_is_counted_and_the_rest_still_load(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        "misspelled.py",
        "broken_import.py",
        "wrapper.py",
        "greeter.py",
        disabled=("ping",),
    )
    plugins = load(config)
    assert {p.name for p in plugins.loaded} == {"event_logger", "greeter"}
    assert {p.name for p in plugins.failed} == {"misspelled", "broken_import", "wrapper"}
    assert plugins.summary() == "plugins: 2 loaded, 3 failed, 1 disabled"


# ---------------------------------------------------------------------------
# Which plugins load


def test_enabled_loads_only_the_listed_plugins(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "greeter.py", "misspelled.py", enabled=("ping",)))
    assert [p.name for p in plugins.loaded] == ["ping"]
    assert {p.name for p in plugins.disabled} == {"event_logger", "greeter", "misspelled"}
    assert plugins.failed == []  # the broken one was never looked at
    assert plugins.summary() == "plugins: 1 loaded, 0 failed, 3 disabled"


def test_disabled_leaves_the_listed_plugins_out(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "greeter.py", disabled=("ping", "greeter")))
    assert [p.name for p in plugins.loaded] == ["event_logger"]
    assert not plugins.by_name("ping").enabled
    assert plugins.manager.get_plugin("ping") is None


def test_an_unknown_name_in_enabled_is_logged_or_fatal_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, enabled=("ping", "pnig"))
    plugins = load(config)
    assert [p.name for p in plugins.loaded] == ["ping"]
    assert "no plugin is called pnig" in caplog.text
    with pytest.raises(ConfigError, match="no plugin is called pnig") as caught:
        load(config, strict=True)
    assert caught.value.key == "plugins.enabled"


def test_the_environment_variable_overrides_the_config(tmp_path: Path) -> None:
    config = make_config(tmp_path, "greeter.py", enabled=("greeter",), disabled=("ping",))
    plugins = load(config, **{LOAD_PLUGINS_ENV: " ping , event_logger,"})
    assert {p.name for p in plugins.loaded} == {"ping", "event_logger"}
    assert [p.name for p in plugins.disabled] == ["greeter"]


def test_an_empty_environment_variable_loads_no_plugin(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "broken_import.py"), **{LOAD_PLUGINS_ENV: ""})
    assert plugins.loaded == []
    assert plugins.failed == []
    assert plugins.summary() == "plugins: 0 loaded, 0 failed, 3 disabled"


def test_the_environment_variable_is_read_from_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "ping")
    plugins = load_plugins(make_config(tmp_path))
    assert [p.name for p in plugins.loaded] == ["ping"]


def test_nothing_is_imported_for_a_disabled_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "botrun_plugins.ping", raising=False)
    config = make_config(tmp_path, "greeter.py", "broken_import.py")
    config = replace(config, plugins=replace(config.plugins, disabled=("ping", "broken_import")))
    plugins = load(config)
    assert "botrun_plugins.ping" not in sys.modules
    assert "botrun_dropin_broken_import" not in sys.modules
    assert plugins.by_name("broken_import").error is None
    assert "botrun_dropin_greeter" in sys.modules


# ---------------------------------------------------------------------------
# Name clashes


def test_a_name_clash_names_both_sources(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = drop_in_folder(tmp_path, "greeter.py")
    (folder / "greeter.py").rename(folder / "ping.py")
    config = make_config(tmp_path)
    config = replace(config, plugins=replace(config.plugins, paths=(folder,)))
    _, clashes = discover_plugins(config)
    [error] = clashes
    clash = str(error)
    assert "'ping' is used twice" in clash
    assert "bundled botrun" in clash
    assert f"drop-in {folder / 'ping.py'}" in clash

    plugins = load(config)
    assert clash in caplog.text
    assert plugins.by_name("ping").source == "bundled"  # the first one found stays
    with pytest.raises(PluginError, match="used twice") as caught:
        load(config, strict=True)
    assert caught.value.plugin == "ping"


def test_a_clash_between_two_drop_in_folders_names_both_files(tmp_path: Path) -> None:
    first = drop_in_folder(tmp_path / "a", "greeter.py")
    second = drop_in_folder(tmp_path / "b", "greeter.py")
    config = Config(plugins=PluginsConfig(paths=(first, second)), path=tmp_path / "c.toml")
    _, [error] = discover_plugins(config)
    clash = str(error)
    assert str(first / "greeter.py") in clash
    assert str(second / "greeter.py") in clash


# ---------------------------------------------------------------------------
# Settings


def test_settings_become_the_plugins_settings_dataclass(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, "configurable.py", settings={"configurable": {"threshold": 7, "channels": ["a"]}}
    )
    plugin = load(config).by_name("configurable")
    assert plugin.loaded
    assert type(plugin.settings).__name__ == "Settings"
    assert (plugin.settings.threshold, plugin.settings.channels) == (7, ["a"])


def test_defaults_apply_without_a_settings_table(tmp_path: Path) -> None:
    plugins = load(make_config(tmp_path, "configurable.py", "greeter.py"))
    assert plugins.by_name("configurable").settings.threshold == 3
    assert plugins.by_name("ping").settings.prefix == "!ping"
    assert plugins.by_name("greeter").settings == {}  # no Settings class: the table as a dict


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ({"threshold": "many"}, "plugins.configurable.threshold", "an integer"),
        ({"channels": [1]}, "plugins.configurable.channels[0]", "a string"),
        ({"treshold": 1}, "plugins.configurable", "threshold"),
    ],
)
def test_bad_settings_are_a_config_error_naming_the_key(
    tmp_path: Path, table: dict[str, Any], key: str, message: str
) -> None:
    config = make_config(tmp_path, "configurable.py", settings={"configurable": table})
    plugins = load(config)
    plugin = plugins.by_name("configurable")
    assert not plugin.loaded
    assert plugin.error is not None
    assert key in plugin.error
    assert message in plugin.error
    assert plugins.manager.get_plugin("configurable") is None
    with pytest.raises(ConfigError) as caught:
        load(config, strict=True)
    assert caught.value.key.startswith(key)
    assert message in caught.value.message


def test_settings_from_the_config_file_are_checked(tmp_path: Path) -> None:
    folder = drop_in_folder(tmp_path, "configurable.py")
    path = tmp_path / "botrun.toml"
    path.write_text(
        f'[plugins]\npaths = ["{folder.name}"]\n\n[plugins.configurable]\nthreshold = 2.5\n'
    )
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        load(config, strict=True)
    assert caught.value.file == str(path)
    assert caught.value.key == "plugins.configurable.threshold"


# ---------------------------------------------------------------------------
# Safety


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o757])
def test_a_world_writable_folder_is_refused(tmp_path: Path, mode: int) -> None:
    config = make_config(tmp_path, "greeter.py")
    folder = config.plugins.paths[0]
    folder.chmod(mode)
    with pytest.raises(ConfigError, match="writable by every user") as caught:
        load(config)
    assert caught.value.key == "plugins.paths"
    assert f"chmod o-w {folder}" in caught.value.message


def test_a_group_writable_folder_is_accepted(tmp_path: Path) -> None:
    config = make_config(tmp_path, "greeter.py")
    config.plugins.paths[0].chmod(0o775)
    assert load(config).by_name("greeter").loaded


def test_a_world_writable_plugin_file_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, "greeter.py", "configurable.py")
    (config.plugins.paths[0] / "greeter.py").chmod(0o666)
    plugins = load(config)
    greeter = plugins.by_name("greeter")
    assert greeter.error is not None
    assert "writable by every user" in greeter.error
    assert "botrun_dropin_greeter" not in sys.modules
    assert plugins.by_name("configurable").loaded
    with pytest.raises(ConfigError, match=r"greeter\.py is writable by every user"):
        load(config, strict=True)


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    config = Config(plugins=PluginsConfig(paths=(tmp_path / "nope",)), path=tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="is not a folder"):
        load(config)


def test_loading_logs_nothing_when_all_is_well(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="botrun.plugins")
    load(make_config(tmp_path, "greeter.py", "greeter_package"))
    assert caplog.records == []
