"""cm-sf-admin end to end: every command against the local stack (the sandbox for CM and SF,
moto for DynamoDB, EventBridge and Secrets Manager, the real functions under `cargo lambda
watch`). The tests in this module run in order on one stack, as an admin would work."""

import copy
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import ROOT, Stack, generate_scenario, recent_cm_date  # noqa: E402

UNLINKED_SF_CAMPAIGN = "701000SB0000099AAA"


@pytest.fixture(scope="module")
def stack():
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=200, activities=160, extra_campaigns=3, draft_after_enable=False)
    scenario["sf"]["records"]["Campaign"].append({"Id": UNLINKED_SF_CAMPAIGN, "Name": "Spring promo", "IsActive": True})
    with open(path, "w") as f:
        json.dump(scenario, f)
    settings = {"cm_clients": [scenario["cm"]["clients"][0]["id"]], "cm_lists": [scenario["cm"]["lists"][0]["id"]],
                "cm_timezone": scenario["cm"]["timezone"], "opt_out_policy": "any_list"}
    stack = Stack(path, settings)
    yield stack
    stack.close()


def main_campaign(stack):
    return next(c for c in stack.scenario["cm"]["campaigns"] if c["name"] == "November newsletter")["id"]


def extra_campaigns(stack):
    return sorted((c for c in stack.scenario["cm"]["campaigns"] if c["name"].startswith("Daily update")), key=lambda c: c["sent_date"])


def settings_json(stack):
    return json.loads(stack.admin("--json", "settings", "show"))


def write_json(document):
    path = os.path.join(tempfile.mkdtemp(), "settings.json")
    with open(path, "w") as f:
        json.dump(document, f)
    return path


COMMANDS = [["init-table"], ["settings", "show"], ["settings", "apply"], ["settings", "set"], ["settings", "diff"],
            ["link"], ["unlink"], ["links"], ["sync"], ["backfill"], ["runs"], ["run"], ["retry"], ["doctor"],
            ["webhooks", "register"], ["webhooks", "list"], ["webhooks", "remove"], ["webhooks", "events"], ["replay"],
            ["audit"], ["console"]]


def test_every_command_has_help_with_an_example(stack):
    top = stack.admin("--help")
    for name in ["settings", "link", "unlink", "links", "sync", "backfill", "runs", "run", "retry", "doctor", "webhooks"]:
        assert f"\n  {name} " in top, name
    for command in COMMANDS:
        text = stack.admin(*command, "--help")
        assert "Example" in text and "cm-sf-admin " + " ".join(command) in text, (command, text)


def test_settings_set_changes_one_value_and_refuses_bad_ones_naming_the_field(stack):
    before = settings_json(stack)
    out = stack.admin("settings", "set", "campaign_template.name_pattern", "CM: {name}")
    assert '~ campaign_template.name_pattern: "{name}" -> "CM: {name}"' in out, out
    after = settings_json(stack)
    assert after["version"] == before["version"] + 1
    assert after["settings"]["campaign_template"]["name_pattern"] == "CM: {name}"

    too_long = stack.admin_run("settings", "set", "status_mapping[0].status", "x" * 41)
    assert too_long.returncode == 1 and "status_mapping[0].status" in too_long.stderr, too_long.stderr
    misspelt = stack.admin_run("settings", "set", "opt_out_polcy", "never")
    assert misspelt.returncode == 1 and "opt_out_polcy" in misspelt.stderr, misspelt.stderr
    assert settings_json(stack)["version"] == after["version"], "a refused change stores nothing"

    same = stack.admin("settings", "set", "record_bounces", "true")
    assert "nothing stored" in same and settings_json(stack)["version"] == after["version"]

    # The change is in the audit, by the CLI, with the versions; the refused ones are not.
    audit = json.loads(stack.admin("--json", "audit", "--last", "1"))
    assert [(e["actor"], e["action"], e["version_before"], e["version_after"]) for e in audit] == [
        ("cli", "settings changed: campaign_template.name_pattern", before["version"], after["version"])], audit


