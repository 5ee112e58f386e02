"""botrun's bundled plugins.

Installed as the import package ``botrun_plugins`` (a top-level ``plugins``
package would collide with half of PyPI) and registered through botrun's own
``botrun.plugins`` entry points, like any third-party plugin.
"""
