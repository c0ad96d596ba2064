"""The MLflow UI as a researcher sees a sweep: `lossopt ui` on a small sweep's store,
opened in headless Chromium (Debian's chromium and chromium-driver: `make browser`).

Screenshots are kept in tests/artifacts/ui/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "ui"
SWEEP = ["loss=cross_entropy,focal", "optimizer=sgd,adam", "optimizer.lr=0.01,0.1"]


def _chromedriver() -> str:
    driver = shutil.which("chromedriver")
    if driver is None:
        message = "needs Debian's chromium and chromium-driver: run 'make browser' (apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)  # on CI `make test` installs them: a skip would hide it
        pytest.skip(message)
    return driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(url lossopt ui printed, the sweep's runs) on an 8-job sweep's store."""
    driver = _chromedriver()
    cwd = tmp_path_factory.mktemp("ui")
    command = [sys.executable, "-m", "lossopt.core.cli"]
    short = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    done = subprocess.run(
        [*command, "train", "-m", *SWEEP, *short], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lossopt").experiment_id])

    port = _free_port()
    server = subprocess.Popen(
        [*command, "ui", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the UI's workers stop with it
    )
    try:
        url = next(line.strip() for line in server.stdout if line.startswith("http"))
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the MLflow UI did not start in 60 s"
                time.sleep(0.5)
        yield driver, url, runs
    finally:
        # `lossopt ui` runs `mlflow ui`, which starts uvicorn workers and job consumers:
        # stopping the command alone would leave them running.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser(ui):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    chrome = webdriver.Chrome(service=Service(ui[0]), options=options)
    yield chrome
    chrome.quit()


def _wait_for_text(browser, texts: list[str], timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(driver) -> str | bool:
        body = driver.find_element("tag name", "body").text
        return body if all(t in body for t in texts) else False

    return WebDriverWait(browser, timeout).until(shown)


_EXPANDER = "./ancestor::div[contains(@class,'ag-cell-wrapper')][1]//button"  # the "+"


def _shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / name))
    print(f"screenshot: {ARTIFACTS / name}")


def _row_text(browser, run_name: str) -> str:
    """The text of the runs table's row of ``run_name`` (ag-grid splits a row into a
    pinned and a scrolling part: both, by row index)."""
    from selenium.webdriver.common.by import By

    name = browser.find_element(By.XPATH, f"//a[normalize-space()='{run_name}']")
    row = name.find_element(By.XPATH, "./ancestor::div[@row-index][1]")
    parts = browser.find_elements(
        By.CSS_SELECTOR, f"div[row-index='{row.get_attribute('row-index')}']"
    )
    return " ".join(part.text for part in parts)


def test_lossopt_ui_opens_the_sweeps_runs_with_axes_and_objective_first(ui, browser):
    from selenium.webdriver.common.by import By

    _, url, runs = ui
    parent = next(r for r in runs if r.data.tags.get("lossopt.sweep") == "true")
    assert parent.info.run_name == "lossopt: loss×optimizer×lr (8)"
    assert "workflowType=machine_learning" in url and "viewStateShareKey=" in url
    browser.get(url)
    columns = ["loss.name", "optimizer.name", "optimizer.lr", "best_val/accuracy"]
    body = _wait_for_text(browser, ["Runs", "Model registry", parent.info.run_name, *columns])
    # The model-training view, not GenAI's; the shared view loaded (no error banner).
    assert "Observability" not in body and "Error loading shared view" not in body
    # The axes and the objective are the table's only param and metric columns (the UI
    # groups metrics before params, each in name order).
    headers = browser.find_elements(By.CSS_SELECTOR, "[data-testid^='sort-header-']")
    shown = {h.get_attribute("data-testid").removeprefix("sort-header-") for h in headers}
    assert shown == {"Run Name", "Created", "Duration", *columns}
    assert "cross_entropy,focal" in _row_text(browser, parent.info.run_name)
    _shot(browser, "runs.png")


def test_the_parent_lists_its_jobs_with_their_metric(ui, browser):
    from selenium.webdriver.common.by import By

    _, _, runs = ui
    parent = next(r for r in runs if r.data.tags.get("lossopt.sweep") == "true")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 8
    name = browser.find_element(By.XPATH, f"//a[normalize-space()='{parent.info.run_name}']")
    name.find_element(By.XPATH, _EXPANDER).click()
    _wait_for_text(browser, [c.info.run_name for c in children])
    for child in children:
        row = _row_text(browser, child.info.run_name)
        shown = [float(x) for x in re.findall(r"\b\d+\.\d+\b", row)]
        value = child.data.metrics["best_val/accuracy"]
        assert any(abs(x - value) < 0.01 for x in shown), (child.info.run_name, value, row)
    _shot(browser, "runs-expanded.png")


def test_comparing_the_jobs_plots_the_sweeps_axes_and_objective(ui, browser):
    """MLflow's compare page draws its parallel-coordinates plot over the first three
    differing params in name order and the run's first metric: the first three are
    the sweep's axes (as ``axis/…`` params), not loss.gamma or loss.label_smoothing."""
    import json
    import urllib.parse

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, url, runs = ui
    parent = next(r for r in runs if r.data.tags.get("lossopt.sweep") == "true")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    for child in children:
        axes = {k: v for k, v in child.data.params.items() if k.startswith("axis/")}
        expected = {
            "loss": "loss.name",
            "optimizer": "optimizer.name",
            "optimizer.lr": "optimizer.lr",
        }
        assert axes == {f"axis/{a}": child.data.params[k] for a, k in expected.items()}
    ids = json.dumps([c.info.run_id for c in children])
    experiments = json.dumps([parent.info.experiment_id])
    base = url.split("/#/", 1)[0]
    query = urllib.parse.urlencode({"runs": ids, "experiments": experiments})
    browser.get(f"{base}/#/compare-runs?{query}")

    def titles(driver) -> list[str] | bool:
        found = driver.find_elements(By.CSS_SELECTOR, ".parcoords .axis-title")
        texts = [t.get_attribute("textContent") for t in found]
        return texts if len(texts) >= 4 else False

    shown = WebDriverWait(browser, 60).until(titles)
    # The metric is the first one MLflow stored for the run (val/loss, logged each
    # epoch): MLflow's order, not a name order that lossopt could put the objective in.
    assert shown[:3] == ["axis/loss", "axis/optimizer", "axis/optimizer.lr"]
    assert len(shown) == 4 and shown[3].startswith(("val/", "train/", "best_"))
    _shot(browser, "compare.png")
