"""Browser tests: headless Chromium (Debian's chromium + chromium-driver) driven by
Selenium against pytest-django's live server.

Without Chromium, chromedriver or selenium the tests skip locally, and fail when CI=true,
so CI can never pass by skipping them. Every page a test looks at is saved as a PNG under
BROWSER_SCREENSHOTS (default .screenshots/<timestamp>/); the folder is printed at the end
of the run.
"""

import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings

# Debian's packages; the variables point elsewhere (or at nothing, to see the skip).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
PASSWORD = "pw"
_screenshot_dir: list[Path] = []  # set once the first screenshot is saved


def screenshot_dir() -> Path:
    if not _screenshot_dir:
        default = Path(settings.BASE_DIR) / ".screenshots" / datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or default)
        folder.mkdir(parents=True, exist_ok=True)
        _screenshot_dir.append(folder.resolve())
    return _screenshot_dir[0]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _screenshot_dir:
        terminalreporter.write_line(f"Browser test screenshots: {_screenshot_dir[0]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_call_failed = report.failed
    return report


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not shutil.which(path):
            return f"{path} is missing (apt-get install {package})"
    return None


class Browser:
    """One headless Chromium with its own profile and download folder."""

    def __init__(self, *, base_url: str, name: str, test_name: str):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.base_url, self.name, self.test_name = base_url, name, test_name
        self.profile = tempfile.mkdtemp(prefix="paydesk-chromium-")
        self.downloads = Path(tempfile.mkdtemp(prefix="paydesk-downloads-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (*CHROME_ARGS, f"--user-data-dir={self.profile}"):
            options.add_argument(arg)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
                "download.directory_upgrade": True,
                "safebrowsing.enabled": False,
            },
        )
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        # Headless Chromium ignores the download prefs unless told through CDP.
        self.driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(self.downloads)}
        )
        self.shots = 0

    def get(self, path: str):
        self.driver.get(self.base_url + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def screenshot(self, label: str) -> Path:
        self.shots += 1
        path = screenshot_dir() / f"{self.test_name}-{self.name}-{self.shots:02d}-{label}.png"
        self.driver.save_screenshot(str(path))
        return path

    def login(self, username: str, password: str = PASSWORD):
        """Through the admin's own login form, as a person does."""
        self.get("/admin/login/?next=/admin/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.screenshot("login")
        self.find("input[type=submit]").click()
        self.wait_for(lambda: "/admin/login/" not in self.driver.current_url, what=f"{username} to be logged in")
        assert "Log out" in self.text() or self.find_all("#logout-form"), self.text()

    def session_cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}

    def wait_for(self, condition, *, what: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.2)
        self.screenshot("timeout")
        raise AssertionError(f"timed out waiting for {what}")

    def download(self, *, timeout: float = 30) -> Path:
        """The one file downloaded into this browser's folder, once complete."""

        def done():
            files = [p for p in self.downloads.iterdir() if not p.name.endswith((".crdownload", ".tmp"))]
            partial = [p for p in self.downloads.iterdir() if p.name.endswith(".crdownload")]
            return files[0] if len(files) == 1 and not partial else None

        return self.wait_for(done, what="the download", timeout=timeout)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
            shutil.rmtree(self.downloads, ignore_errors=True)


@pytest.fixture
def browser(request, live_server):
    """browser(name) -> a logged-out headless Chromium on the live server. Skips without
    Chromium locally; fails in CI."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Browser tests must run in CI: {missing}", pytrace=False)
        pytest.skip(f"browser tests need headless Chromium: {missing}")
    opened: list[Browser] = []

    def open_browser(name: str = "staff") -> Browser:
        opened.append(Browser(base_url=live_server.url, name=name, test_name=request.node.name))
        return opened[-1]

    yield open_browser
    for one in opened:
        if getattr(request.node, "browser_call_failed", False):
            one.screenshot("failed")
        one.quit()


@pytest.fixture
def staff_users(django_user_model):
    """A superuser, a finance and a support user, in the groups `manage.py seed` makes."""
    from django.contrib.auth.models import Group

    from config.staff_groups import FINANCE, SUPPORT, staff_groups_ensure

    staff_groups_ensure()
    admin = django_user_model.objects.create_superuser("ops-admin", "ops-admin@example.com", PASSWORD)
    users = {"admin": admin}
    for group in (FINANCE, SUPPORT):
        user = django_user_model.objects.create_user(f"ops-{group}", password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        users[group] = user
    return users
