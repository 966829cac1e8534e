"""Fixtures of the browser suite: a private JupyterLab server and headless Chromium (Playwright).

Nothing is installed here. The suite needs Debian's Chromium at ``/usr/bin/chromium``
(``apt-get install -y chromium``) and the ``playwright`` Python package (``pip install playwright``;
``playwright install`` is not needed and cannot download browsers here). When either is missing the
tests are skipped with the reason, unless ``METACOURSE_REQUIRE_BROWSER=1`` (CI), which turns the
skip into a failure.

The server listens on 127.0.0.1 only, on a free port, with token and XSRF checks off (safe on the
loopback interface only), and with its own settings, config and runtime folders in a temporary
directory. Its ``overrides.json`` turns notebook windowing off (every cell is in the page, so the
tests see all outputs), news and update checks off (no network) and autosave off. Kernels inherit
``METACOURSE_FAST=1``. Screenshots go to ``$METACOURSE_ARTIFACTS/browser`` (default
``logs/browser``, which git ignores): CI keeps them as artefacts of the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("METACOURSE_CHROMIUM", "/usr/bin/chromium"))
"""Debian's Chromium; ``METACOURSE_CHROMIUM`` points elsewhere."""
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
OVERRIDES = {
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}
SERVER_CONFIG = {
    "ServerApp": {
        "ip": "127.0.0.1",
        "open_browser": False,
        "allow_root": True,
        "disable_check_xsrf": True,
        "port_retries": 0,
        "jpserver_extensions": {"jupyter_lsp": False},
    },
    "IdentityProvider": {"token": ""},
    "PasswordIdentityProvider": {"hashed_password": ""},
    "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate", "news_url": None},
}


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing: apt-get install -y chromium (Debian)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: pip install playwright (no `playwright install`)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``browser`` tests with the reason when Chromium or Playwright is missing, unless
    ``METACOURSE_REQUIRE_BROWSER=1`` asks for them (they then fail on what is missing)."""
    reason = _missing()
    if reason is None or os.environ.get("METACOURSE_REQUIRE_BROWSER") == "1":
        return  # required: the fixtures fail with the reason
    skip = pytest.mark.skip(reason=f"browser tests need Chromium and Playwright: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def _require() -> None:
    reason = _missing()
    if reason is not None:
        pytest.fail(f"METACOURSE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go: ``$METACOURSE_ARTIFACTS/browser`` or ``logs/browser``."""
    base = Path(os.environ.get("METACOURSE_ARTIFACTS", ROOT / "logs"))
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on 127.0.0.1: yields (base URL, the folder it serves). Its log is
    kept beside the screenshots."""
    _require()
    base = tmp_path_factory.mktemp("jupyterlab")
    served, config, settings = base / "served", base / "config", base / "app-settings"
    for folder in (served, config, settings, base / "user-settings", base / "runtime", base / "workspaces"):
        folder.mkdir()
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES, indent=1))
    (config / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG, indent=1))
    port = _free_port()
    env = dict(
        os.environ,
        METACOURSE_FAST="1",
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTERLAB_SETTINGS_DIR=str(base / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
    )
    env.pop("MPLBACKEND", None)
    log = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", f"--ServerApp.port={port}", f"--ServerApp.root_dir={served}",
        f"--LabApp.app_settings_dir={settings}",
    ]
    with running_server(command, env, served, port, log, artifacts / "jupyterlab.log") as url:
        yield url, served


@contextlib.contextmanager
def running_server(command: list[str], env: dict[str, str], served: Path, port: int, log: Path,
                   kept_log: Path) -> Iterator[str]:
    """Run a Jupyter server ``command`` in ``served``, yield its URL once it answers, stop it at the
    end and keep its log as ``kept_log``."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=served)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.copy(log, kept_log)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright."""
    _require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
