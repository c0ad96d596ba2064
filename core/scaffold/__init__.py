"""``lossopt new-plugin``: a ready plugin package for a third-party author.

Owns writing the package (``package``) from its file templates (``templates``: the
entry point, a plugin with its spec, tests that run the conformance kit, a README).

May import the plugin mechanism (the registry's groups and names); only the CLI
imports it. The templates import ``lossopt.core.specs``, ``.checks``, ``.data`` and
``lossopt.testing`` as any plugin author's code does.
"""
