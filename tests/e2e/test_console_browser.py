"""The admin console in a real browser (issue #30): Debian's chromium, driven through
chromium-driver by Selenium, against the local stack (the sandbox's Salesforce signs the admin
in; the console is the admin-console function under `cargo lambda watch`, configured as the
template configures it and reached as its Function URL is; syncs run in the real functions).

Each step saves a full-page screenshot at a laptop size under target/console-screenshots/, and
fails on a console error or a failed request in the browser (a 4xx/5xx response or a request
that did not complete) that the step does not expect.
"""

import base64
import json
import os
import shutil
import sys
import tempfile
import urllib.parse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.wait import WebDriverWait

sys.path.insert(0, os.path.dirname(__file__))
from stack import TARGET, Stack, free_port, recent_cm_date  # noqa: E402
from test_rules_e2e import main_id, member, settings_for, small_scenario  # noqa: E402

SHOTS = os.path.join(TARGET, "console-screenshots")
LAPTOP = (1366, 768)
PERMISSION_SET = "CM Sync Console Admin"
AUTUMN = "e" * 32
# state::MAX_WEBHOOK_ATTEMPTS: tries at a webhook event before its delivery waits for an admin.
MAX_WEBHOOK_ATTEMPTS = 12
AUTUMN_NAME = 'Autumn <b>offers</b> =HYPERLINK("http://evil.example")'


@pytest.fixture(scope="module")
def stack():
    # Only this run's screenshots: none left from steps since renamed.
    shutil.rmtree(SHOTS, ignore_errors=True)
    path, scenario = small_scenario()
    # An older send nobody linked, with a name that must stay text: the backfill's candidate.
    main = next(c for c in scenario["cm"]["campaigns"] if c["name"] == "November newsletter")
    scenario["cm"]["campaigns"].append({**main, "id": AUTUMN, "name": AUTUMN_NAME, "subject": "Autumn",
                                        "sent_date": "2026-10-15 09:00:00", "recipients": [], "activity": []})
    with open(path, "w") as f:
        json.dump(scenario, f)
    stack = Stack(path, settings_for(scenario, status_refresh="always"), console_port=free_port())
    if stack.quiet:  # its output went to the log
        with open(stack.watch_log) as f:
            assert 'function="admin-console"' in f.read(), "the console is served by its function"
    stack.schedule()  # the first sync: the link found on the SF Campaign, members read
    stack.settle()
    yield stack
    stack.close()


