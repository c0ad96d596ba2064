"""The conformance kit: the rules every plugin of a kind must keep.

Owns what a rule is and the helpers rules share (``rules``), the rules of each kind
(``loss_rules``, ``optimizer_rules``, ``part_rules`` for models, datasets and
schedulers), running them (``kit``, which ``lossopt.testing`` hands to plugin
authors) and ``lossopt check``'s tables (``view``).

May import the plugin mechanism, one run (the adapter, data), ``core.sweep.stack``
(a stackable plugin is checked in a real stack) and ``core.app`` (a plugin's config
composed as ``lossopt train`` composes it); only the CLI and ``lossopt.testing``
import it.
"""
