"""The optional C part of the frame parser; everything else is in pyproject.toml.

``optional=True``: where no C compiler is at hand the install still succeeds, and
``sharder._websocket`` uses the same loop in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sharder._framing", ["sharder/_framing.c"], optional=True)])
