"""The optional C parts of the receive path; everything else is in pyproject.toml.

``optional=True``: where no C compiler (or no zlib.h) is at hand the install still
succeeds, and ``sharder._websocket`` and ``sharder._codec`` use the same loops in
Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("sharder._framing", ["sharder/_framing.c"], optional=True),
        Extension("sharder._zlibstream", ["sharder/_zlibstream.c"], libraries=["z"], optional=True),
    ]
)
