"""Benchmarks (not part of the default test suite), one command each, run from the repo root as
``python -m benchmarks.<name>`` (imported as ``benchmarks.<name>``, never ``vlmrl.benchmarks``). Each writes its
headline numbers to ``benchmarks/results/<topic>.json`` (benchmarks/record.py; ``--no-record`` skips it);
today's numbers on one page: benchmarks/RESULTS.md, the dated history: benchmarks/results/history.md."""
