"""The `triggers serve` console in a real browser: headless Chromium driven by Selenium.

One stack (LocalServer in this process: the function on werkzeug, an SQLite ledger, the Cloud
Run emulator running config/jobs.yaml as processes) serves the sample rules; events come from
`triggers send` and runs end through `triggers reconcile`, both as the processes a user runs.
The page must list the rules, show each event with every rule's verdict, plan a pasted event
exactly as `triggers plan --json` does, and follow a run's status as it is reconciled.

The browser is Debian's `chromium` with its `chromedriver` (the README's test command installs
them when absent); nothing is downloaded. Missing: a skip locally, a failure under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import eventually, require_module, unavailable
from triggers.local.serve import LocalServer, ServeOptions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "config" / "events"
TRIGGERS = [sys.executable, "-m", "triggers.cli"]
WAIT = 30.0  # seconds: a generous bound for anything to show up; polled, never slept
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = require_module("selenium.webdriver", "a real browser", "selenium")
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        unavailable(
            "a real browser",
            "chromium and chromedriver are not installed (apt-get install chromium"
            " chromium-driver; the README's test command does it)",
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # The driver is given: Selenium Manager is not asked to find (or download) one.
    service = webdriver.ChromeService(executable_path=chromedriver)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    workdir = tmp_path_factory.mktemp("console-stack")
    rules = workdir / "rules.yaml"  # a copy: the test edits it
    rules.write_text((ROOT / "config" / "rules.yaml").read_text())
    options = ServeOptions(
        rules=str(rules),
        jobs=str(ROOT / "config" / "jobs.yaml"),
        port=0,
        sqlite_path=str(workdir / "ledger.sqlite3"),
        log_dir=str(workdir / "logs"),
        clock=False,
        reload_interval=0,
    )
    with LocalServer(options) as server:
        yield server


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")}
    return subprocess.run(
        [*TRIGGERS, *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def find(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def click(driver: Any, css: str) -> bool:
    """Click the first element matching `css`; False if there is none or it was just redrawn."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        elements = find(driver, css)
        if elements:
            elements[0].click()
            return True
    except StaleElementReferenceException:
        pass
    return False


def page_text(driver: Any) -> str:
    return driver.find_element("tag name", "body").text


