"""The one runtime every entry point shares (issue 15).

- ``build``: the token hasher, normaliser, enricher and engine, built from ``Settings``
  one way for `detect`, `run`, training, the notebooks and the demo.
- ``lines``: the one loop from input lines to trusted events, one typed ``LineResult``
  per normalised line (events, format, skip, dead letter, trust refusals).
- ``detect``: `tokenwatch detect` over a file or stdin (``DetectRun``, ``run_detect``).
- ``files``: input, output and the dead-letter file created on first use.

Nothing is re-exported here: ``detect`` imports ``build`` and ``lines``, and a package
``__init__`` that imported it back would make a cycle.
"""
