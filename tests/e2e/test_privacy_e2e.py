"""Personal data kept only as long as needed (issue #21), and erased on request (#33): a sync with per-person failures and a
webhook delivery, at the most verbose log level the template allows (DEBUG); afterwards no
captured function log, run record, retry-queue entry or webhook record holds a whole address of
the scenario, and the admin CLI still finds a person's failures by their address."""

import json
import os
import re
import sys

import boto3
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, person_key, recent_cm_date  # noqa: E402
from test_rules_e2e import main_id, settings_for, small_scenario  # noqa: E402

ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]+")


@pytest.fixture(scope="module")
def stack():
    path, scenario = small_scenario()
    stack = Stack(path, settings_for(scenario), log_level="DEBUG")
    stack.schedule()
    stack.settle()
    yield stack
    stack.close()


def scenario_addresses(stack):
    people = stack.scenario["sf"]["records"]["Contact"] + stack.scenario["sf"]["records"]["Lead"]
    return {p["Email"].lower() for p in people if p.get("Email")}


def whole_addresses_in(text, addresses):
    return sorted({found.lower() for found in ADDRESS.findall(text)} & addresses)


def table_items(stack):
    table = boto3.resource("dynamodb").Table(stack.table)
    items, start = [], {}
    while True:
        page = table.scan(**start)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def test_logs_run_records_and_webhook_records_hold_no_whole_address(stack):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    addresses = scenario_addresses(stack)
    emails = sorted(m["Email"] for m in stack.records("CampaignMember"))
    assert len(emails) >= 4, emails

    # A sync whose member writes Salesforce refuses: per-person failures in the run record.
    stack.add_activity(cm, [{"kind": "click", "email": e, "list_id": list_id, "date": "2026-12-01 10:00:00"} for e in emails[:3]])
    stack.set_cm_now("2026-12-01 10:30:00")
    stack.set_sf_faults({"seed": 7, "sf": {"validation_error_rate": 1.0}})
    failed = stack.request_sync(cm)
    stack.set_sf_faults({"seed": 7})
    detail = json.loads(stack.admin("--json", "run", failed["run_id"]))
    people = [f for f in detail["failures"] if f.get("person")]
    assert len(people) >= 3, detail["failures"]
    assert all("***@" in f["record"] for f in people), people
    assert detail["run"]["expires_at"], "the run record expires (run_retention_days, 90 by default)"

    # The admin still finds one person's failures by their address (its key), and only theirs.
    found = json.loads(stack.admin("--json", "runs", "--last", "50", "--email", emails[0].upper()))
    assert [r["run"]["run_id"] for r in found] == [failed["run_id"]], found
    assert {f["person"] for f in found[0]["failures"]} == {person_key(emails[0], stack.keys_secret)}, found
    nobody = stack.admin("runs", "--last", "50", "--email", "nobody@example.org")
    assert "no failures of n***@example.org" in nobody, nobody
    retried = stack.admin("retry", failed["run_id"])
    assert "queued 3 people" in retried, retried
    stack.settle()
    assert all(m["Status"] == "Clicked" for m in stack.records("CampaignMember") if m["Email"] in emails[:3])

    # A webhook delivery with names, custom fields and an IP address; applied by the consumer.
    stack.register_webhook(list_id)
    stack.warm_intake()
    events = [
        {"Type": "Deactivate", "Date": recent_cm_date(540), "EmailAddress": emails[3], "Name": "Dee Four",
         "State": "Unsubscribed", "CustomFields": [{"Key": "Phone", "Value": "+44 20 7946 0000"}]},
        {"Type": "Subscribe", "Date": recent_cm_date(539), "EmailAddress": "brand.new.person@example.net",
         "Name": "Brand New", "CustomFields": [{"Key": "City", "Value": "Leeds"}], "SignupIPAddress": "203.0.113.9"},
    ]
    addresses.add("brand.new.person@example.net")
    assert [d["status"] for d in stack.deliver_webhook(list_id, events)] == [200]
    stack.settle()
    assert stack.errors == [], stack.errors
    assert next(p for p in stack.records("Contact") + stack.records("Lead") if p["Email"] == emails[3])["HasOptedOutOfEmail"]

    # What the deployment keeps: the state table (run records and their failures, the retry
    # queue, webhook events and batches) and the functions' logs.
    items = table_items(stack)
    stored = json.dumps(items, default=str)
    assert any(i["pk"].startswith("WEBHOOK#") for i in items), "webhook events are recorded"
    assert any(i["pk"].startswith("RUN#") for i in items), "run failures are recorded"
    assert whole_addresses_in(stored, addresses) == [], "the state table holds whole addresses"
    assert "Dee Four" not in stored and "203.0.113.9" not in stored and "Leeds" not in stored
    with open(stack.watch_log, errors="replace") as f:
        logs = f.read()
    assert "DEBUG" in logs, "the functions logged at DEBUG"
    assert whole_addresses_in(logs, addresses) == [], "a function log holds whole addresses"
    assert stack.webhook_token not in logs, "a function log holds the webhook token"

    # Erasure (issue #33 item 5): `forget` removes or rewrites every item holding a person's
    # address, key or the dedupe key of one of their webhook events; nobody else's.
    keys = {e: person_key(e, stack.keys_secret) for e in emails[:4]}
    hashes = [i["pk"][len("WEBHOOK#"):] for i in items if i["pk"].startswith("WEBHOOK#") and i.get("person") == keys[emails[3]]]
    assert hashes, "the applied webhook event keeps the person's key (its payload is dropped)"
    for forgotten in (emails[0], emails[3]):
        out = stack.admin("forget", forgotten.upper())
        assert "removed" in out and forgotten not in out, out
    after = json.dumps(table_items(stack), default=str)
    for needle in [emails[0], emails[3], keys[emails[0]], keys[emails[3]], *hashes]:
        assert needle.lower() not in after.lower(), f"{needle[:3]}… is still in the table"
    assert keys[emails[1]] in after, "other people's records are kept"
    refused = stack.admin_run("forget", "not-an-address")
    assert refused.returncode != 0 and "not an email address" in refused.stderr, refused
