"""`make demo`: the product's main job, locally, on defaults, in one command.

Starts the local stack (stack.py) on a sample scenario (several campaigns, a few thousand
recipients, every activity kind, one campaign already linked, one new draft to auto-create),
runs a dry run, then a real scheduled sync, and shows what changed in Salesforce.
"""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, demo_scenario  # noqa: E402


def main():
    path, scenario, settings = demo_scenario()
    print("Starting the local stack: Campaign Monitor and Salesforce stand-ins, DynamoDB/EventBridge emulator,")
    print("and the functions under `cargo lambda watch` (the first start compiles them)...")
    stack = Stack(path, settings)
    try:
        before = {o: len(stack.records(o)) for o in ("Campaign", "CampaignMember", "CampaignMemberStatus")}
        print(f"\nSalesforce before: {before['Campaign']} campaign(s), {before['CampaignMember']} members, "
              f"{before['CampaignMemberStatus']} member statuses.")

        print("\n=== 1. Dry run: what a sync would change (nothing is written) ===")
        started = time.time()
        outcome = stack.dry_run()
        if "errorType" in outcome:
            raise SystemExit(f"dry run failed: {outcome}")
        print(outcome.get("report", outcome))
        print(f"(dry run took {time.time() - started:.1f}s; Salesforce writes so far: {stack.sf_calls()['writes']})")

        print("=== 2. The scheduled sync, for real ===")
        stack.reset_counters()
        started = time.time()
        stack.schedule()
        stack.settle()
        calls = stack.sf_calls()
        records = sum(len(c.get("recipients", [])) + len(c.get("activity", [])) for c in scenario["cm"]["campaigns"])
        print(f"done in {time.time() - started:.1f}s with {calls['reads']} Salesforce reads and {calls['writes']} writes "
              f"(the naive way, one lookup and one write per record, would take about {2 * records}).")
        if stack.errors:
            print("function errors:", stack.errors)

        print("\n=== 3. What changed in Salesforce ===")
        campaigns = stack.records("Campaign")
        members = stack.records("CampaignMember")
        statuses = stack.records("CampaignMemberStatus")
        for campaign in campaigns:
            mine = [m for m in members if m["CampaignId"] == campaign["Id"]]
            print(f"\nCampaign \"{campaign['Name']}\" ({campaign['Id']}, CM {campaign.get('CM_Campaign_ID__c')})")
            stats = {k: campaign[k] for k in ("NumberSent", "CM_Total_Opens__c", "CM_Unique_Opens__c", "CM_Clicks__c",
                                               "CM_Bounces__c", "CM_Unsubscribes__c", "CM_Spam_Complaints__c") if campaign.get(k) is not None}
            print(f"  statistics: {stats or '(none yet)'}")
            labels = [f"{s['Label']}{' (responded)' if s['HasResponded'] else ''}" for s in statuses if s["CampaignId"] == campaign["Id"]]
            print(f"  member statuses: {', '.join(labels)}")
            by_status = collections.Counter(m["Status"] for m in mine)
            print(f"  members: {len(mine)} ({', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))}); "
                  f"responded: {campaign.get('NumberOfResponses')}")
        added = len(members) - before["CampaignMember"]
        print(f"\nMembers added by the sync: {added}, about {added * 2 / 1024:.1f} MB of Salesforce data storage "
              f"(about 2 KB a record; `add_missing_members: engaged` adds only recipients who interacted).")
        people = stack.records("Contact") + stack.records("Lead")
        print(f"\nLeads/Contacts: {sum(1 for p in people if p.get('HasOptedOutOfEmail'))} opted out, "
              f"{sum(1 for p in people if p.get('EmailBouncedDate'))} with a bounce recorded.")

        print("\n=== 4. A second sync with nothing new ===")
        stack.reset_counters()
        stack.schedule()
        stack.settle()
        calls = stack.sf_calls()
        print(f"Salesforce writes: {calls['writes']}, reads: {calls['reads']} (nothing new, so nothing written).")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
