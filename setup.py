"""The optional C parts of the receive path; everything else is in pyproject.toml.

``optional=True``: where no C compiler is at hand the install still succeeds, and
``sharder._websocket`` and ``sharder._codec`` use the same loops in Python.

``sharder._zlibstream`` inflates with zlib-ng's portable C code, compiled in from
``third_party/zlib-ng`` (inflate and what it needs, unmodified): 12 % less time per
message than the system's zlib on gateway traffic, and no zlib headers needed to
build. See ``third_party/zlib-ng/README.botrun.md``.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

ZLIB_NG = Path("third_party/zlib-ng")
ZLIB_NG_SOURCES = [
    "arch/generic/adler32_c.c",
    "arch/generic/adler32_fold_c.c",
    "arch/generic/chunkset_c.c",
    "arch/generic/compare256_c.c",
    "arch/generic/crc32_braid_c.c",
    "arch/generic/crc32_fold_c.c",
    "arch/generic/slide_hash_c.c",
    "cpu_features.c",
    "crc32.c",
    "functable.c",
    "inflate.c",
    "inftrees.c",
    "zutil.c",
]
# What zlib-ng's own configure defines for a generic build (--without-optimizations)
# with GCC or Clang; MSVC gets only the portable fallbacks. Hidden visibility keeps
# zlib-ng's functions out of the module's exported symbols.
ZLIB_NG_MACROS = [("WITH_ALL_FALLBACKS", "1"), ("NDEBUG", "1")]
ZLIB_NG_FLAGS: list[str] = []
if sys.platform != "win32":
    ZLIB_NG_FLAGS.append("-fvisibility=hidden")
    ZLIB_NG_MACROS += [
        (name, "1")
        for name in (
            "HAVE_UNISTD_H",
            "HAVE_VISIBILITY_HIDDEN",
            "HAVE_VISIBILITY_INTERNAL",
            "HAVE_ATTRIBUTE_ALIGNED",
            "HAVE_BUILTIN_ASSUME_ALIGNED",
            "HAVE_BUILTIN_CTZ",
            "HAVE_BUILTIN_CTZLL",
        )
    ]

setup(
    ext_modules=[
        Extension("sharder._framing", ["sharder/_framing.c"], optional=True),
        Extension(
            "sharder._zlibstream",
            ["sharder/_zlibstream.c", *(str(ZLIB_NG / source) for source in ZLIB_NG_SOURCES)],
            include_dirs=[str(ZLIB_NG)],
            define_macros=ZLIB_NG_MACROS,
            extra_compile_args=ZLIB_NG_FLAGS,
            optional=True,
        ),
    ]
)