def test_console_in_a_browser(browser: Any, stack: LocalServer, tmp_path: Path) -> None:
    driver = browser
    assert stack.console_url == f"{stack.url}_console/"
    driver.get(stack.console_url)
    context = lambda: page_text(driver)[-3000:]  # noqa: E731

    # The rules, as loaded.
    names = [rule.name for rule in stack.rules]
    listed = eventually(
        lambda: [row.get_attribute("data-rule") for row in find(driver, "#rules-body tr")],
        timeout=WAIT,
        what="the rules listed",
        context=context,
    )
    assert listed == names
    assert "incoming/*.csv" in find(driver, '#rules-body tr[data-rule="csv-ingest"]')[0].text

    # An edited rules file, once reloaded, is what the page lists.
    rules_file = Path(stack.options.rules)
    original = rules_file.read_text()
    rules_file.write_text(
        original + "\n  - name: extra-rule\n    on: pubsub\n    job: orders-processor\n"
    )
    assert stack.reload()
    eventually(
        lambda: find(driver, '#rules-body tr[data-rule="extra-rule"]'),
        timeout=WAIT,
        what="the reloaded rules listed",
        context=context,
    )
    rules_file.write_text(original)
    assert stack.reload()

    # An event sent with `triggers send`: listed with every rule's verdict.
    sent = cli(
        "send", "storage", "--url", stack.url, "--bucket", "raw-data", "--name", "incoming/a.csv"
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    row = eventually(
        lambda: next(iter(find(driver, "#events-body tr")), None),
        timeout=WAIT,
        what="the sent event in the events list",
        context=context,
    )
    matched = row.find_element("css selector", '.verdict.matched[data-rule="csv-ingest"]')
    assert "launched" in matched.text
    unmatched = row.find_element("css selector", '.verdict.unmatched[data-rule="paid-orders"]')
    # The first failing field and why, as `triggers plan` says it.
    assert "type: 'google.cloud.storage.object.v1.finalized' is not" in unmatched.text
    assert "google.cloud.storage.object.v1.finalized" in row.text and "200" in row.text

    # "Try an event": the plan is the one `triggers plan --json` prints for the same file.
    sample = EVENTS / "pubsub-order.cloudevent-binary.json"
    planned = cli("plan", "--json", "--config", stack.options.rules, str(sample))
    expected = {v["rule"]: v for v in json.loads(planned.stdout)["verdicts"]}
    driver.execute_script(
        "document.getElementById('try-input').value = arguments[0];", sample.read_text()
    )
    find(driver, "#try-button")[0].click()
    plan = eventually(
        lambda: next(
            iter(find(driver, '#plan-result .plan-rule.matched[data-rule="paid-orders"]')), None
        ),
        timeout=WAIT,
        what="the plan of the pasted event",
        context=context,
    )
    request = expected["paid-orders"]["request"]
    http = plan.find_element("css selector", ".http").text
    assert http == f"POST https://run.googleapis.com/v2/{request['name']}:run"
    shown = json.loads(plan.find_element("css selector", "pre.json").text)
    assert shown == {k: v for k, v in request.items() if k != "name"}
    for rule, verdict in expected.items():
        if not verdict["matched"]:
            line = find(driver, f'#plan-result .plan-rule.unmatched[data-rule="{rule}"]')[0]
            assert verdict["reason"] in line.text
    # A bare body that is not an event: a clear rejection, not an error page.
    driver.execute_script("document.getElementById('try-input').value = '[1, 2';")
    find(driver, "#try-button")[0].click()
    rejected = eventually(
        lambda: next(iter(find(driver, "#plan-result [data-rejected]")), None),
        timeout=WAIT,
        what="the rejection of a bad paste",
    )
    assert rejected.get_attribute("data-rejected") == "bad_json"

    # The run: launched, then succeeded once `triggers reconcile` has seen its execution end.
    def status(rule: str) -> str | None:
        # Read in one script: the page redraws the table when a run changes.
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#runs-body tr')]"
            ".map(row => [row.cells[1].textContent, row.cells[2].dataset.status]);"
        )
        return next((state for name, state in rows if name == rule), None)

    assert eventually(lambda: status("csv-ingest"), timeout=WAIT, what="the run") == "launched"
    assert stack.emulator.store.wait_idle(WAIT), "the csv-loader execution did not finish"
    reconciled = cli("reconcile", env=stack.exports())
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    eventually(
        lambda: status("csv-ingest") == "succeeded",
        timeout=WAIT,
        what="the run's status to become succeeded",
        context=context,
    )
    # Its task log, from the emulator's log directory.
    eventually(
        lambda: click(driver, "#runs-body tr button[data-log]"), timeout=WAIT, what="a log link"
    )
    log_text = eventually(
        lambda: find(driver, "#log-text")[0].text,
        timeout=WAIT,
        what="the task log",
    )
    assert "--input=gs://raw-data/incoming/a.csv" in log_text

    # "Reconcile now" on the page does the same for a Scheduler tick's run.
    sent = cli("send", "scheduler", "--url", stack.url, "--job", "nightly-report")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert eventually(lambda: status("nightly-report"), timeout=WAIT, what="the tick's run")
    assert stack.emulator.store.wait_idle(WAIT)
    find(driver, "#reconcile")[0].click()
    eventually(
        lambda: status("nightly-report") == "succeeded",
        timeout=WAIT,
        what="the tick's run to become succeeded after Reconcile now",
        context=context,
    )
    assert "1 succeeded" in find(driver, "#reconcile-result")[0].text

    shot = Path(os.environ.get("TRIGGERS_CONSOLE_SCREENSHOT") or tmp_path / "console.png")
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_console_off() -> None:
    """`--no-console`: no page at /_console/ (the function answers that path like any other)."""
    options = ServeOptions(
        rules=str(ROOT / "config" / "rules.yaml"),
        port=0,
        ledger="memory",
        dry_run=True,
        clock=False,
        reload_interval=0,
        console=False,
    )
    with LocalServer(options) as server:
        assert server.console_url is None
        assert not any(line.startswith("console") for line in server.banner())
        try:
            with urllib.request.urlopen(f"{server.url}_console/", timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        assert b"<html" not in body
        assert server.events is None
