"""The optional C parts of the receive path; everything else is in pyproject.toml.

``optional=True``: where no C compiler is at hand the install still succeeds, and
``sharder._websocket`` and ``sharder._codec`` use the same loops in Python.

``sharder._zlibstream`` inflates with libdeflate's decompressor, compiled in from
``third_party/libdeflate`` with a small patch for streams flushed after each
message (``botrun.patch``): see ``third_party/libdeflate/README.botrun.md``.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

LIBDEFLATE = Path("third_party/libdeflate")
LIBDEFLATE_SOURCES = [
    "lib/deflate_decompress.c",
    "lib/utils.c",
    "lib/x86/cpu_features.c",  # empty on other machines
]
# Hidden visibility keeps libdeflate's functions out of the module's exported symbols;
# its code compares signed and unsigned lengths on purpose, which Python's flags warn of.
LIBDEFLATE_FLAGS = [] if sys.platform == "win32" else ["-fvisibility=hidden", "-Wno-sign-compare"]

setup(
    ext_modules=[
        Extension("sharder._framing", ["sharder/_framing.c"], optional=True),
        Extension(
            "sharder._zlibstream",
            ["sharder/_zlibstream.c", *(str(LIBDEFLATE / source) for source in LIBDEFLATE_SOURCES)],
            include_dirs=[str(LIBDEFLATE)],
            extra_compile_args=LIBDEFLATE_FLAGS,
            optional=True,
        ),
    ]
)
