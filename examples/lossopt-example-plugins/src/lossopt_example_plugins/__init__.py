"""Example third-party plugins for lossopt: the Poly-1 loss and the Lion optimizer.

Nothing is imported here: lossopt imports ``losses`` or ``optimizers`` through their
entry points only when the plugin is selected.
"""

__version__ = "0.1.0"
