"""PRODUCT.md §3.3 as an admin linking campaigns whose members reps already worked by hand: the
hand-set Status ("Responded - Called") survives the first sync in every mode; `always` then
follows real interactions while `forward_only` keeps it; and an email shared by two Contacts is
recorded as a choice in the run. Everything runs through the bus and the real functions."""

import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, generate_scenario  # noqa: E402

HAND_SET = "Responded - Called"
MODES = ["never", "always", "once_only", "forward_only"]
TWIN = "003000SB9999999991"


def hand_set_scenario():
    """One SF Campaign per mode, each already holding every person but one as a member with a
    hand-set Status; one CM campaign per mode sent to everyone; one Contact has a newer twin."""
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=8, activities=0, extra_campaigns=len(MODES), draft_after_enable=False)
    sf, cm = scenario["sf"], scenario["cm"]
    people = sf["records"]["Contact"] + sf["records"]["Lead"]
    loner = sf["records"]["Contact"][0]  # not a member anywhere; their twin is newer
    sf["records"]["Contact"].append({"Id": TWIN, "LastName": "Twin", "Email": loner["Email"],
                                     "LastModifiedDate": "2026-11-20T00:00:00.000+0000"})
    daily = [c for c in cm["campaigns"] if c["name"] != "November newsletter"]
    campaigns, members, statuses = {}, [], []
    for n, (mode, campaign) in enumerate(zip(MODES, daily)):
        sf_id = f"701000SB00000001{n}0"
        campaigns[mode] = {"cm": campaign["id"], "sf": sf_id}
        campaign["recipients"] = [{"email": p["Email"], "list_id": cm["lists"][0]["id"]} for p in people]
        campaign["activity"] = []
        sf["records"]["Campaign"].append({"Id": sf_id, "Name": f"Hand-worked {mode}", "IsActive": True})
        for k, (label, default, responded) in enumerate([("Sent", True, False), ("Responded", False, True),
                                                         (HAND_SET, False, True)]):
            statuses.append({"Id": f"01Y000SB0000000{n}{k}0", "CampaignId": sf_id, "Label": label, "IsDefault": default,
                             "HasResponded": responded, "SortOrder": k + 1})
        for i, person in enumerate(p for p in people if p["Id"] != loner["Id"]):
            field = "ContactId" if person["Id"].startswith("003") else "LeadId"
            members.append({"Id": f"00v000SB0{n}{i:08}", "CampaignId": sf_id, field: person["Id"], "Status": HAND_SET})
    sf["records"]["CampaignMember"] = members
    sf["records"]["CampaignMemberStatus"] = statuses
    with open(path, "w") as f:
        json.dump(scenario, f)
    return path, scenario, campaigns, loner


def settings_for(scenario, mode):
    return {"cm_clients": [c["id"] for c in scenario["cm"]["clients"]], "cm_lists": [l["id"] for l in scenario["cm"]["lists"]],
            "cm_timezone": scenario["cm"]["timezone"], "status_refresh": mode}


@pytest.fixture(scope="module")
def world():
    path, scenario, campaigns, loner = hand_set_scenario()
    stack = Stack(path, settings_for(scenario, "always"))
    yield stack, scenario, campaigns, loner
    stack.close()


def statuses(stack, sf_campaign):
    return {m["Email"]: m for m in stack.records("CampaignMember") if m["CampaignId"] == sf_campaign}


def test_hand_set_statuses_survive_a_first_sync_in_every_mode_and_the_choice_is_recorded(world):
    stack, scenario, campaigns, loner = world
    for mode in MODES:
        stack.apply_settings(settings_for(scenario, mode))
        stack.admin("link", campaigns[mode]["cm"], campaigns[mode]["sf"])  # writes the link, syncs at once
        stack.settle()
        members = statuses(stack, campaigns[mode]["sf"])
        hand_worked = {email: m for email, m in members.items() if email != loner["Email"]}
        assert hand_worked and all(m["Status"] == HAND_SET for m in hand_worked.values()), (mode, hand_worked)
        assert all(m["CM_Activity_Date__c"] for m in hand_worked.values()), f"{mode}: the Activity Date still advances"
        # The one person who was not a member is added as Sent: the newer of the two Contacts.
        added = members[loner["Email"]]
        assert (added["ContactId"], added["Status"]) == (TWIN, "Sent"), (mode, added)

    runs = json.loads(stack.admin("--json", "runs", "--last", "20"))
    run = next(r for r in runs if r["scope"] == campaigns["always"]["cm"])
    assert run["counts"]["hand_set_statuses_kept"] == len(scenario["sf"]["records"]["Contact"]) + len(
        scenario["sf"]["records"]["Lead"]) - 2, run["counts"]  # everyone but the loner and the twin
    assert run["counts"]["match_choices"] == 1, run["counts"]
    detail = stack.admin("run", run["run_id"])
    assert "1 emails shared by several people" in detail, detail
    assert f"chose {TWIN} (the most recently modified) over {loner['Id']}" in detail, detail


def test_always_then_follows_interactions_while_forward_only_keeps_the_hand_set_status(world):
    stack, scenario, campaigns, loner = world
    list_id = scenario["cm"]["lists"][0]["id"]
    email = next(p["Email"] for p in scenario["sf"]["records"]["Lead"] + scenario["sf"]["records"]["Contact"]
                 if p["Email"] != loner["Email"])
    for mode in ("always", "forward_only"):
        stack.add_activity(campaigns[mode]["cm"], [{"kind": "open", "email": email, "list_id": list_id,
                                                    "date": "2026-11-28 10:00:00"}])
    stack.set_cm_now("2026-11-28 11:00:00")

    stack.apply_settings(settings_for(scenario, "always"))
    stack.request_sync(campaigns["always"]["cm"])
    assert statuses(stack, campaigns["always"]["sf"])[email]["Status"] == "Opened"

    stack.apply_settings(settings_for(scenario, "forward_only"))
    report = stack.admin("sync", "--dry-run", "--campaign", campaigns["forward_only"]["cm"])
    assert "hand-set statuses left as they are: 1" in report, report
    stack.request_sync(campaigns["forward_only"]["cm"])
    member = statuses(stack, campaigns["forward_only"]["sf"])[email]
    assert member["Status"] == HAND_SET, member
    assert member["CM_Activity_Kind__c"] == "Opened", f"the open moved the Activity Date: {member}"
