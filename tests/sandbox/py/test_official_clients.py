"""The sandbox against Campaign Monitor's and Salesforce's official Python clients."""

import csv
import io

import pytest
from createsend import Campaign, Client, CreateSend
from simple_salesforce import Salesforce

from conftest import KEY

AUTH = {"api_key": "sandbox-api-key"}


def test_createsend_lists_sent_campaigns_page_by_page(sandbox, createsend_api):
    clients = CreateSend(AUTH).clients()
    assert len(clients) == 1
    client = Client(AUTH, clients[0].ClientID)
    seen = []
    page = 1
    while True:
        result = client.campaigns(page=page, page_size=10, order_direction="desc")
        seen.extend(c.CampaignID for c in result.Results)
        assert result.PageSize == 10
        if result.PageNumber >= result.NumberOfPages:
            break
        page += 1
    assert page == 3  # 25 campaigns, 10 a page
    assert len(seen) == len(set(seen)) == 25
    newest = client.campaigns(page=1, page_size=10).Results[0]
    assert newest.Name == "November newsletter"


def test_createsend_reads_a_summary(sandbox, createsend_api):
    main = next(c for c in sandbox["scenario"]["cm"]["campaigns"] if c["name"] == "November newsletter")
    summary = Campaign(AUTH, main["id"]).summary()
    assert summary.Recipients == 5000
    opens = [a for a in main["activity"] if a["kind"] == "open"]
    assert summary.TotalOpened == len(opens)
    assert summary.UniqueOpened == len({a["email"] for a in opens})


def test_createsend_pages_opens_with_a_date_filter(sandbox, createsend_api):
    main = next(c for c in sandbox["scenario"]["cm"]["campaigns"] if c["name"] == "November newsletter")
    since = "2026-11-02 12:00:00"
    expected = sorted(a["date"] for a in main["activity"] if a["kind"] == "open" and a["date"] >= since)
    campaign = Campaign(AUTH, main["id"])
    dates = []
    page = 1
    while True:
        result = campaign.opens(date=since, page=page, page_size=500)
        dates.extend(o.Date for o in result.Results)
        if result.PageNumber >= result.NumberOfPages:
            break
        page += 1
    assert page > 1, "the filter should still need several pages"
    assert dates == expected


def test_createsend_surfaces_cm_errors(sandbox, createsend_api):
    import createsend

    with pytest.raises(createsend.Unauthorized) as refused:
        CreateSend({"api_key": "wrong"}).clients()
    assert refused.value.data.Code == 100
    main = sandbox["scenario"]["cm"]["campaigns"][0]
    with pytest.raises(createsend.BadRequest) as bad:
        Campaign(AUTH, main["id"]).opens(page_size=5)
    assert bad.value.data.Code == 801


def login(sf_session):
    return Salesforce(
        username="integration@example.com",
        consumer_key="sandbox-consumer-key",
        privatekey_file=KEY,
        domain="login",
        session=sf_session,
        version="66.0",
    )


def test_simple_salesforce_authenticates_with_the_jwt_bearer_flow(sf_session):
    sf = login(sf_session)
    assert sf.session_id.startswith("00D")
    assert sf.query("SELECT Id FROM Campaign")["totalSize"] == 1


def test_a_jwt_signed_by_another_key_is_refused(sf_session, tmp_path):
    import subprocess

    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True)
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(username="integration@example.com", consumer_key="sandbox-consumer-key",
                   privatekey_file=str(other), domain="login", session=sf_session)


def test_simple_salesforce_follows_query_pages(sf_session, sandbox):
    sf = login(sf_session)
    contacts = sandbox["scenario"]["sf"]["records"]["Contact"]
    assert len(contacts) > 2000, "the scenario must need several pages"
    first = sf.query("SELECT Id, Email FROM Contact")
    assert first["done"] is False and len(first["records"]) == 2000
    everything = sf.query_all("SELECT Id, Email FROM Contact")
    assert everything["totalSize"] == len(contacts)
    assert len({r["Id"] for r in everything["records"]}) == len(contacts)


def test_collections_update_reports_the_one_failing_record(sf_session):
    sf = login(sf_session)
    members = sf.query("SELECT Id FROM CampaignMember LIMIT 3")["records"]
    records = [{"attributes": {"type": "CampaignMember"}, "id": m["Id"], "Status": "Responded"} for m in members]
    records[1]["Status"] = "No such status"
    result = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in result] == [True, False, True]
    assert result[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    updated = sf.query(f"SELECT Status, HasResponded FROM CampaignMember WHERE Id = '{members[0]['Id']}'")["records"][0]
    assert updated["Status"] == "Responded" and updated["HasResponded"] is True


def test_bulk2_update_job_and_its_results(sf_session):
    sf = login(sf_session)
    contacts = sf.query("SELECT Id FROM Contact LIMIT 50")["records"]
    rows = [{"Id": c["Id"], "HasOptedOutOfEmail": "true"} for c in contacts]
    rows.append({"Id": "003000SB9999999999", "HasOptedOutOfEmail": "true"})  # does not exist
    results = sf.bulk2.Contact.update(records=rows)
    assert results[0]["numberRecordsProcessed"] == 51
    assert results[0]["numberRecordsFailed"] == 1
    job_id = results[0]["job_id"]
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_failed_records(job_id))))
    assert [f["Id"] for f in failed] == ["003000SB9999999999"]
    assert failed[0]["sf__Error"].startswith("ENTITY_IS_DELETED")
    succeeded = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_successful_records(job_id))))
    assert len(succeeded) == 50 and succeeded[0]["sf__Created"] == "false"
    check = sf.query(f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{contacts[0]['Id']}'")["records"][0]
    assert check["HasOptedOutOfEmail"] is True
