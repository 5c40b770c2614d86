"""End to end: the real functions under `cargo lambda watch`, triggered the way the deployed
EventBridge rules trigger them, against the sandbox and the moto emulator."""

import collections
import datetime
import os
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, generate_scenario, load_template, template_environment  # noqa: E402


@pytest.fixture(scope="module")
def stack():
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=1500, activities=1200, extra_campaigns=2)
    settings = {
        "cm_clients": [c["id"] for c in scenario["cm"]["clients"]],
        "cm_lists": [l["id"] for l in scenario["cm"]["lists"]],
        "cm_timezone": scenario["cm"]["timezone"],
        "auto_create_campaigns": True,
    }
    stack = Stack(path, settings)
    yield stack
    stack.close()


def test_a_dry_run_through_the_function_writes_nothing(stack):
    before = stack.records("CampaignMember")
    outcome = stack.dry_run()
    assert "errorType" not in outcome, outcome
    assert "members to add" in outcome["report"]
    assert "+ \"December offers (draft)\"" in outcome["report"], "the new draft would be auto-created"
    assert stack.sf_calls()["writes"] == 0
    assert stack.records("CampaignMember") == before


def test_the_scheduled_sync_fans_out_creates_links_and_syncs(stack):
    stack.reset_counters()
    stack.schedule()
    stack.settle()
    assert stack.errors == [], stack.errors
    kinds = collections.Counter(detail_type for _, detail_type, _ in stack.invocations)
    assert kinds["campaign-discovered.v1"] == 1, kinds
    assert kinds["campaign-linked.v1"] == 1, kinds
    assert kinds["campaign-sync-requested.v1"] >= 1, kinds

    campaigns = {c["Name"]: c for c in stack.records("Campaign")}
    assert set(campaigns) == {"November newsletter", "December offers (draft)"}, "older campaigns are not created retrospectively"
    main = campaigns["November newsletter"]
    assert main["NumberSent"] == 1500
    members = [m for m in stack.records("CampaignMember") if m["CampaignId"] == main["Id"]]
    statuses = collections.Counter(m["Status"] for m in members)
    assert statuses["Clicked"] > 0 and statuses["Opened"] > 0 and statuses["Bounced"] > 0, statuses
    assert all(m["HasResponded"] == (m["Status"] in ("Opened", "Clicked")) for m in members)
    people = len(stack.scenario["sf"]["records"]["Contact"]) + len(stack.scenario["sf"]["records"]["Lead"])
    assert len(members) == people, "every matched recipient is a member, once"
    draft_statuses = [s["Label"] for s in stack.records("CampaignMemberStatus") if s["CampaignId"] == campaigns["December offers (draft)"]["Id"]]
    assert "Clicked" in draft_statuses, "the auto-created campaign has its statuses"


def test_a_second_sync_with_nothing_new_writes_nothing(stack):
    stack.reset_counters()
    stack.schedule()
    stack.settle()
    calls = stack.sf_calls()
    assert calls["writes"] == 0, calls
    # The campaigns' statistics are as last written, and nothing else is new: the only read is
    # the discovery of links typed into Salesforce.
    assert calls["reads"] <= 1, f"{calls} with nothing new"


def test_the_functions_run_on_the_templates_own_configuration_and_a_drift_in_it_fails(stack):
    """Every test here runs the functions on `template_environment`: the template's variables
    with only names and hosts made local. Written the way a deployment gets it, the CM base URL
    must be the API root; the form that doubled `/api/v3.3` is refused at start, by name."""
    assert stack.env["CM_BASE_URL"] == stack.cm_url, "the template's root, host swapped"
    template = load_template()
    template["Parameters"]["CmBaseUrl"]["Default"] = "https://api.createsend.com/api/v3.3"
    drifted = dict(os.environ, ALLOW_PLAIN_HTTP="1", **template_environment(stack.local, template))
    assert drifted["CM_BASE_URL"] == stack.cm_url + "/api/v3.3"
    result = subprocess.run([os.path.join(BIN, "cm-sf-admin"), "sync", "--dry-run"], env=drifted,
                            capture_output=True, text=True)
    assert result.returncode == 1, result
    assert "must be the API root, without /api/v3.3" in result.stderr, result.stderr


def test_plain_http_to_cm_or_sf_is_refused_without_the_local_flag(stack):
    """The sandbox speaks plain HTTP, allowed only by ALLOW_PLAIN_HTTP, which the template never
    sets: without it the same configuration is refused at start, naming what is insecure."""
    assert "ALLOW_PLAIN_HTTP" not in template_environment(stack.local)
    plain = {k: v for k, v in stack.env.items() if k != "ALLOW_PLAIN_HTTP"}
    result = subprocess.run([os.path.join(BIN, "cm-sf-admin"), "sync", "--dry-run"], env=plain,
                            capture_output=True, text=True)
    assert result.returncode == 1, result
    assert "must be an https:// URL" in result.stderr, result.stderr


def test_the_hot_schedule_syncs_campaigns_in_their_first_hours_only(stack):
    """The template's hot schedule input through the real runtime: after a sync an hour after
    the send, the hot run syncs the campaign; after one three days after it, it does not (the
    scheduled runs still do)."""
    main = next(c for c in stack.scenario["cm"]["campaigns"] if c["name"] == "November newsletter")
    sent = datetime.datetime.strptime(main["sent_date"], "%Y-%m-%d %H:%M:%S")
    at = lambda hours: (sent + datetime.timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    stack.set_cm_now(at(1))
    stack.request_sync(main["id"])  # its sync records when it is due next, and that it is young
    stack.settle()
    stack.set_cm_now(at(1.1))
    outcome = stack.hot_schedule()
    assert outcome["syncs_requested"] == 1 and not outcome["busy"], outcome
    assert "discovered" not in outcome, f"a hot run does nothing else: {outcome}"
    stack.settle()
    assert stack.errors == [], stack.errors

    stack.set_cm_now(at(72))
    stack.request_sync(main["id"])
    stack.settle()
    outcome = stack.hot_schedule()
    assert outcome["syncs_requested"] == 0, outcome


def test_a_retired_campaign_is_left_by_the_schedule_and_synced_on_demand(stack):
    """Past the cadence's 60 days a campaign is retired: the scheduled run does not sync it (its
    daily check finds nothing new), `cm-sf-admin sync --campaign` does."""
    main = next(c for c in stack.scenario["cm"]["campaigns"] if c["name"] == "November newsletter")
    sent = datetime.datetime.strptime(main["sent_date"], "%Y-%m-%d %H:%M:%S")
    stack.set_cm_now((sent + datetime.timedelta(days=61)).strftime("%Y-%m-%d %H:%M:%S"))
    stack.request_sync(main["id"])  # its last sync past day 60: retired

    def syncs_of_main(since):
        return [body for _, kind, body in stack.invocations[since:]
                if kind == "campaign-sync-requested.v1" and str((body or {}).get("run_id", "")).endswith(main["id"])]

    before = len(stack.invocations)
    outcome = stack.schedule()
    stack.settle()
    assert outcome["syncs_not_due"] >= 1 and outcome["active_again"] == 0, outcome
    assert syncs_of_main(before) == [], "retired: not synced by the schedule"

    before = len(stack.invocations)
    stack.admin("sync", "--campaign", main["id"])
    stack.settle()
    assert len(syncs_of_main(before)) == 1, "synced on demand"
    assert stack.errors == [], stack.errors