class Browser:
    """One headless chromium; every page it loads is checked and photographed by `step`."""

    def __init__(self):
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        assert chromium and driver, "chromium and chromium-driver are missing: `make browser` installs them"
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--no-first-run", f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
                         f"--user-data-dir={tempfile.mkdtemp()}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        # What chromium does on its own at start (it tries hosts this offline machine cannot
        # resolve) is not the console's: the logs are read from the first page on.
        self.driver.get("about:blank")
        self.driver.get_log("performance")
        self.driver.get_log("browser")
        os.makedirs(SHOTS, exist_ok=True)

    def go(self, url):
        self.driver.get(url)

    def click(self, css):
        """Clicks and waits for the page the click loads (a link or a form's POST-redirect)."""
        self.press(self.driver.find_element(By.CSS_SELECTOR, css))

    def press(self, element):
        page = self.driver.find_element(By.TAG_NAME, "html")
        element.click()

        def loaded(driver):
            # The old page is gone and the new one complete; mid-navigation the driver may
            # answer with other errors, which only mean "not yet".
            try:
                page.is_enabled()
                return False
            except StaleElementReferenceException:
                return driver.execute_script("return document.readyState") == "complete"

        WebDriverWait(self.driver, 30, ignored_exceptions=(WebDriverException,)).until(loaded)

    def text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def step(self, name, expect_status=()):
        """Saves the page as `name`.png (its whole height, at laptop width) and fails on a
        browser console error or a failed request, but for statuses in `expect_status`."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": max(metrics["width"], LAPTOP[0]),
                     "height": max(metrics["height"], LAPTOP[1]), "scale": 1}})
        with open(os.path.join(SHOTS, f"{name}.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        failed, urls = [], {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                urls[params["requestId"]] = params["request"]["url"]
            elif message["method"] == "Network.responseReceived":
                status = params["response"]["status"]
                if status >= 400 and status not in expect_status:
                    failed.append(f"{status} {params['response']['url']}")
            elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
                failed.append(f"{params.get('errorText')} {urls.get(params['requestId'], '?')} ({params.get('type')})")
        for entry in self.driver.get_log("browser"):
            # A page answered with an expected status is logged as a failed resource load.
            expected = any(f"status of {s}" in entry["message"] for s in expect_status)
            if entry["level"] == "SEVERE" and not expected:
                failed.append(f"console: {entry['message']}")
        assert not failed, f"{name}: {failed}"

    def sign_in(self, stack, user_name):
        self.go(stack.console_url + "/")
        assert self.driver.current_url.endswith("/signin"), self.driver.current_url
        self.step("01-sign-in")
        self.click("a.button[href='/auth/start']")
        assert self.driver.current_url.startswith(stack.sf_url), "the authorize page is Salesforce's"
        self.step("02-salesforce-allow-access")
        button = next(b for b in self.driver.find_elements(By.CSS_SELECTOR, "button[name=user]")
                      if b.text.startswith(f"Allow as {user_name}"))
        self.press(button)

    def quit(self):
        self.driver.quit()


@pytest.fixture
def browser():
    browser = Browser()
    yield browser
    browser.quit()


def settings_version(stack):
    return json.loads(stack.admin("--json", "settings", "show"))["version"]


def test_an_admin_signs_in_changes_refresh_through_preview_sees_field_errors_and_retries_a_runs_people(stack, browser):
    # Sign in with Salesforce: back on the Overview, signed in as the sandbox's admin.
    browser.sign_in(stack, "Ada Admin")
    assert browser.driver.current_url == stack.console_url + "/", browser.driver.current_url
    assert "Ada Admin" in browser.text()
    last_run = browser.driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=last-run]").text
    assert "succeeded" in last_run and "syncs requested 1" in last_run, last_run
    upcoming = browser.driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=next]").text
    assert main_id(stack) in upcoming, upcoming
    browser.step("03-overview")

    # Status refresh → Once Only: preview (nothing stored yet), confirm (version + 1).
    before = settings_version(stack)
    browser.go(stack.console_url + "/settings")
    # Beside the mapping: the linked campaign's statuses as Salesforce has them (read as Ada).
    browser.click("button[form=campaign_picker]")
    existing = browser.driver.find_element(By.CSS_SELECTOR, "section.existing").text
    assert "November newsletter" in existing and "Sent yes Sent" in existing and "Responded" in existing, existing
    browser.step("04-campaign-settings")
    browser.driver.find_element(By.ID, "refresh_once_only").click()
    browser.click("form[action='/settings/preview'] button[type=submit]:not([form])")
    assert "once_only" in browser.text(), browser.text()
    assert settings_version(stack) == before, "a preview stores nothing"
    browser.step("05-settings-preview")
    # What it would do on recent campaigns: asked of the sync function, shown when ready.
    browser.click("form[action='/settings/impact'] button[type=submit]")
    WebDriverWait(browser.driver, 180, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "Member status updates" in d.find_element(By.TAG_NAME, "body").text)
    impact = browser.text()
    assert main_id(stack) in impact and "Current settings" in impact and "Proposed settings" in impact, impact
    assert settings_version(stack) == before, "a preview stores nothing"
    browser.step("05b-settings-impact")
    browser.click("form[action='/settings/confirm'] button[type=submit]")
    assert settings_version(stack) == before + 1
    assert f"Saved: settings version {before + 1}" in browser.text()
    assert browser.driver.find_element(By.ID, "refresh_once_only").is_selected()
    browser.step("06-settings-saved")

    # A 41-character status label: the error is beside the field and names it; nothing stored.
    field = browser.driver.find_element(By.ID, "status_Clicked")
    field.clear()
    field.send_keys("C" * 41)
    browser.click("form[action='/settings/preview'] button[type=submit]:not([form])")
    error = browser.driver.find_element(By.ID, "status_Clicked_error")
    assert "status_mapping" in error.text and "40" in error.text, error.text
    assert browser.driver.find_element(By.ID, "status_Clicked").get_attribute("aria-invalid") == "true"
    assert settings_version(stack) == before + 1
    browser.step("07-settings-inline-error", expect_status=(422, 400))

    # Advanced: every other setting as a field; a word where a number goes is refused beside
    # the field, as typed; the whole document too, where a misspelt setting is refused naming
    # it. Nothing stored.
    browser.go(stack.console_url + "/settings/advanced")
    browser.step("08-advanced-settings")
    retention = browser.driver.find_element(By.ID, "run_retention_days")
    retention.clear()
    retention.send_keys("-5")
    browser.click("#advanced_fields button[type=submit]")
    error = browser.driver.find_element(By.ID, "run_retention_days_error").text
    assert "run_retention_days" in error and "whole number" in error, error
    assert browser.driver.find_element(By.ID, "run_retention_days").get_attribute("value") == "-5"
    browser.step("08b-advanced-field-error", expect_status=(422,))
    document = browser.driver.find_element(By.ID, "document")
    text = document.get_attribute("value")
    assert '"status_refresh": "once_only"' in text, text
    document.clear()
    document.send_keys(text.replace('"record_bounces"', '"record_bounce"', 1))
    browser.click("#whole_document button[type=submit]")
    errors = browser.driver.find_element(By.ID, "document_errors").text
    assert "record_bounce" in errors, errors
    assert settings_version(stack) == before + 1
    browser.step("09-advanced-settings-error", expect_status=(422,))

    # A sync in which Salesforce refuses two members' writes shows on Runs; Retry queues them
    # and the sync it requests writes them.
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    emails = sorted(m["Email"] for m in stack.records("CampaignMember"))[:2]
    stack.add_activity(cm, [{"kind": "click", "email": e, "list_id": list_id, "date": "2026-12-03 10:00:00"}
                            for e in emails])
    stack.set_cm_now("2026-12-03 10:30:00")
    stack.set_sf_faults({"seed": 5, "sf": {"validation_error_rate": 1.0}})
    failed = stack.request_sync(cm)
    stack.set_sf_faults({"seed": 5})
    assert all(member(stack, e)["Status"] != "Clicked" for e in emails)
    browser.go(stack.console_url + "/runs?failed=1")
    run_link = f"a[href='/runs/{urllib.parse.quote(failed['run_id'], safe='')}']"
    assert browser.driver.find_elements(By.CSS_SELECTOR, run_link), browser.driver.page_source
    browser.step("10-runs-failed-only")
    browser.click(run_link)
    page = browser.text()
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in page and "2 people failed in this run" in page, page
    assert not any(e in browser.driver.page_source for e in emails), "no whole address on the page"
    browser.step("11-run-failures")
    browser.click("form[action$='/retry'] button[type=submit]")
    assert "Queued 2 people for another attempt" in browser.text(), browser.text()
    browser.step("12-run-retry-queued")
    stack.settle()
    assert all(member(stack, e)["Status"] == "Clicked" for e in emails)

    # Audit: both changes, as this admin's.
    browser.go(stack.console_url + "/audit")
    audit = browser.text()
    assert "settings changed: status_refresh" in audit and f"v{before} → v{before + 1}" in audit, audit
    assert "retry of run" in audit and "(you)" in audit, audit
    browser.step("13-audit")

    # A person's failures, found by their address (a POST), shown redacted.
    browser.go(stack.console_url + "/runs")
    browser.driver.find_element(By.ID, "email").send_keys(emails[0].upper())
    browser.click("form[action='/runs/search'] button[type=submit]")
    page = browser.text()
    assert "Failures of p***@example.com" in page and "STATUS_MISSING" in page, page
    assert emails[0] not in browser.driver.page_source
    assert emails[0] not in browser.driver.current_url
    browser.step("14-person-failures")

    # Links: Sync now asks the sync function; Unlink, after a confirmation, clears the link field.
    browser.go(stack.console_url + "/links")
    row = browser.driver.find_element(By.XPATH, f"//tr[td//text()[contains(., '{cm}')]]").text
    # The CM name and send date from the catalog the first scheduled run kept; its cadence band.
    assert "November newsletter" in row and "sent 2026-11-0" in row and "retired" not in row, row
    browser.step("15-links")
    # Dry run: planned by the sync function, shown when ready; nothing written.
    members_before = sorted((m["Id"], m["Status"]) for m in stack.records("CampaignMember"))
    browser.click(f"form[action='/links/{cm}/dry-run'] button")
    WebDriverWait(browser.driver, 180, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "Member status updates" in d.find_element(By.TAG_NAME, "body").text)
    assert cm in browser.text(), browser.text()
    assert sorted((m["Id"], m["Status"]) for m in stack.records("CampaignMember")) == members_before
    browser.step("15b-links-dry-run")
    browser.go(stack.console_url + "/links")
    browser.click(f"form[action='/links/{cm}/sync'] button")
    assert "Sync requested" in browser.text(), browser.text()
    stack.settle()
    browser.step("16-links-sync-requested")
    browser.click(f"a[href='/links/{cm}/unlink']")
    browser.step("17-unlink-confirm")
    browser.click(f"form[action='/links/{cm}/unlink'] button")
    assert f"CM campaign {cm} unlinked" in browser.text(), browser.text()
    linked = next(c for c in stack.records("Campaign") if c["Name"] == "November newsletter")
    assert not linked.get("CM_Campaign_ID__c"), linked
    assert all(l["cm_campaign_id"] != cm for l in json.loads(stack.admin("--json", "links")))

    # Link it again, picked by name: the campaign list read from CM again (the page reloads
    # itself until it is), the CM campaign chosen, the SF Campaign searched as Ada and linked.
    browser.go(stack.console_url + "/links/new?q=november")
    browser.click("form[action='/campaigns/refresh'] button")
    WebDriverWait(browser.driver, 180, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "Reading the campaigns" not in d.find_element(By.TAG_NAME, "body").text)
    browser.go(stack.console_url + "/links/new?q=november")
    browser.step("17b-link-pick-cm")
    browser.click(f"a[href='/links/new?cm={cm}']")
    assert "Chosen: November newsletter" in browser.text(), browser.text()
    browser.step("17c-link-pick-sf")
    browser.click(f"form[action='/links/new']:has(input[name=sf][value='{linked['Id']}']) button")
    assert f"CM campaign {cm} linked" in browser.text(), browser.text()
    relinked = next(c for c in stack.records("Campaign") if c["Id"] == linked["Id"])
    assert relinked.get("CM_Campaign_ID__c") == cm, relinked
    browser.step("17d-linked")

    # Backfill: a reversed range is refused beside its field; the October range previews the
    # unlinked autumn send (its name as text), and confirming creates and links its Campaign.
    browser.go(stack.console_url + "/links/backfill?from=2026-10-31&to=2026-10-01")
    assert "before from" in browser.driver.find_element(By.ID, "to_error").text
    browser.step("17e-backfill-error")
    browser.go(stack.console_url + "/links/backfill?from=2026-10-01&to=2026-10-31")
    page = browser.text()
    assert "1 campaign(s) would get a Salesforce Campaign" in page and AUTUMN_NAME in page, page
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "td b"), "CM's markup is text"
    browser.step("17f-backfill-preview")
    browser.click("form[method=post][action='/links/backfill'] button")
    assert "Backfill of 2026-10-01 to 2026-10-31 requested" in browser.text(), browser.text()
    stack.settle()
    assert any(l["cm_campaign_id"] == AUTUMN for l in json.loads(stack.admin("--json", "links")))
    browser.go(stack.console_url + "/links")
    assert "backfill" in browser.text(), browser.text()
    browser.step("17g-backfilled")

    # A webhook opt-out Salesforce refuses at every attempt (a validation rule): after the
    # twelfth, its delivery waits for an admin, and the Overview says so.
    list_id = stack.scenario["cm"]["lists"][0]["id"]
    stack.register_webhook(list_id)
    stack.warm_intake()
    stack.set_sf_faults({"seed": 3, "sf": {"validation_error_rate": 1.0}})
    email = stack.scenario["sf"]["records"]["Contact"][0]["Email"]
    stack.deliver_webhook(list_id, [{"Type": "Deactivate", "Date": recent_cm_date(600),
                                     "EmailAddress": email, "State": "Unsubscribed"}])
    stack.settle()
    for _ in range(MAX_WEBHOOK_ATTEMPTS - 1):  # an admin replaying it, or the schedule's sweeps
        stack.admin("replay")
        stack.settle()
    stack.set_sf_faults({"seed": 3})
    doctor = stack.admin_run("doctor").stdout
    assert "PROBLEM  webhook events waiting for an admin: 1 opt-out(s)" in doctor, doctor
    browser.go(stack.console_url + "/")
    waiting = browser.driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=webhooks]").text
    assert list_id in waiting and "waits for an admin" in waiting, waiting
    assert email not in browser.text()
    browser.step("19-overview-delivery-waiting-for-an-admin")

    # Sign out: back at sign-in; the overview needs signing in again.
    browser.click("form[action='/signout'] button[type=submit]")
    assert browser.driver.current_url.endswith("/signin"), browser.driver.current_url
    browser.go(stack.console_url + "/settings")
    assert browser.driver.current_url.endswith("/signin")


def test_a_user_without_the_permission_gets_the_403_page_naming_the_permission_set(stack, browser):
    browser.sign_in(stack, "Victor Viewer")
    page = browser.text()
    assert PERMISSION_SET in page, page
    browser.step("18-forbidden", expect_status=(403,))
    browser.go(stack.console_url + "/")
    assert browser.driver.current_url.endswith("/signin"), "no session was made"
