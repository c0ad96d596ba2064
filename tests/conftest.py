"""Shared fixtures.

``fake_dist`` makes a distribution look installed without pip: a ``.dist-info``
folder (METADATA and entry_points.txt) and its modules are written to a fresh folder
that is put on ``sys.path``. That folder is exactly what importlib.metadata reads for
a real installation, so the registry discovers the fake one the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from lossopt.core.registry import refresh

FakeDist = Callable[..., Path]


@pytest.fixture
def fake_dist(tmp_path: Path) -> Iterator[FakeDist]:
    """A factory ``fake_dist(name, entry_points, modules=None, version="1.0")`` that
    installs a fake distribution for one test and returns its folder.

    entry_points: ``{group: {plugin_name: "module:attribute"}}``.
    modules: ``{dotted module name: source text}``; parent packages are created.

    Each call uses its own folder on ``sys.path``, so calling it twice with the same
    name shows one distribution through two paths (like a stale editable install).
    The registry is refreshed on each call and at teardown, when the modules the fake
    distributions added are also removed from ``sys.modules``.
    """
    monkeypatch = pytest.MonkeyPatch()  # undone before the final refresh
    top_levels: set[str] = set()
    roots: list[Path] = []

    def install(
        name: str,
        entry_points: Mapping[str, Mapping[str, str]],
        modules: Mapping[str, str] | None = None,
        version: str = "1.0",
    ) -> Path:
        root = tmp_path / "fake_dists" / str(len(roots))
        roots.append(root)
        dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        sections = [
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in eps.items())
            for group, eps in entry_points.items()
        ]
        (dist_info / "entry_points.txt").write_text("\n".join(sections))
        for module, text in (modules or {}).items():
            parts = module.split(".")
            top_levels.add(parts[0])
            for depth in range(1, len(parts)):
                package = root.joinpath(*parts[:depth])
                package.mkdir(exist_ok=True)
                (package / "__init__.py").touch()
            root.joinpath(*parts[:-1], f"{parts[-1]}.py").write_text(text)
        monkeypatch.syspath_prepend(str(root))
        refresh()
        return root

    refresh()
    try:
        yield install
    finally:
        monkeypatch.undo()
        for module in list(sys.modules):
            if module.partition(".")[0] in top_levels:
                del sys.modules[module]
        refresh()


LossoptCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def lossopt_cli() -> LossoptCli:
    """``lossopt_cli(*args, cwd=folder)``: run the ``lossopt`` command in a fresh
    process, output captured, tables 200 columns wide; a hung command fails the test
    after 300 s instead of stalling CI."""

    def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lossopt.core.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )

    return run