def test_settings_diff_shows_what_apply_would_change_and_stores_nothing(stack):
    current = settings_json(stack)
    proposed = copy.deepcopy(current["settings"])
    proposed["record_bounces"] = False
    proposed["cm_lists"].append("f" * 32)
    out = stack.admin("settings", "diff", write_json(proposed))
    assert "~ record_bounces: true -> false" in out, out
    assert f'+ cm_lists[1]: "{"f" * 32}"' in out, out
    assert "2 change(s)" in out
    assert settings_json(stack)["version"] == current["version"]
    assert "no changes" in stack.admin("settings", "diff", write_json(current["settings"]))
    bad = stack.admin_run("settings", "diff", write_json(dict(proposed, opt_out_policy="sometimes")))
    assert bad.returncode == 1 and "opt_out_policy" in bad.stderr


def test_doctor_finds_the_missing_webhook_and_register_list_remove_manage_it(stack):
    base = stack.webhook_base_url()
    list_id = stack.scenario["cm"]["lists"][0]["id"]
    before = stack.admin_run("doctor", "--url", base)
    assert before.returncode == 1, before.stdout
    assert f"PROBLEM  webhooks of list {list_id}" in before.stdout, before.stdout
    assert "fix: `cm-sf-admin webhooks register" in before.stdout
    assert "ok       field CampaignMember.CM_Activity_Date__c" in before.stdout
    assert "1 problem(s)" in before.stdout

    assert f"list {list_id}: registered" in stack.admin("webhooks", "register", "--url", base)
    assert f"list {list_id}: already registered" in stack.admin("webhooks", "register", "--url", base)
    listed = stack.admin("webhooks", "list", "--url", base)
    assert "(this deployment)" in listed and "/hooks/****" in listed
    assert stack.webhook_token not in listed, "the token is never printed"
    after = stack.admin_run("doctor", "--url", base)
    assert after.returncode == 0 and "0 problem(s)" in after.stdout, after.stdout

    # The registered URL really reaches the intake: CM's Deactivate opts the person out.
    person = stack.scenario["sf"]["records"]["Contact"][0]
    stack.warm_intake()
    delivered = stack.deliver_webhook(list_id, [{"Type": "Deactivate", "Date": recent_cm_date(600), "State": "Unsubscribed",
                                                 "EmailAddress": person["Email"], "Name": "", "CustomFields": []}])
    assert [d["status"] for d in delivered] == [200], delivered
    stack.settle()
    contact = next(c for c in stack.records("Contact") if c["Id"] == person["Id"])
    assert contact["HasOptedOutOfEmail"] is True

    removed = stack.admin("webhooks", "remove", "--url", base)
    assert f"list {list_id}: removed webhook" in removed
    assert "(this deployment)" not in stack.admin("webhooks", "list", "--url", base)
    assert "no webhook of this deployment" in stack.admin("webhooks", "remove", "--url", base)


def test_sync_dry_run_prints_the_plan_and_writes_nothing(stack):
    stack.reset_counters()
    plan = json.loads(stack.admin("--json", "sync", "--dry-run"))
    assert [c["link"]["cm_campaign_id"] for c in plan["campaigns"]] == [main_campaign(stack)]
    assert plan["campaigns"][0]["member_updates"], "there is work to plan"
    text = stack.admin("sync", "--dry-run")
    assert "November newsletter" in text
    assert stack.sf_calls()["writes"] == 0
    assert json.loads(stack.admin("--json", "runs")) == [], "a dry run records no run"


