"""Webhooks end to end: the sandbox posts a real-shaped batch to the intake's Function URL
under `cargo lambda watch`; the recorded events reach the consumer through the bus; the
Leads/Contacts end with the right opt-out and bounce fields."""

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, generate_scenario, recent_cm_date  # noqa: E402


@pytest.fixture(scope="module")
def stack():
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=12, activities=0, extra_campaigns=0, draft_after_enable=False)
    people = scenario["sf"]["records"]["Contact"] + scenario["sf"]["records"]["Lead"]
    emails = sorted(p["Email"] for p in people)
    newsletter = scenario["cm"]["lists"][0]
    client = scenario["cm"]["clients"][0]["id"]
    # The second person is still subscribed to another configured list.
    scenario["cm"]["lists"].append({"id": "e" * 32, "client_id": client, "name": "Offers",
                                    "subscribers": [{"email": emails[1], "name": "B", "state": "Active"}]})
    newsletter["subscribers"] = [{"email": e, "name": "", "state": "Active"} for e in emails]
    with open(path, "w") as f:
        json.dump(scenario, f)
    settings = {"cm_clients": [client], "cm_lists": [newsletter["id"], "e" * 32], "cm_timezone": scenario["cm"]["timezone"]}
    stack = Stack(path, settings)
    stack.emails = emails
    stack.list_id = newsletter["id"]
    stack.register_webhook(newsletter["id"])
    stack.warm_intake()
    yield stack
    stack.close()


def person(stack, email):
    return next(p for p in stack.records("Contact") + stack.records("Lead") if p["Email"] == email)


def test_a_batch_delivered_three_times_changes_salesforce_once(stack):
    a, b, c = stack.emails[0], stack.emails[1], stack.emails[2]
    events = [
        {"Type": "Deactivate", "Date": recent_cm_date(600), "EmailAddress": a.upper(), "Name": "A", "State": "Unsubscribed", "CustomFields": []},
        {"Type": "Deactivate", "Date": recent_cm_date(599), "EmailAddress": b, "Name": "B", "State": "Unsubscribed", "CustomFields": []},
        {"Type": "Deactivate", "Date": recent_cm_date(598), "EmailAddress": c, "Name": "C", "State": "Bounced", "CustomFields": []},
        {"Type": "Subscribe", "Date": recent_cm_date(597), "EmailAddress": "new@example.com", "Name": "", "CustomFields": [], "SignupIPAddress": "TypeManual"},
    ]
    stack.reset_counters()
    started = time.time()
    delivered = stack.deliver_webhook(stack.list_id, events)
    elapsed = time.time() - started
    assert [d["status"] for d in delivered] == [200], delivered
    print(f"\nintake answered a 4-event batch in {elapsed * 1000:.0f} ms (first call: the function starts)")
    stack.settle()
    assert stack.errors == [], stack.errors
    writes_once = stack.sf_calls()["writes"]
    assert person(stack, a)["HasOptedOutOfEmail"] is True
    assert person(stack, b)["HasOptedOutOfEmail"] is False, "all_lists: still subscribed to Offers"
    assert person(stack, c)["EmailBouncedDate"], "bounce recorded"
    assert person(stack, c)["HasOptedOutOfEmail"] is False

    for _ in range(2):
        started = time.time()
        assert [d["status"] for d in stack.deliver_webhook(stack.list_id, events)] == [200]
        print(f"warm redelivery answered in {(time.time() - started) * 1000:.0f} ms")
    stack.settle()
    assert stack.sf_calls()["writes"] == writes_once, "the redeliveries changed nothing in Salesforce"


