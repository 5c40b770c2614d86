"""A deployment on OAuth (CM tokens, and Salesforce's refresh-token flow with rotation on)
through three token refreshes, end to end: the real functions under `cargo lambda watch` and the
admin CLI share the tokens through the state table in the emulator, as the deployed containers
do. CM replaces the refresh token with every refresh (and so does Salesforce with rotation on): a
process that kept the new one to itself would leave every other one a refresh token that no
longer works. The secrets are the seed and are not written while the table takes the saves
(Secrets Manager asks for at most one PutSecretValue per 10 minutes)."""

import json
import os
import sys
import tempfile

import boto3

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, generate_scenario, http  # noqa: E402

MAIN = "November newsletter"


def shared_tokens(stack):
    """The version of each credential's shared-tokens item, and the items' text."""
    table = boto3.resource("dynamodb").Table(stack.table)
    items = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "TOKENS"})["Items"]
    return {i["sk"]: int(i["version"]) for i in items}, json.dumps(items, default=str)


def test_an_oauth_deployment_survives_three_token_refreshes_across_invocations():
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path, recipients=12, activities=0, extra_campaigns=0, draft_after_enable=False)
    scenario["cm"]["oauth"] = {"client_id": "sandbox-oauth-client", "client_secret": "sandbox-oauth-secret",
                               "access_token": "cm-access-start", "refresh_token": "cm-refresh-start"}
    scenario.setdefault("faults", {}).setdefault("sf", {})["rotate_refresh_tokens"] = True
    with open(path, "w") as f:
        json.dump(scenario, f)
    settings = {"cm_clients": [c["id"] for c in scenario["cm"]["clients"]], "cm_lists": [l["id"] for l in scenario["cm"]["lists"]],
                "cm_timezone": scenario["cm"]["timezone"]}
    stack = Stack(path, settings, oauth=True)
    try:
        cm = next(c for c in scenario["cm"]["campaigns"] if c["name"] == MAIN)["id"]
        list_id = scenario["cm"]["lists"][0]["id"]
        people = sorted(p["Email"] for p in scenario["sf"]["records"]["Contact"])
        seeds = (stack.secret("cm"), stack.secret("sf"))
        stack.schedule()
        stack.settle()
        versions, _ = shared_tokens(stack)
        assert versions.get("sf") == 1, f"the first sign-in rotated the SF token and shared it: {versions}"
        for refresh in range(3):
            # Every CM access token and SF session ends now.
            http("POST", f"{stack.cm_url}/_sandbox/cm/expire-tokens", {})
            http("POST", f"{stack.sf_url}/_sandbox/sf/expire-sessions", {})
            if refresh == 1:
                # A cold start first (the admin CLI starts as a new container does): it takes the
                # shared tokens, renews them and shares the next; the warm function then finds
                # its own tokens refused and takes up the shared ones.
                doctor = stack.admin_run("doctor").stdout
                assert "ok       Campaign Monitor login" in doctor and "ok       Salesforce login" in doctor, doctor
            stack.add_activity(cm, [{"kind": "open", "email": people[refresh], "list_id": list_id,
                                     "date": f"2026-12-0{refresh + 1} 10:00:00"}])
            stack.set_cm_now(f"2026-12-0{refresh + 1} 10:30:00")
            stack.request_sync(cm)
            assert stack.errors == [], stack.errors
            statuses = {m["Email"]: m["Status"] for m in stack.records("CampaignMember")}
            assert statuses[people[refresh]] == "Opened", f"refresh {refresh + 1}: the open reached Salesforce"
            before, versions = versions, shared_tokens(stack)[0]
            assert versions["cm"] > before.get("cm", 0), f"refresh {refresh + 1}: the rotated CM tokens are shared"
            assert versions["sf"] > before["sf"], f"refresh {refresh + 1}: the rotated SF token is shared"
        _, stored = shared_tokens(stack)
        for secret in seeds:
            assert secret["refresh_token"] not in stored, "the shared tokens are sealed"
        assert "cm-refresh" not in stored and "access" not in stored.lower(), "no token in the clear"
        assert (stack.secret("cm"), stack.secret("sf")) == seeds, "the secrets were not written: the table took every save"
        runs = json.loads(stack.admin("--json", "runs", "--last", "20"))
        assert runs and all(r["status"] == "succeeded" for r in runs), runs
        # The secrets keep their shape: what the functions read at the next cold start.
        assert set(stack.secret("sf")) == {"flow", "token_host", "client_id", "refresh_token"}
        assert set(stack.secret("cm")) == {"access_token", "refresh_token"}
    finally:
        stack.close()
