"""The course as a learner meets it: `make lab`, a browser, notebook 02, Run All.

This is not collected by `make test` (it needs Chromium); `make browser-test`
runs it, and so does CI. It starts JupyterLab exactly as `make lab` does, on
loopback with a token, opens notebook 02 in headless Chromium, clears its
saved outputs, runs every cell in the page, and checks that the greet
plugin's words appear under the cells, computed now by a live kernel. The
screenshot is kept in build/browser/ (a CI artifact).

Chromium runs with the flags that keep it off the network: this machine has
no network but loopback, and the browser must not try to reach one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from kernel_profile import learner_env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "browser"
EXPECTED = "Hello from the greet plugin"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--window-size=1400,1000", "--no-first-run", "--disable-quic",
    # Off the network: no background requests, no component or sync traffic.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
    "--no-pings", "--disable-domain-reliability",
]
START_TIMEOUT = 180          # seconds: JupyterLab's first start builds nothing, but be kind
RUN_TIMEOUT = 240            # seconds for notebook 02 to run every cell

webdriver = pytest.importorskip("selenium.webdriver")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (make browser-test installs them)",
                allow_module_level=True)


def _notebook() -> Path:
    found = sorted((ROOT / "notebooks").glob("02-*.ipynb"))
    if not found:
        pytest.fail("notebook 02 (notebooks/02-*.ipynb) is missing")
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def lab(tmp_path):
    """`make lab` on 127.0.0.1 with a token and autosave off; yields (base url, token)."""
    port, token = _free_port(), hashlib.sha256(os.urandom(16)).hexdigest()[:32]
    settings = tmp_path / "settings"
    docmanager = settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    # The test must not save the notebook it runs: that file is the course.
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    # Every cell in the page (JupyterLab otherwise renders only those near the
    # viewport), so the check below sees every output.
    notebook_settings = settings / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    # No news or update checks: they would reach for the network, and their
    # prompt would cover the screenshot.
    apputils = settings / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # The learner's lab: its kernels without the test kernels' profile (kernel_profile.py).
    env = dict(learner_env(os.environ), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    lab_args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
                f"--ServerApp.port_retries=0 --IdentityProvider.token={token} "
                "--LabApp.expose_app_in_browser=True")
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={lab_args}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"make lab exited ({proc.returncode}):\n"
                        f"{(tmp_path / 'lab.log').read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_for(up, START_TIMEOUT, "make lab to serve the course")
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript run in the page; `window.jupyterapp` is JupyterLab itself
# (exposed by --LabApp.expose_app_in_browser).
PANEL = "const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
KERNEL_IDLE = PANEL + """
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
                   && panel.sessionContext.session.kernel;
    return !!(kernel && kernel.status === 'idle' && panel.content.widgets.length);"""
CELLS = PANEL + """
    return panel.content.widgets.filter(c => c.model.type === 'code').map(c => ({
        count: c.model.executionCount,
        source: c.model.sharedModel.getSource().slice(0, 80),
        expectsError: (c.model.getMetadata('tags') || []).includes('raises-exception'),
        errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                 .map(o => o.ename + ': ' + o.evalue)}));"""


def test_make_lab_opens_on_notebook_00_with_the_whole_course(lab):
    base, token = lab
    with urllib.request.urlopen(f"{base}/?token={token}", timeout=10) as r:
        assert r.url.split("?")[0].endswith("/lab/tree/notebooks/00-the-plugin-problem.ipynb")
    with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=10) as r:
        top = {item["name"] for item in json.load(r)["content"]}
    assert {"notebooks", "exercises", "solutions"} <= top


def test_notebook_02_runs_in_jupyterlab_in_a_browser(lab, browser):
    notebook = _notebook()
    saved = notebook.read_bytes()
    base, token = lab
    browser.get(f"{base}/lab/tree/notebooks/{notebook.name}?token={token}")
    _wait_for(lambda: browser.execute_script(KERNEL_IDLE), START_TIMEOUT,
              f"{notebook.name} to open with an idle kernel")

    # Outputs saved in the file would make the check pass without running anything.
    browser.execute_script("return window.jupyterapp.commands.execute("
                           "'notebook:clear-all-cell-outputs')")
    _wait_for(lambda: EXPECTED not in browser.find_element("tag name", "body").text, 10,
              "the saved outputs to be cleared")

    browser.execute_script("return window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def all_ran():
        cells = browser.execute_script(CELLS)
        done = all(c["count"] is not None for c in cells)
        return cells if done and browser.execute_script(KERNEL_IDLE) else None

    cells = _wait_for(all_ran, RUN_TIMEOUT, "every cell of notebook 02 to run", interval=1)
    unexpected = [(c["source"], c["errors"]) for c in cells if c["errors"] and not c["expectsError"]]
    assert not unexpected, f"cells raised in the browser: {unexpected}"

    # Bring the greeting into view and keep a picture of it.
    browser.execute_script("""
        const hit = [...document.querySelectorAll('.jp-OutputArea-output')]
            .reverse().find(e => e.innerText.includes(arguments[0]));
        if (hit) hit.scrollIntoView({block: 'center'});""", EXPECTED)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{notebook.stem}.png"
    browser.save_screenshot(str(shot))
    outputs = [e.text for e in browser.find_elements("css selector", ".jp-OutputArea-output")]
    assert any(EXPECTED in text for text in outputs), (
        f"'{EXPECTED}' did not appear under any cell; screenshot: {shot.relative_to(ROOT)}")
    assert shot.stat().st_size > 10_000
    assert notebook.read_bytes() == saved, "the browser test must not modify the notebook"
