"""Sweeps: many jobs of one command, stacked where they can share a model.

Owns Hydra's side of ``lossopt train -m``: the vectorized launcher (``launcher``),
the stacked engine (``stacked`` trains K jobs as one model from the parts in
``stack``, with ``metrics`` for their epoch metrics), the record of each job
(``job``), the sweep's parent run and summary (``callback``), the Optuna search
(``search``) and one GPU per parallel worker (``gpu_slots``).

May import the plugin mechanism, one run (``core.train``, ``core.tracking``, …) and
``core.mlflow_ui``; never ``core.app``, ``core.report``, ``core.conformance`` or the
CLI, which stand on it.
"""
