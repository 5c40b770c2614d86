"""Engagement detail on the member (issue #22): with every detail field on, the worked example of
PRODUCT.md §3.3 plus a click on a second URL gives the right first and last open and click
dates and the last clicked URL in every refresh mode, and the same member whether the activity
arrives in one sync, in two, or twice (the campaign relinked: everything read again)."""

import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack  # noqa: E402
from test_rules_e2e import main_id, member, settings_for, small_scenario  # noqa: E402

DETAIL = {"first_opened": "CM_First_Opened__c", "last_opened": "CM_Last_Opened__c",
          "first_clicked": "CM_First_Clicked__c", "last_clicked": "CM_Last_Clicked__c",
          "last_clicked_url": "CM_Last_Clicked_URL__c", "bounce_type": "CM_Bounce_Type__c"}
MODES = {"never": "Sent", "always": "Opened", "once_only": "Opened", "forward_only": "Clicked"}
DELIVERIES = ["one sync", "two syncs", "twice"]
URL_A, URL_B = "https://example.com/offer?a=1", "https://example.com/events"


@pytest.fixture(scope="module")
def stack():
    path, scenario = small_scenario(recipients=16)
    stack = Stack(path, settings_for(scenario))
    stack.schedule()
    stack.settle()
    stack.sf_campaign = next(c["Id"] for c in stack.records("Campaign") if c.get("CM_Campaign_ID__c") == main_id(stack))
    stack.day = iter(range(2, 28))
    yield stack
    stack.close()


def people(stack):
    twin = "person0000005@example.com"
    return sorted(p["Email"] for p in stack.scenario["sf"]["records"]["Contact"] + stack.scenario["sf"]["records"]["Lead"]
                  if p["Email"] != twin)


def sync_at(stack, date, time):
    stack.set_cm_now(f"{date} {time}")
    outcome = stack.request_sync(main_id(stack))
    assert outcome.get("outcome") == "done", outcome


@pytest.mark.parametrize("mode,delivery", list(itertools.product(MODES, DELIVERIES)))
def test_first_and_last_dates_and_the_last_url_hold_however_the_activity_arrives(stack, mode, delivery):
    index = list(MODES).index(mode) * len(DELIVERIES) + DELIVERIES.index(delivery)
    email = people(stack)[index]
    day = next(stack.day)
    date = f"2026-12-{day:02}"
    stack.apply_settings(settings_for(stack.scenario, status_refresh=mode, member_detail_fields=DETAIL))
    cm, list_id = main_id(stack), stack.scenario["cm"]["lists"][0]["id"]
    first = [{"kind": "open", "email": email, "list_id": list_id, "date": f"{date} 10:00:00"},
             {"kind": "click", "email": email, "list_id": list_id, "date": f"{date} 10:05:00", "url": URL_A}]
    second = [{"kind": "click", "email": email, "list_id": list_id, "date": f"{date} 10:30:00", "url": URL_B},
              {"kind": "open", "email": email, "list_id": list_id, "date": f"{date} 11:00:00"}]
    if delivery == "two syncs":
        stack.add_activity(cm, first)
        sync_at(stack, date, "10:20:00")
        stack.add_activity(cm, second)
    else:
        stack.add_activity(cm, first + second)
    sync_at(stack, date, "11:30:00")
    if delivery == "twice":
        # Relinking forgets the watermarks: the next sync reads the campaign's whole activity again.
        stack.admin("unlink", cm)
        stack.admin("link", cm, stack.sf_campaign)
        sync_at(stack, date, "11:40:00")

    got = member(stack, email)
    # Sydney is UTC+11 in December: 10:00 local is 23:00 UTC the day before.
    before = f"2026-12-{day - 1:02}"
    assert got["Status"] == MODES[mode], (mode, delivery, got)
    assert got["CM_Activity_Date__c"] == f"{date}T00:00:00.000+0000", got
    assert got["CM_First_Opened__c"] == f"{before}T23:00:00.000+0000", got
    assert got["CM_Last_Opened__c"] == f"{date}T00:00:00.000+0000", got
    assert got["CM_First_Clicked__c"] == f"{before}T23:05:00.000+0000", got
    assert got["CM_Last_Clicked__c"] == f"{before}T23:30:00.000+0000", got
    assert got["CM_Last_Clicked_URL__c"] == URL_B, got
    assert got.get("CM_Bounce_Type__c") is None, "no bounce: the field stays empty"
    assert stack.errors == []
