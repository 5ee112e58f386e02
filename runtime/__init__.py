"""botrun's runtime: config, plugin contract, REST and the bot that runs them.

Plugins import the hook marker from here: ``from runtime import hookimpl``.
"""

from runtime.dispatch import in_thread
from runtime.hookspecs import hookimpl, hookspec

__all__ = ["__version__", "hookimpl", "hookspec", "in_thread"]

__version__ = "0.1.0"
