"""lossopt's mechanism, in parts; each part imports only the parts below it.

- The plugin mechanism: ``errors``, ``checks``, ``specs``, ``registry``, ``configs``
  (and ``api``, the top-level ``lossopt`` functions). Imports nothing above it.
- One run: ``data``, ``adapter``, ``recipe``, ``module``, ``tracking``, ``plots``,
  ``train`` (validate → build → track → fit → test → summarize), ``composition``
  (the config ``lossopt train`` runs), ``job_context`` (what a job knows of its
  sweep), ``store`` (the MLflow store other processes share), the terminal's filters
  (``_quiet``), and ``mlflow_ui/`` (the tracking server and what the MLflow UI shows).
- ``sweep/``: launcher, stacked engine, a job's record, the sweep's parent run and
  summary, the Optuna search.
- ``app``: ``lossopt train``, the Hydra application over one run and sweeps.
- ``report/``, ``conformance/``, ``scaffold/``, ``plugin_view``: what the commands
  show and write; ``cli``: the ``lossopt`` command on top of everything.

``tests/test_architecture.py`` draws the imports and keeps this order.
"""
