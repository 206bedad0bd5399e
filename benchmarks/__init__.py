"""rnncore's benchmark suite: pytest-benchmark files plus the ``python -m benchmarks`` report.

``benchmarks.report.load_results(dir)`` and ``benchmarks.report.run_quick_benchmark()`` are
what the app's Benchmarks page calls; the file layout is described in benchmarks/README.md.
"""
