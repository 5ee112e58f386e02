"""The plugin contract: generated, complete, documented, and strict about names."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest

from runtime import hookimpl, hookspecs
from runtime.hookspecs import EVENT_HOOKS, HOOK_NAMES, suggest_hook
from sharder._constants import DISPATCH_EVENTS, EVENT_INTENTS, Intents

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "generate_hookspecs.py"
LIFECYCLE = {"on_startup", "on_shutdown", "on_connect", "on_ready", "on_resumed", "on_close"}
LIFECYCLE |= {"on_debug", "on_error"}


def specs() -> dict[str, Any]:
    return {
        name: obj
        for name, obj in vars(hookspecs).items()
        if inspect.isfunction(obj) and hasattr(obj, "botrun_spec")
    }


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("botrun")
    pm.add_hookspecs(hookspecs)
    return pm


def load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("generate_hookspecs", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Generated


def test_the_generated_file_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "hookspecs.py"
    stale.write_text("# old\n", encoding="utf-8")
    assert load_generator().main(["--check", "--output", str(stale)]) == 1
    assert load_generator().main(["--output", str(stale)]) == 0
    assert load_generator().main(["--check", "--output", str(stale)]) == 0


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_the_generated_file_is_ruff_clean() -> None:
    path = str(REPO / "runtime" / "hookspecs.py")
    for command in (["ruff", "format", "--check", path], ["ruff", "check", path]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# Complete


def test_every_dispatch_event_has_exactly_one_hook() -> None:
    names = specs()
    assert set(EVENT_HOOKS) == set(DISPATCH_EVENTS)
    assert len(set(EVENT_HOOKS.values())) == len(DISPATCH_EVENTS)
    for event in DISPATCH_EVENTS:
        assert EVENT_HOOKS[event] in names, event
    assert EVENT_HOOKS["MESSAGE_CREATE"] == "on_message_create"


def test_ready_and_resumed_are_the_lifecycle_hooks() -> None:
    assert EVENT_HOOKS["READY"] == "on_ready"
    assert EVENT_HOOKS["RESUMED"] == "on_resumed"
    docstring = hookspecs.__doc__ or ""
    assert "READY and RESUMED" in docstring


def test_hook_names_are_exactly_the_specs() -> None:
    assert set(specs()) == HOOK_NAMES
    assert LIFECYCLE | {"on_event"} | set(EVENT_HOOKS.values()) == HOOK_NAMES
    pm = plugin_manager()
    assert {name for name in vars(pm.hook) if name.startswith("on_")} == HOOK_NAMES


@pytest.mark.parametrize("name", sorted(HOOK_NAMES))
def test_every_spec_is_documented_with_its_arguments(name: str) -> None:
    spec = specs()[name]
    docstring = inspect.getdoc(spec) or ""
    assert "Args:" in docstring
    for argument in inspect.signature(spec).parameters:
        assert f"{argument}:" in docstring, (name, argument)


@pytest.mark.parametrize("event", [e for e in DISPATCH_EVENTS if e not in ("READY", "RESUMED")])
def test_every_dispatch_spec_names_its_event_and_intents(event: str) -> None:
    docstring = " ".join((inspect.getdoc(specs()[EVENT_HOOKS[event]]) or "").split())
    assert docstring.startswith(f"{event}: ")
    intents = EVENT_INTENTS[event]
    if not intents:
        assert "Always sent" in docstring
    for intent in intents:
        privileged = Intents[intent] in Intents.privileged()
        assert intent + (" (privileged)" if privileged else "") in docstring


# ---------------------------------------------------------------------------
# Plugins against the contract


def test_a_plugin_may_take_any_subset_of_the_arguments_and_be_async() -> None:
    seen: list[tuple[str, Any]] = []

    class Plugin:
        @hookimpl
        def on_message_create(self, data: dict[str, Any]) -> None:
            seen.append(("message", data))

        @hookimpl
        async def on_ready(self, bot: Any, shard_id: int) -> None:
            seen.append(("ready", shard_id))

    pm = plugin_manager()
    pm.register(Plugin(), name="sample")
    pm.check_pending()
    pm.hook.on_message_create(bot=None, data={"content": "hi"}, shard_id=0)
    results = pm.hook.on_ready(bot=None, data={}, shard_id=3)
    for coroutine in results:
        coroutine.close()  # Awaiting them is the runtime's job.
    assert seen == [("message", {"content": "hi"})]
    assert len(results) == 1


def test_a_misspelled_hook_fails_check_pending_with_a_suggestion() -> None:
    class Plugin:
        @hookimpl
        def on_mesage_create(self, data: dict[str, Any]) -> None:
            pass

    pm = plugin_manager()
    pm.register(Plugin(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="on_mesage_create"):
        pm.check_pending()
    assert suggest_hook("on_mesage_create") == "on_message_create"


def test_an_implementation_with_an_unknown_argument_is_rejected() -> None:
    class Plugin:
        @hookimpl
        def on_message_create(self, message: dict[str, Any]) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="message"):
        plugin_manager().register(Plugin(), name="bad-argument")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("on_message_create", "on_message_create"),
        ("on_messagecreate", "on_message_create"),
        ("on_guild_memeber_add", "on_guild_member_add"),
        ("on_startpu", "on_startup"),
        ("xyz", None),
    ],
)
def test_suggest_hook(name: str, expected: str | None) -> None:
    assert suggest_hook(name) == expected
