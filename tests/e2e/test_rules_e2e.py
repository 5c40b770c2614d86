"""The rules of PRODUCT.md §3 end to end: each sync is an event on the bus, routed by the
deployed rule pattern to the real function under `cargo lambda watch`; the result is read from
the Salesforce stand-in. Every test runs twice: on a sandbox that spares its clients, and in the
sandbox's realism mode (Bulk results in any order, short query pages, jobs that stay
`InProgress`, unknown statuses turned into the default, the concurrent-request limit, CM records
shown hours late, OAuth tokens that rotate on both sides)."""

import collections
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, generate_scenario, person_key  # noqa: E402

MAIN = "November newsletter"


def small_scenario(language="en", recipients=8):
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=recipients, activities=0, extra_campaigns=0, draft_after_enable=False)
    main = next(c for c in scenario["cm"]["campaigns"] if c["name"] == MAIN)
    main["recipients"] = []  # no Sent records: members start as "Sent"
    sf = scenario["sf"]
    sf["language"] = language
    people = sf["records"]["Contact"] + sf["records"]["Lead"]
    # Everyone in SF is a member, except person 5, who has a twin Contact with the same email.
    twin_of = next(p for p in people if p["Email"] == "person0000005@example.com")
    sf["records"]["Contact"].append({"Id": "003000SB9999999990", "LastName": "Twin", "Email": twin_of["Email"],
                                     "LastModifiedDate": twin_of["LastModifiedDate"]})
    members = []
    for i, person in enumerate(p for p in people if p["Email"] != twin_of["Email"]):
        field = "ContactId" if person["Id"].startswith("003") else "LeadId"
        members.append({"Id": f"00v000SB{i:010}", "CampaignId": "701000SB0000000001", field: person["Id"], "Status": "Sent"})
    sf["records"]["CampaignMember"] = members
    with open(path, "w") as f:
        json.dump(scenario, f)
    return path, scenario


def settings_for(scenario, **extra):
    return {"cm_clients": [c["id"] for c in scenario["cm"]["clients"]], "cm_lists": [l["id"] for l in scenario["cm"]["lists"]],
            "cm_timezone": scenario["cm"]["timezone"], **extra}


@pytest.fixture(scope="module", params=["clean", "realism"])
def stack(request):
    path, scenario = small_scenario()
    stack = Stack(path, settings_for(scenario), realism=request.param == "realism")
    stack.schedule()  # finds the link on the SF Campaign and takes the first watermarks
    stack.settle()
    yield stack
    stack.close()


def main_id(stack):
    return next(c for c in stack.scenario["cm"]["campaigns"] if c["name"] == MAIN)["id"]


def member(stack, email):
    return next(m for m in stack.records("CampaignMember") if m["Email"] == email)


