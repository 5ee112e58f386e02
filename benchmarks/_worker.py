"""One measurement in a fresh process: ``python -m benchmarks._worker '<json request>'``.

The request names a ``module:function`` of this package and its ``params``.
Before anything else is imported, ``"json": "json"`` hides orjson
(``sys.modules["orjson"] = None``), so botrun's codec falls back to the
standard library exactly as it does where orjson is not installed. The
function's result is printed as one line, ``RESULT {...}``, and the process
then exits at once, so that a peer library that lingers on shutdown cannot
stall the suite.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

RESULT_PREFIX = "RESULT "


def main() -> None:
    request = json.loads(sys.argv[1])
    if request.get("json") == "json":
        sys.modules["orjson"] = None  # type: ignore[assignment]  # makes "import orjson" fail
    if hasattr(os, "sched_setaffinity"):  # Linux: raise the limit of open files
        import resource

        # A thousand shards need a thousand sockets: lift the soft limit to the hard one.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cpu = request.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    module_name, _, function_name = request["task"].partition(":")
    function = getattr(importlib.import_module(f"benchmarks.{module_name}"), function_name)
    result = function(request["params"])
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
