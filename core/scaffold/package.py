"""``lossopt new-plugin DIR --kind KIND --name NAME``: a ready plugin package.

It writes a package that installs with pip and passes its own tests and ``lossopt
check`` as generated: ``pyproject.toml`` with the entry point, the plugin module with
its spec, tests that run the conformance rules, and a short README. The distribution
is named after DIR's last part; the import package is that name as an identifier.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from lossopt.core.errors import LossoptError, PluginError
from lossopt.core.registry import GROUPS, registry
from lossopt.core.scaffold.templates import INIT, PLUGINS, PYPROJECT, README, TESTS

__all__ = ["write_package"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _kind(kind: str) -> str:
    kind = "data" if kind == "dataset" else kind
    if kind not in PLUGINS:
        raise LossoptError(f"unknown kind '{kind}'; choose one of: {', '.join(PLUGINS)}.")
    return kind


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise LossoptError(
            f"plugin name '{name}': use lower-case letters, digits and '_', starting with a "
            f"letter (it is a config choice, {kind}={name}, and a Python name)."
        )
    taken = registry(kind).plugins()
    clash = next((p for p in taken if p.name == name), None)
    if clash is not None:
        raise PluginError(
            f"a {kind} named '{name}' is already registered by {clash.sources_text}; two "
            f"distributions with one name are a conflict lossopt never resolves. Choose "
            f"another name (e.g. prefix it with your package's)."
        )


def write_package(folder: str | Path, kind: str, name: str) -> list[Path]:
    """Write the package into ``folder`` (which must not exist or be empty); returns the
    files written."""
    kind = _kind(kind)
    _check_name(kind, name)
    root = Path(folder)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LossoptError(f"'{root}' exists and is not an empty folder; choose a new one.")
    dist = root.resolve().name
    package = re.sub(r"[^0-9a-zA-Z]+", "_", dist).strip("_").lower()
    if not package.isidentifier() or keyword.iskeyword(package):
        raise LossoptError(
            f"the folder name '{dist}' names the distribution and its package; use letters, "
            f"digits and '-' starting with a letter (e.g. my-lossopt-plugins)."
        )
    module, template, about = PLUGINS[kind]
    words = {
        "__NAME__": name,
        "__CLASS__": "".join(part.capitalize() for part in name.split("_")),
        "__DIST__": dist,
        "__PKG__": package,
        "__KINDREF__": f"{kind}/{name}",
        "__KIND__": kind,
        "__GROUP__": GROUPS[kind],
        "__MODULE__": module,
        "__ABOUT__": about,
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{package}/__init__.py": INIT,
        f"src/{package}/{module}.py": template,
        "tests/test_lossopt_rules.py": TESTS,
    }
    written = []
    for relative, text in files.items():
        for placeholder, value in words.items():
            text = text.replace(placeholder, value)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
