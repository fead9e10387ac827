"""A headless Debian Chromium driven by Selenium, for the web page tests (tests/test_web_page.py).

Nothing is downloaded: the browser and driver are the system's (/usr/bin/chromium,
/usr/bin/chromedriver; scripts/test.sh installs them). Every request the page makes is recorded
through Chrome's performance log, so a test can read each request body.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1200,1600"]


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: scripts/test.sh installs Debian's "
                           "chromium and chromium-driver")


class Browser:
    """One Chromium with a fresh profile; `requests()` gives every request sent so far."""

    def __init__(self, download_dir: pathlib.Path):
        require_browser()
        self.profile = tempfile.mkdtemp(prefix="hashmatch-chromium-")
        self.download_dir = download_dir
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + [f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        options.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(download_dir)})
        self._events: list[dict] = []

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.ready") == "1",
                  "page ready")

    def wait(self, condition, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; browser log: {self.console()}")

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def console(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser")]

    def screenshot(self, path: pathlib.Path) -> None:
        self.driver.set_window_size(1200, 800)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1200, max(800, min(height + 40, 4000)))
        self.driver.save_screenshot(str(path))

    def requests(self) -> list[dict]:
        """Every request since the browser started: {url, method, body (bytes or None),
        has_body, document (the page that made it)}. The body comes from the DevTools log, so
        nothing in the page can hide it."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self._events.append({**message["params"]["request"],
                                     "documentURL": message["params"].get("documentURL", "")})
        out = []
        for request in self._events:
            body = None
            if "postDataEntries" in request:
                body = b"".join(base64.b64decode(e.get("bytes", "")) for e in
                                request["postDataEntries"])
            elif "postData" in request:
                body = request["postData"].encode("utf-8", "surrogateescape")
            out.append({"url": request["url"], "method": request["method"], "body": body,
                        "has_body": bool(request.get("hasPostData")),
                        "document": request["documentURL"]})
        return out