def test_sync_now_then_runs_and_run_show_counts_and_skips(stack):
    stack.schedule()  # links the campaign whose link field was filled in Salesforce
    stack.settle()
    cm = main_campaign(stack)
    requested = stack.admin("sync", "--campaign", cm)
    assert "sync requested" in requested
    stack.settle()
    runs = json.loads(stack.admin("--json", "runs", "--last", "10"))
    campaign_runs = [r for r in runs if r["scope"] == cm]
    assert len(campaign_runs) == 2, runs
    assert all(r["status"] == "succeeded" for r in campaign_runs)
    first = campaign_runs[-1]  # newest first: the schedule's run is the older
    assert first["counts"]["members_updated"] + first["counts"]["members_added"] > 0
    text = stack.admin("runs")
    assert first["run_id"] in text
    detail = stack.admin("run", first["run_id"])
    assert f"scope    {cm}" in detail and "unmatched email" in detail, detail
    missing = stack.admin_run("run", "20000101T000000Z-00000000")
    assert missing.returncode == 1 and "no run" in missing.stderr
    not_linked = stack.admin_run("sync", "--campaign", "0" * 32)
    assert not_linked.returncode == 1 and "not linked" in not_linked.stderr


def member(stack, email):
    cm = main_campaign(stack)
    main_sf = next(c["Id"] for c in stack.records("Campaign") if c.get("CM_Campaign_ID__c") == cm)
    return next(m for m in stack.records("CampaignMember") if m.get("Email") == email and m["CampaignId"] == main_sf)


