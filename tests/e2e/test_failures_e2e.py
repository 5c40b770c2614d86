"""Nothing parked where no one looks (issue #16): the local relay runs a function as Lambda runs
an asynchronous invocation (any error retried twice, then the record goes to the template's
failed-invocations queue), and `cm-sf-admin replay` re-drives it once the cause is fixed, with
nothing applied twice."""

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_rules_e2e import main_id, settings_for, stack  # noqa: E402,F401  (the same small stack)


def failing_attempts(stack, detail_type):
    return [body for _, kind, body in stack.invocations
            if kind == detail_type and isinstance(body, dict) and "errorType" in body]


@pytest.mark.parametrize("kind,index,day", [("Retryable", 0, 3), ("NonRetryable", 1, 4)])
def test_a_failed_sync_is_retried_twice_parked_in_the_queue_and_replayed_once_fixed(stack, kind, index, day):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    email = sorted(m["Email"] for m in stack.records("CampaignMember"))[index]
    stack.add_activity(cm, [{"kind": "click", "email": email, "list_id": list_id, "date": f"2026-12-{day:02} 10:00:00"}])
    stack.set_cm_now(f"2026-12-{day:02} 10:30:00")
    if kind == "Retryable":
        stack.set_sf_faults({"seed": day, "sf": {"error_rate": 1.0}})  # Salesforce down: 5xx on every call
    else:  # a setting naming a field the org does not have: fixed by the admin, not by retrying
        stack.apply_settings(settings_for(stack.scenario, status_refresh="always",
                                          member_fields={"activity_date": "CM_Missing__c"}))
    before = len(failing_attempts(stack, "campaign-sync-requested.v1"))
    members_before = stack.records("CampaignMember")

    stack.publish("campaign-sync-requested.v1", {"idempotency_key": f"sync:fail{day}:{cm}", "run_id": f"fail{day}",
                                                 "cm_campaign_id": cm, "dry_run": False, "requested_by": "test"})
    stack.settle()
    attempts = failing_attempts(stack, "campaign-sync-requested.v1")[before:]
    assert [a["errorType"] for a in attempts] == [kind] * 3, attempts  # the first try and Lambda's two retries
    assert stack.failed_invocations() == 1
    failed = json.loads(stack.admin("--json", "run", f"fail{day}:{cm}"))
    assert failed["run"]["status"] == "failed", failed["run"]
    assert any(f["record"] == "run" and f["code"] == kind.replace("NonRetryable", "NOT_RETRYABLE").upper()
               for f in failed["failures"]), failed["failures"]

    # Fix the cause, then replay: applied once; a second replay finds nothing.
    stack.set_sf_faults({"seed": day})
    stack.apply_settings(settings_for(stack.scenario, status_refresh="always"))
    assert "1 failed invocation(s) and 0 recorded webhook event(s) not applied would be replayed" in stack.admin("replay", "--dry-run")
    assert "1 failed invocation(s) and 0 recorded webhook event(s) not applied replayed" in stack.admin("replay")
    stack.settle()
    assert stack.failed_invocations() == 0
    member = next(m for m in stack.records("CampaignMember") if m["Email"] == email)
    assert member["Status"] == "Clicked", member
    assert len(stack.records("CampaignMember")) == len(members_before), "nothing added twice"
    assert "0 failed invocation(s) and 0 recorded webhook event(s) not applied replayed" in stack.admin("replay")
    run = json.loads(stack.admin("--json", "run", f"fail{day}:{cm}"))["run"]
    assert run["status"] == "succeeded", run


def test_a_malformed_cm_row_is_skipped_and_listed_and_the_rest_is_synced(stack):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    good, bad = sorted(m["Email"] for m in stack.records("CampaignMember"))[2:4]
    stack.add_activity(cm, [
        {"kind": "open", "email": good, "list_id": list_id, "date": "2026-12-06 10:00:00"},
        # CM serves this row's Date in a form no CM date has: it cannot be read.
        {"kind": "click", "email": bad, "list_id": list_id, "date": "2026-12-06 10:01:00", "served_date": "06/12/2026 10:01"},
    ])
    stack.set_cm_now("2026-12-06 10:30:00")
    outcome = stack.request_sync(cm)
    assert outcome["outcome"] == "done", outcome
    assert outcome["counts"]["unreadable_rows"] == 1, outcome["counts"]
    members = {m["Email"]: m for m in stack.records("CampaignMember")}
    assert members[good]["Status"] == "Opened", "the rest of the campaign is synced"
    assert members[bad]["Status"] != "Clicked"
    detail = stack.admin("run", outcome["run_id"])
    # Its place in what CM served (the overlap re-reads earlier clicks of the same page first).
    assert re.search(r"CM clicks page 1 row \d+", detail) and "[CM_ROW_UNREADABLE]" in detail, detail
    assert bad not in detail, "the row itself (with its address) is not copied into the run"


def sync_envelope(cm, run):
    """The EventBridge event a sync request arrives as (EventBridge delivers at least once: the
    same envelope can reach the function twice)."""
    return {"version": "0", "id": f"e2e-{run}", "detail-type": "campaign-sync-requested.v1", "source": "cm-sf-sync",
            "account": "111122223333", "time": "2026-12-07T10:00:00Z", "region": "eu-west-1", "resources": [],
            "detail": {"idempotency_key": f"sync:{run}:{cm}", "run_id": run, "cm_campaign_id": cm,
                       "dry_run": False, "requested_by": "test"}}


def test_one_sync_event_delivered_twice_at_once_writes_what_one_delivery_writes(stack):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    stack.request_sync(cm)  # nothing pending before the comparison
    emails = sorted(m["Email"] for m in stack.records("CampaignMember") if m["Status"] != "Clicked")
    assert len(emails) >= 3, emails

    def one_click_round(email, day, deliveries):
        stack.add_activity(cm, [{"kind": "click", "email": email, "list_id": list_id, "date": f"2026-12-{day:02} 10:00:00"}])
        stack.set_cm_now(f"2026-12-{day:02} 10:30:00")
        stack.reset_counters()
        envelope = sync_envelope(cm, f"dup{day}")
        with ThreadPoolExecutor(max_workers=deliveries) as pool:
            outcomes = list(pool.map(lambda _: stack.invoke("scheduled-sync", envelope), range(deliveries)))
        return outcomes, stack.sf_calls()

    one_click_round(emails[0], 7, 1)  # a first click makes the campaign's Clicked status
    single, single_calls = one_click_round(emails[1], 8, 1)
    assert single[0]["outcome"] == "done", single
    double, double_calls = one_click_round(emails[2], 9, 2)
    assert all("errorType" not in o for o in double), double
    print(f"\none delivery: {single_calls}; the same event twice at once: {double_calls}; outcomes {[o['outcome'] for o in double]}")
    assert double_calls["writes"] == single_calls["writes"], "the second delivery wrote nothing"
    members = {m["Email"]: m for m in stack.records("CampaignMember")}
    assert members[emails[2]]["Status"] == "Clicked"
