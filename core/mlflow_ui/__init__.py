"""MLflow as lossopt's users see it: ``lossopt server`` and ``lossopt ui``.

Owns the tracking server a team or a cluster shares (``server``: ``mlflow server``
with lossopt's settings and its database driver checked) and what a sweep looks like
in MLflow's UI (``view``: the training view, the sweep's name and axes, the shared
view the UI opens on).

May import the plugin mechanism only; the sweep's callback (``core.sweep``) names
and lays out its parent run through ``view``, the CLI starts both.
"""
