"""botrun's benchmark suite: ``python -m benchmarks [--quick] [--only NAME,...]``.

See BENCHMARKS.md for what each benchmark measures and the published figures.
``replay_server.py`` is the Discord stand-in (its own process), ``_payloads.py``
builds the traffic, ``bench_*.py`` are the benchmarks, ``_worker.py`` runs one
measurement per process. ``bench_rest.py`` (the REST client) runs on its own.
"""
