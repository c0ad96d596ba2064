"""``lossopt report``: a sweep read back from MLflow and turned into a comparison.

Owns finding a sweep and its jobs in a store (``store``), what a report holds
(``ranking``), the statistics across seeds, tasks and budgets (``stats``), the
ranking, figures and console tables (``comparison``), the files it writes
(``files``) and the second stage that re-runs the best learning rates with more seeds
(``rerun``).

May import the plugin mechanism, one run (``core.tracking``, ``core.plots``) and
``core.app`` (the re-run composes ``lossopt train``'s config); only the CLI imports it.
"""