def test_cms_test_call_is_accepted(stack):
    import base64
    auth = base64.b64encode(f"{stack.scenario['cm']['api_key']}:x".encode()).decode()
    headers = {"authorization": f"Basic {auth}"}
    request = urllib.request.Request(f"{stack.cm_url}/api/v3.3/lists/{stack.list_id}/webhooks.json", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        webhook_id = json.loads(response.read())[0]["WebhookID"]
    request = urllib.request.Request(f"{stack.cm_url}/api/v3.3/lists/{stack.list_id}/webhooks/{webhook_id}/test.json", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200, "CM reports the test delivery succeeded"


def test_bad_requests_get_4xx_and_record_nothing(stack):
    def post(url, body, content_type="application/json"):
        request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    stack.settle()
    handed_on = sum(1 for _, kind, _ in stack.invocations if kind == "webhook-batch-received.v1")
    good = json.dumps({"ListID": stack.list_id, "Events": [{"Type": "Subscribe", "Date": recent_cm_date(600), "EmailAddress": "x@example.com"}]}).encode()
    wrong_token = stack.webhook_url().rsplit("/", 1)[0] + "/not-the-token"
    assert post(wrong_token, good) == 401
    assert post(stack.webhook_url(), b"{not json") == 400
    assert post(stack.webhook_url(), good, "text/plain") == 415
    other = json.dumps({"ListID": "f" * 32, "Events": [{"Type": "Subscribe", "Date": recent_cm_date(600), "EmailAddress": "x@example.com"}]}).encode()
    assert post(stack.webhook_url(), other) == 403
    stack.settle()
    assert sum(1 for _, kind, _ in stack.invocations if kind == "webhook-batch-received.v1") == handed_on, "nothing handed on"


def test_an_event_failed_while_salesforce_was_down_is_replayed_from_the_record_once_fixed(stack):
    """Salesforce down while a delivery arrives: the consumer fails, Lambda's retries fail, and
    the invocation record is lost (the queue purged, or kept past its 14 days). The recorded
    event is still there, not applied: `replay` re-drives it once Salesforce is back."""
    d = stack.emails[3]
    events = [{"Type": "Deactivate", "Date": recent_cm_date(600), "EmailAddress": d, "Name": "D",
               "State": "Unsubscribed", "CustomFields": []}]
    stack.set_sf_faults({"seed": 9, "sf": {"error_rate": 1.0}})
    assert [r["status"] for r in stack.deliver_webhook(stack.list_id, events)] == [200]
    stack.settle()
    assert person(stack, d)["HasOptedOutOfEmail"] is False
    assert stack.failed_invocations() >= 1
    listed = stack.admin("webhooks", "events")
    assert "Unsubscribed" in listed and d not in listed, listed  # listed, its address redacted
    stack.sqs.purge_queue(QueueUrl=stack.destinations["FailedInvocationsQueue"])
    assert stack.failed_invocations() == 0

    stack.set_sf_faults({"seed": 9})
    assert "0 failed invocation(s) and 1 recorded webhook event(s) not applied would be replayed" in stack.admin("replay", "--dry-run")
    assert "1 recorded webhook event(s) not applied replayed" in stack.admin("replay")
    stack.settle()
    assert person(stack, d)["HasOptedOutOfEmail"] is True
    assert "0 failed invocation(s) and 0 recorded webhook event(s) not applied replayed" in stack.admin("replay")
    assert "every recorded webhook event is applied" in stack.admin("webhooks", "events")


@pytest.fixture(scope="module")
def big():
    """A list of 1,100 subscribers, almost all of them Leads or Contacts in Salesforce."""
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=1100, activities=0, extra_campaigns=0, draft_after_enable=False)
    people = scenario["sf"]["records"]["Contact"] + scenario["sf"]["records"]["Lead"]
    newsletter = scenario["cm"]["lists"][0]
    newsletter["subscribers"] = [{"email": p["Email"], "name": "", "state": "Active"} for p in people]
    with open(path, "w") as f:
        json.dump(scenario, f)
    client = scenario["cm"]["clients"][0]["id"]
    stack = Stack(path, {"cm_clients": [client], "cm_lists": [newsletter["id"]], "cm_timezone": scenario["cm"]["timezone"]})
    stack.people = sorted(p["Email"] for p in people)
    stack.list_id = newsletter["id"]
    stack.register_webhook(newsletter["id"])
    stack.warm_intake()
    yield stack
    stack.close()


def test_a_1000_event_delivery_with_custom_fields_and_one_bad_event_is_applied_in_batches_and_redelivered_for_nothing(big):
    fields = [{"Key": f"Field {i}", "Value": "v" * 60} for i in range(20)]
    events = []
    for i, email in enumerate(big.people[:999]):
        state = "Bounced" if i % 4 == 1 else "Unsubscribed"
        events.append({"Type": "Deactivate", "Date": recent_cm_date(600), "EmailAddress": email, "Name": "N",
                       "State": state, "CustomFields": fields})
    events.insert(500, {"Type": "Deactivate", "Date": recent_cm_date(600), "Name": "No address", "State": "Unsubscribed",
                        "CustomFields": fields})
    body_size = len(json.dumps({"ListID": big.list_id, "Events": events}))
    big.reset_counters()
    handed_before = sum(1 for _, kind, _ in big.invocations if kind == "webhook-batch-received.v1")
    delivered = big.deliver_webhook(big.list_id, events)
    assert [d["status"] for d in delivered] == [200], delivered
    big.settle()
    assert big.errors == [], big.errors
    invocations = sum(1 for _, kind, _ in big.invocations if kind == "webhook-batch-received.v1") - handed_before
    calls = big.sf_calls()
    print(f"\n1,000-event delivery ({body_size} bytes): {invocations} consumer invocation(s), {calls}")
    assert invocations <= 5
    assert calls["reads"] + calls["writes"] <= 20, calls
    people = {p["Email"]: p for p in big.records("Contact") + big.records("Lead")}
    unsubscribed = [e["EmailAddress"] for e in events if e.get("State") == "Unsubscribed" and "EmailAddress" in e]
    bounced = [e["EmailAddress"] for e in events if e.get("State") == "Bounced"]
    assert all(people[e]["HasOptedOutOfEmail"] is True for e in unsubscribed)
    assert all(people[e]["EmailBouncedDate"] for e in bounced)
    assert json.loads(big.admin("--json", "replay", "--dry-run"))["webhook_events"] == [], "nothing left unapplied"
    # The event without an address is listed with its reason where admins look for failures.
    runs = big.admin("runs", "--last", "5")
    assert f"webhook:{big.list_id}" in runs, runs
    run_id = next(line.split()[0] for line in runs.splitlines() if f"webhook:{big.list_id}" in line)
    detail = big.admin("run", run_id)
    assert "Events[500]" in detail and "EmailAddress" in detail, detail

    # The same delivery again: accepted, nothing handed on, nothing written.
    big.reset_counters()
    assert [d["status"] for d in big.deliver_webhook(big.list_id, events)] == [200]
    big.settle()
    assert big.sf_calls()["writes"] == 0