@pytest.mark.parametrize("mode,after1,after2,day", [
    ("never", "Sent", "Sent", 2),
    ("always", "Clicked", "Opened", 4),
    ("once_only", "Opened", "Opened", 6),
    ("forward_only", "Clicked", "Clicked", 8),
])
def test_the_worked_example(stack, mode, after1, after2, day):
    stack.apply_settings(settings_for(stack.scenario, status_refresh=mode))
    people = sorted(p["Email"] for p in stack.scenario["sf"]["records"]["Contact"] + stack.scenario["sf"]["records"]["Lead"]
                    if p["Email"] not in ("person0000005@example.com", "person0000006@example.com"))
    email = people[day // 2 - 1]
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    date = f"2026-12-{day:02}"
    stack.add_activity(cm, [{"kind": "open", "email": email, "list_id": list_id, "date": f"{date} 10:00:00"},
                            {"kind": "click", "email": email, "list_id": list_id, "date": f"{date} 10:05:00"}])
    stack.set_cm_now(f"{date} 10:30:00")
    stack.request_sync(cm)
    first = member(stack, email)
    stack.add_activity(cm, [{"kind": "open", "email": email, "list_id": list_id, "date": f"{date} 11:00:00"}])
    stack.set_cm_now(f"{date} 11:30:00")
    stack.request_sync(cm)
    second = member(stack, email)
    assert (first["Status"], second["Status"]) == (after1, after2)
    # Sydney is UTC+11 in December: 10:05 local is 23:05 UTC the day before.
    assert first["CM_Activity_Date__c"] == f"2026-12-{day - 1:02}T23:05:00.000+0000"
    assert second["CM_Activity_Date__c"] == f"{date}T00:00:00.000+0000"
    assert stack.errors == []


def test_unmatched_and_ambiguous_emails_are_reported_never_guessed(stack):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    stack.add_activity(cm, [{"kind": "open", "email": "stranger@example.com", "list_id": list_id, "date": "2026-12-10 10:00:00"},
                            {"kind": "open", "email": "person0000005@example.com", "list_id": list_id, "date": "2026-12-10 10:00:00"}])
    stack.set_cm_now("2026-12-10 10:30:00")
    outcome = stack.request_sync(cm)
    assert "plan" not in outcome, "a function answers with a summary; the skips are in the run record"
    run = json.loads(stack.admin("--json", "run", outcome["run_id"]))
    reasons = {failure.get("person"): failure["reason"] for failure in run["failures"]}
    assert reasons[person_key("stranger@example.com", stack.keys_secret)] == "unmatched email"
    assert reasons[person_key("person0000005@example.com", stack.keys_secret)] == "several matches"
    assert "stranger@example.com" not in json.dumps(run), "the run record keeps no whole address"
    assert not any(m["Email"] == "person0000005@example.com" for m in stack.records("CampaignMember"))


def test_a_run_cut_off_by_salesforce_failures_resumes_with_nothing_lost_or_doubled(stack):
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    stack.apply_settings(settings_for(stack.scenario, status_refresh="always"))
    email = "person0000006@example.com"
    assert any(p["Email"] == email for p in stack.scenario["sf"]["records"]["Contact"] + stack.scenario["sf"]["records"]["Lead"])
    stack.add_activity(cm, [{"kind": "click", "email": email, "list_id": list_id, "date": "2026-12-12 10:00:00"}])
    stack.set_cm_now("2026-12-12 10:30:00")
    stack.set_sf_faults({"seed": 1, "sf": {"lock_row_rate": 1.0}})
    cut = stack.request_sync(cm)
    assert cut["counts"]["failed"] > 0, cut["counts"]
    assert member(stack, email)["Status"] == "Sent", "nothing applied while every row was locked"
    stack.set_sf_faults({"seed": 1})
    stack.request_sync(cm)
    assert member(stack, email)["Status"] == "Clicked", "the activity was not lost: the watermark had not moved"
    emails = collections.Counter(m["Email"] for m in stack.records("CampaignMember"))
    assert max(emails.values()) == 1, "nothing doubled"


@pytest.mark.parametrize("realism", [False, True], ids=["clean", "realism"])
def test_a_stock_status_org_in_another_language_gets_the_mapped_statuses(realism):
    path, scenario = small_scenario(language="ja")
    stack = Stack(path, settings_for(scenario), realism=realism)
    try:
        cm, list_id = main_id(stack), scenario["cm"]["lists"][0]["id"]
        email = sorted(p["Email"] for p in scenario["sf"]["records"]["Contact"])[0]
        stack.add_activity(cm, [{"kind": "click", "email": email, "list_id": list_id, "date": "2026-11-26 10:00:00"}])
        stack.schedule()
        stack.settle()
        statuses = {s["Label"]: s for s in stack.records("CampaignMemberStatus")}
        assert statuses["送信"]["IsDefault"] and not statuses["送信"]["HasResponded"], "the org's own default stays"
        assert statuses["Clicked"]["HasResponded"] and statuses["Opened"]["HasResponded"]
        assert not statuses["Bounced"]["HasResponded"]
        clicked = member(stack, email)
        assert (clicked["Status"], clicked["HasResponded"]) == ("Clicked", True)
    finally:
        stack.close()
