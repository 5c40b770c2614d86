"""`make validate`'s Salesforce check (infra/salesforce/tools/validate.js, on Salesforce's own
metadata library): it passes on the shipped metadata, and fails, naming the problem, on a
metadata file with a broken field reference and on settings naming a field the metadata lacks."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE = os.path.join(ROOT, "infra", "salesforce", "force-app")
TOOLS = os.path.join(ROOT, "target", "sf-tools", "node_modules")
ADMIN = os.path.join(ROOT, "target", "debug", "cm-sf-admin")
REPORT = os.path.join("main", "default", "reports", "CM_Sync_Reports", "CM_Clicked_Links.report-meta.xml")


def validate(source, fields=None):
    assert os.path.isdir(TOOLS), "Salesforce's metadata library is not installed: run `make sf-tools` (make test does)"
    out = tempfile.mkdtemp()
    command = ["node", os.path.join(ROOT, "infra", "salesforce", "tools", "validate.js"), "--source", source, "--out", out]
    if fields is not None:
        path = os.path.join(tempfile.mkdtemp(), "fields.json")
        with open(path, "w") as f:
            json.dump(fields, f)
        command += ["--fields", path]
    return subprocess.run(command, env=dict(os.environ, NODE_PATH=TOOLS), capture_output=True, text=True, timeout=300)


def settings_fields(settings):
    path = os.path.join(tempfile.mkdtemp(), "settings.json")
    with open(path, "w") as f:
        json.dump(settings, f)
    return json.loads(subprocess.run([ADMIN, "--json", "settings", "fields", path], check=True, capture_output=True, text=True).stdout)


@pytest.fixture
def copy():
    directory = tempfile.mkdtemp()
    shutil.copytree(SOURCE, os.path.join(directory, "force-app"))
    yield os.path.join(directory, "force-app")
    shutil.rmtree(directory)


def shipped_settings():
    with open(os.path.join(ROOT, "infra", "salesforce", "settings-with-detail.json")) as f:
        return json.load(f)


def test_the_shipped_metadata_converts_and_every_reference_and_setting_field_exists():
    result = validate(SOURCE, settings_fields(shipped_settings()))
    assert result.returncode == 0, result.stderr
    assert "3 report(s), 1 dashboard(s)" in result.stdout and "17 field(s) the settings name" in result.stdout, result.stdout
    assert "1 tab(s), 1 app(s), 1 page(s)" in result.stdout, result.stdout


def test_a_report_with_a_broken_field_reference_fails(copy):
    path = os.path.join(copy, REPORT)
    with open(path) as f:
        text = f.read()
    assert "CM_Last_Clicked_URL__c</column>" in text
    with open(path, "w") as f:
        f.write(text.replace("CM_Last_Clicked_URL__c</column>", "CM_Last_Click_URL__c</column>"))
    result = validate(copy)
    assert result.returncode == 1
    assert "CM_Clicked_Links: Campaign.CampaignMembers$CM_Last_Click_URL__c is not a column" in result.stderr, result.stderr


def test_a_field_the_settings_name_but_the_metadata_lacks_fails(copy):
    settings = shipped_settings()
    settings["member_detail_fields"]["bounce_type"] = "CM_Bounce_Kind__c"
    result = validate(copy, settings_fields(settings))
    assert result.returncode == 1
    assert "settings: CampaignMember.CM_Bounce_Kind__c is not in the metadata" in result.stderr, result.stderr


def test_metadata_salesforce_cannot_read_fails(copy):
    with open(os.path.join(copy, "main", "default", "reportTypes", "Broken.reportType-meta.xml"), "w") as f:
        f.write("<ReportType")
    result = validate(copy)
    assert result.returncode == 1, result.stdout


def edit(copy, relative, old, new):
    path = os.path.join(copy, "main", "default", relative)
    with open(path) as f:
        text = f.read()
    assert old in text, f"{relative}: {old}"
    with open(path, "w") as f:
        f.write(text.replace(old, new))


@pytest.mark.parametrize("relative, old, new, problem", [
    ("tabs/CM_Campaign_Settings.tab-meta.xml", "<page>CM_Campaign_Settings</page>", "<page>CM_Settings</page>",
     "tab CM_Campaign_Settings: page CM_Settings is not in the metadata"),
    ("applications/Campaign_Monitor_Admin.app-meta.xml", "<tabs>CM_Campaign_Settings</tabs>", "<tabs>CM_Settings</tabs>",
     "app Campaign_Monitor_Admin: tab CM_Settings is not in the metadata"),
    ("permissionsets/CM_Sync_Console_Admin.permissionset-meta.xml", "<name>CM_Sync_Console</name>",
     "<name>CM_Console</name>", "custom permission CM_Console is not in the metadata"),
    ("permissionsets/CM_Sync_Console_Admin.permissionset-meta.xml", "<tab>CM_Campaign_Settings</tab>",
     "<tab>CM_Settings</tab>", "tab CM_Settings is not in the metadata"),
    ("pages/CM_Campaign_Settings.page", "$Label.CM_Console_URL}/settings", "$Label.CM_Console_Link}/settings",
     "custom label CM_Console_Link is not in the metadata"),
])
def test_a_tab_app_page_or_permission_set_naming_what_does_not_exist_fails(copy, relative, old, new, problem):
    edit(copy, relative, old, new)
    result = validate(copy)
    assert result.returncode == 1, result.stdout
    assert problem in result.stderr, result.stderr