def test_retry_applies_records_a_run_failed_on_permanently(stack):
    cm, list_id = main_campaign(stack), stack.scenario["cm"]["lists"][0]["id"]
    main_sf = next(c["Id"] for c in stack.records("Campaign") if c.get("CM_Campaign_ID__c") == cm)
    emails = sorted(m["Email"] for m in stack.records("CampaignMember")
                    if m["CampaignId"] == main_sf and m["Status"] in ("Sent", "Opened"))[:3]
    assert len(emails) == 3
    stack.add_activity(cm, [{"kind": "click", "email": e, "list_id": list_id, "date": "2026-12-01 10:00:00"} for e in emails])
    stack.set_cm_now("2026-12-01 10:30:00")
    stack.set_sf_faults({"seed": 3, "sf": {"validation_error_rate": 1.0}})
    stack.admin("sync", "--campaign", cm)
    stack.settle()
    stack.set_sf_faults({"seed": 3})
    failed_run = json.loads(stack.admin("--json", "runs", "--last", "1"))[0]
    assert failed_run["scope"] == cm and failed_run["status"] == "completed_with_failures", failed_run
    detail = json.loads(stack.admin("--json", "run", failed_run["run_id"]))
    failed = [f for f in detail["failures"] if f["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    people = {f["person"] for f in failed if f.get("person")}
    assert len(people) == 3 and not any(e in json.dumps(detail) for e in emails), detail["failures"]
    assert all(member(stack, e)["Status"] != "Clicked" for e in emails)

    # The watermark moved on (the error is permanent): a plain sync would not try them again.
    stack.admin("sync", "--campaign", cm)
    stack.settle()
    assert all(member(stack, e)["Status"] != "Clicked" for e in emails)

    out = stack.admin("retry", failed_run["run_id"])
    assert f"queued {len(people)} people" in out and "1 other failures" in out, out
    stack.settle()
    assert all(member(stack, e)["Status"] == "Clicked" for e in emails)
    latest = json.loads(stack.admin("--json", "runs", "--last", "1"))[0]
    assert latest["status"] == "succeeded" and latest["run_id"] != failed_run["run_id"]
    assert stack.admin_run("retry", "nope").returncode == 1


def sf_campaign(stack, sf_id):
    return next(c for c in stack.records("Campaign") if c["Id"] == sf_id)


def test_link_unlink_and_links(stack):
    first, second = extra_campaigns(stack)[0]["id"], extra_campaigns(stack)[1]["id"]
    out = stack.admin("link", first, UNLINKED_SF_CAMPAIGN)
    assert "linked CM campaign" in out
    assert sf_campaign(stack, UNLINKED_SF_CAMPAIGN)["CM_Campaign_ID__c"] == first, "the link field is written"
    stack.settle()
    links = json.loads(stack.admin("--json", "links"))
    assert {"cm_campaign_id": first, "sf_campaign_id": UNLINKED_SF_CAMPAIGN, "origin": "manual"}.items() <= next(
        link for link in links if link["cm_campaign_id"] == first).items()
    assert any(r["scope"] == first for r in json.loads(stack.admin("--json", "runs"))), "the new link was synced"
    assert any(m["CampaignId"] == UNLINKED_SF_CAMPAIGN for m in stack.records("CampaignMember"))
    assert first in stack.admin("links")

    assert "already linked" in stack.admin("link", first, UNLINKED_SF_CAMPAIGN)
    taken = stack.admin_run("link", second, UNLINKED_SF_CAMPAIGN)
    assert taken.returncode == 1 and f"already linked to CM campaign {first}" in taken.stderr
    bad = stack.admin_run("link", "not-an-id", UNLINKED_SF_CAMPAIGN)
    assert bad.returncode == 1 and "not a CM CampaignID" in bad.stderr
    assert len(json.loads(stack.admin("--json", "links"))) == len(links), "refusals change nothing"

    out = stack.admin("unlink", first)
    assert f"unlinked CM campaign {first}" in out
    assert sf_campaign(stack, UNLINKED_SF_CAMPAIGN).get("CM_Campaign_ID__c") is None
    assert all(link["cm_campaign_id"] != first for link in json.loads(stack.admin("--json", "links")))
    assert "was not linked" in stack.admin("unlink", first)
    audit = [(e["actor"], e["action"]) for e in json.loads(stack.admin("--json", "audit", "--last", "2"))]
    assert audit == [("cli", f"unlink of CM campaign {first} from SF Campaign {UNLINKED_SF_CAMPAIGN}"),
                     ("cli", f"link of CM campaign {first} to SF Campaign {UNLINKED_SF_CAMPAIGN}")], audit


def test_backfill_dry_run_lists_the_window_then_backfill_creates_and_links(stack):
    extras = [c["id"] for c in extra_campaigns(stack)]
    campaigns_before = len(stack.records("Campaign"))
    dry = json.loads(stack.admin("--json", "backfill", "--from", "2026-10-01", "--to", "2026-11-01", "--dry-run"))
    assert [c["campaign"]["cm_campaign_id"] for c in dry["campaigns"]] == extras, "oldest first; the main campaign is linked"
    assert all(c["outcome"] is None for c in dry["campaigns"])
    text = stack.admin("backfill", "--from", "2026-10-01", "--to", "2026-11-01", "--dry-run")
    assert "3 campaign(s) would get an SF Campaign (dry run: nothing created)" in text
    narrow = json.loads(stack.admin("--json", "backfill", "--from", "2026-10-31", "--to", "2026-10-31", "--dry-run"))
    assert len(narrow["campaigns"]) == 1
    assert len(stack.records("Campaign")) == campaigns_before, "a dry run creates nothing"
    too_many = stack.admin_run("backfill", "--from", "2026-10-01", "--to", "2026-11-01", "--max", "2")
    assert too_many.returncode == 1 and "more than --max 2" in too_many.stderr
    reversed_window = stack.admin_run("backfill", "--from", "2026-11-01", "--to", "2026-10-01")
    assert reversed_window.returncode == 1 and "after --to" in reversed_window.stderr
    assert len(stack.records("Campaign")) == campaigns_before

    done = stack.admin_run("backfill", "--from", "2026-10-01", "--to", "2026-11-01")
    assert done.returncode == 0, done.stderr
    assert "[3/3]" in done.stderr and "created SF Campaign" in done.stderr, done.stderr
    stack.settle()
    assert len(stack.records("Campaign")) == campaigns_before + 3
    links = {link["cm_campaign_id"]: link for link in json.loads(stack.admin("--json", "links"))}
    assert all(links[cm]["origin"] == "backfill" for cm in extras)
    assert {c.get("Name") for c in stack.records("Campaign") if c.get("CM_Campaign_ID__c") in extras} == {
        f"CM: {c['name']}" for c in extra_campaigns(stack)}, "the campaign template from the settings"
    assert json.loads(stack.admin("--json", "backfill", "--from", "2026-10-01", "--to", "2026-11-01", "--dry-run"))["campaigns"] == []
    assert not stack.errors, stack.errors


def test_doctor_on_an_org_missing_a_field_reports_it_with_the_fix():
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=5, activities=2, extra_campaigns=0, draft_after_enable=False)
    fields = scenario["sf"]["custom_fields"]["CampaignMember"]
    scenario["sf"]["custom_fields"]["CampaignMember"] = [f for f in fields if f["name"] != "CM_Activity_Date__c"]
    with open(path, "w") as f:
        json.dump(scenario, f)
    settings = {"cm_clients": [scenario["cm"]["clients"][0]["id"], "a" * 32], "cm_timezone": scenario["cm"]["timezone"]}
    stack = Stack(path, settings, functions=False)
    try:
        result = stack.admin_run("doctor")
        assert result.returncode == 1, result.stdout
        assert "PROBLEM  field CampaignMember.CM_Activity_Date__c: missing" in result.stdout, result.stdout
        assert "fix: deploy the product's fields: `cd infra/salesforce && sf project deploy start" in result.stdout
        assert f"PROBLEM  CM client {'a' * 32}: not found" in result.stdout
        assert "WARNING  CM lists" in result.stdout
        assert "2 problem(s)" in result.stdout
        report = json.loads(stack.admin_run("--json", "doctor").stdout)
        assert report["problems"] == 2
        assert {f["check"] for f in report["findings"] if f["severity"] == "ok"} >= {
            "settings", "Salesforce login", "Campaign Monitor login", "field Campaign.CM_Campaign_ID__c",
            "function scheduled-sync (ScheduledSyncFunction)", "function webhook-intake (WebhookIntakeFunction)"}

        # The functions' own configuration, as a stage deploys it: a CM URL with the API path
        # (every call a 404) is a problem of each function that calls CM.
        template = os.path.join(ROOT, "infra", "template.yaml")
        assert "ok       function campaign-autocreate" in stack.admin_run("doctor", "--template", template, "--stage", "prod").stdout
        broken = os.path.join(tempfile.mkdtemp(), "template.yaml")
        with open(template) as f, open(broken, "w") as out:
            text = f.read()
            out.write(text.replace("Default: https://api.createsend.com\n", "Default: https://api.createsend.com/api/v3.3\n"))
        result = stack.admin_run("doctor", "--template", broken)
        assert result.returncode == 1
        assert "PROBLEM  function scheduled-sync (ScheduledSyncFunction): CM_BASE_URL" in result.stdout, result.stdout
        assert "PROBLEM  function campaign-autocreate (CampaignAutocreateFunction): CM_BASE_URL" in result.stdout
        assert "PROBLEM  function webhook-consumer (WebhookConsumerFunction): CM_BASE_URL" in result.stdout
        assert "ok       function webhook-intake" in result.stdout, "the intake does not call CM"
        assert "5 problem(s)" in result.stdout

        # The console: its secret as the stack made it, then missing a field; its URL printed.
        url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/"
        result = stack.admin_run("doctor", "--console-url", url)
        assert f"ok       console secret: console-{stack.suffix} has the External Client App's consumer key and 1 cookie key(s)" in result.stdout, result.stdout
        assert f"ok       console URL: {url} (the custom label CM_Console_URL; the External Client App's callback URL is {url}auth/callback)" in result.stdout
        assert "WARNING  function admin-console (AdminConsoleFunction): CONSOLE_ORG_ID: parameter ConsoleOrgId has no default" in result.stdout, "sam deploy asks for it"
        stack.secrets.put_secret_value(SecretId=f"console-{stack.suffix}", SecretString=json.dumps({"client_id": "app"}))
        result = stack.admin_run("doctor", "--console-url", url)
        assert result.returncode == 1
        assert f"PROBLEM  console secret: console-{stack.suffix}: the console secret has no cookie_keys; the console stops at start" in result.stdout, result.stdout
        assert "fix: put {\"client_id\"" in result.stdout
        assert "3 problem(s)" in result.stdout
    finally:
        stack.close()
