"""A deployment on OAuth (CM tokens, and Salesforce's refresh-token flow with rotation on)
through three token refreshes, end to end: the real functions under `cargo lambda watch` and the
admin CLI share the secrets in the emulator, as the deployed containers do. CM replaces the
refresh token with every refresh (and so does Salesforce with rotation on): a process that kept
the new one to itself would leave every other one a refresh token that no longer works."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, generate_scenario, http  # noqa: E402

MAIN = "November newsletter"


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
        stack.schedule()
        stack.settle()
        cm_tokens = [stack.secret("cm")["refresh_token"]]
        sf_tokens = [stack.secret("sf")["refresh_token"]]
        assert sf_tokens[0] != "sandbox-refresh-token", "the first sign-in rotated the SF token and saved it"
        for refresh in range(3):
            # Every CM access token and SF session ends now.
            http("POST", f"{stack.cm_url}/_sandbox/cm/expire-tokens", {})
            http("POST", f"{stack.sf_url}/_sandbox/sf/expire-sessions", {})
            if refresh == 1:
                # A cold start first (the admin CLI reads the secrets as a new container does):
                # it refreshes with the saved token and saves the next; the warm function then
                # finds its own refresh token spent and takes up the saved ones.
                doctor = stack.admin_run("doctor").stdout
                assert "ok       Campaign Monitor login" in doctor and "ok       Salesforce login" in doctor, doctor
            stack.add_activity(cm, [{"kind": "open", "email": people[refresh], "list_id": list_id,
                                     "date": f"2026-12-0{refresh + 1} 10:00:00"}])
            stack.set_cm_now(f"2026-12-0{refresh + 1} 10:30:00")
            stack.request_sync(cm)
            assert stack.errors == [], stack.errors
            statuses = {m["Email"]: m["Status"] for m in stack.records("CampaignMember")}
            assert statuses[people[refresh]] == "Opened", f"refresh {refresh + 1}: the open reached Salesforce"
            cm_token, sf_token = stack.secret("cm")["refresh_token"], stack.secret("sf")["refresh_token"]
            assert cm_token not in cm_tokens, f"refresh {refresh + 1}: the rotated CM token is saved"
            assert sf_token not in sf_tokens, f"refresh {refresh + 1}: the rotated SF token is saved"
            cm_tokens.append(cm_token)
            sf_tokens.append(sf_token)
        runs = json.loads(stack.admin("--json", "runs", "--last", "20"))
        assert runs and all(r["status"] == "succeeded" for r in runs), runs
        # The secrets keep their shape: what the functions read at the next cold start.
        assert set(stack.secret("sf")) == {"flow", "token_host", "client_id", "refresh_token"}
        assert set(stack.secret("cm")) == {"access_token", "refresh_token"}
    finally:
        stack.close()
