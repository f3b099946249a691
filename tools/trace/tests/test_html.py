"""``html``: the self-contained page loads in a real headless browser (Debian's
chromium, driven through chromedriver's WebDriver protocol) without errors or
network requests, and shows the expected elements."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from refrpc_trace import open_run, page_data, render_html

from tracekit import borrowing_run

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs chromium and chromedriver "
           "(Debian: apt-get install chromium chromium-driver); not installed here")


class WebDriver:
    """The few WebDriver commands this test needs, over plain HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def console(self) -> list[dict[str, Any]]:
        return self.call("POST", f"/session/{self.session}/se/log", {"type": "browser"})

    def quit(self) -> None:
        self.call("DELETE", f"/session/{self.session}")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for chromedriver to listen, bounded
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                    if json.loads(r.read())["value"]["ready"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip(f"chromedriver did not start (exit {proc.poll()})")
            time.sleep(0.1)  # polling a socket that is not listening yet; bounded by the deadline
        driver = WebDriver(port)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def load(browser: WebDriver, page: Path) -> dict[str, Any]:
    browser.go(page.as_uri())
    state = browser.js("""
        return {
          rendered: document.body.getAttribute('data-rendered'),
          errors: window.__traceErrors,
          peers: Array.from(document.querySelectorAll('#sequence g.peerhead text')).map(e => e.firstChild.nodeValue),
          messages: document.querySelectorAll('#sequence g.msg').length,
          notReceived: document.querySelectorAll('#sequence g.msg.not-received').length,
          events: document.querySelectorAll('#sequence g.event').length,
          findings: Array.from(document.querySelectorAll('#findings li.finding')).map(e => e.dataset.requirement),
          noFindings: document.querySelector('#findings p.ok') !== null,
          objects: Array.from(document.querySelectorAll('#objects .object')).map(e => e.dataset.object),
          marks: document.querySelectorAll('#objects .mark').length,
          resources: performance.getEntriesByType('resource').map(e => e.name),
        };""")
    state["console"] = [e for e in browser.console() if e.get("level") in ("SEVERE", "WARNING")]
    return state


@needs_browser
def test_the_page_of_a_clean_run_loads_and_draws_everything(browser: WebDriver, tmp_path: Path, cli) -> None:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    code, _, _ = cli("html", "-o", tmp_path / "run.html", tmp_path / "run")
    assert code == 0
    state = load(browser, tmp_path / "run.html")
    assert state["console"] == [] and state["errors"] == []
    assert state["rendered"] == "1"
    assert state["resources"] == []  # self-contained: nothing fetched
    assert state["peers"] == ["driver", "worker-1"]
    assert state["messages"] == 10 and state["notReceived"] == 0
    assert state["events"] == 1  # worker-1 declares the driver dead after its Goodbye
    assert state["noFindings"] and state["findings"] == []
    assert state["objects"] == ["driver.d1.1.r0", "driver.d1.2", "driver.d1.3.r0"]
    assert state["marks"] >= 3 + 7
    # the filter box narrows the diagram
    shown = browser.js("""
        const f = document.getElementById('filter');
        f.value = 'ReleaseBorrows'; f.dispatchEvent(new Event('input'));
        return document.querySelectorAll('#sequence g.msg').length;""")
    assert shown == 1


@needs_browser
def test_the_page_of_a_faulty_run_lists_the_findings(browser: WebDriver, tmp_path: Path) -> None:
    net, _, _ = borrowing_run(release=False)
    net.write(tmp_path / "run")
    data = page_data(open_run([tmp_path / "run"]))
    page = tmp_path / "faulty.html"
    page.write_text(render_html(data, "a leak </script><script>alert(1)</script>"))
    state = load(browser, page)
    assert state["console"] == [] and state["errors"] == [] and state["rendered"] == "1"
    assert state["findings"] == ["BOR-005"]
    title = browser.js("return document.title")
    assert title == "a leak </script><script>alert(1)</script>"  # escaped, not run


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    text = render_html(page_data(open_run([tmp_path / "run"])))
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "<link" not in text and "src=" not in text


@needs_browser
def test_the_browser_check_sees_a_script_error(browser: WebDriver, tmp_path: Path) -> None:
    # the two tests above would catch a broken page: a page that throws is reported
    page = tmp_path / "broken.html"
    page.write_text(render_html(page_data(open_run([_clean(tmp_path)])))
                    .replace('document.body.setAttribute("data-rendered", "1");', 'null.boom();'))
    state = load(browser, page)
    assert state["rendered"] is None
    assert state["errors"] and any("boom" in e["message"] for e in state["console"])


def _clean(tmp_path: Path) -> Path:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    return tmp_path / "run"
