//! Signing in with Salesforce for real: the console served on a loopback port, the sandbox's
//! OAuth web server flow (authorize page, code, token with PKCE, identity URL, revocation), and
//! a settings change made through the pages (preview → confirm), over HTTP as a browser would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::Arc;

use chrono::Utc;
use console::pages::tests_support;
use console::salesforce::SalesforceAuth;
use console::{Console, router};
use events::LinkOrigin;
use events::publisher::{MemorySink, Publisher};
use mapping::Settings;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use sandbox::generate::{Shape, generate};
use state::memory::MemoryStore;
use state::{
    AuditStore, CatalogStore, LinkRecord, LinkStore, PreviewStore, RetryQueue, RunFailure, RunRecord, RunStatus,
    RunStore, SettingsStore,
};

struct Stack {
    origin: String,
    scenario: sandbox::scenario::Scenario,
    publisher: Arc<Publisher<MemorySink>>,
    sf_url: String,
    store: Arc<MemoryStore>,
    http: reqwest::Client,
    _sandbox: sandbox::Running,
}

async fn stack() -> Stack {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut scenario = generate(&Shape {
        recipients: 5,
        activities: 0,
        ..Shape::default()
    });
    scenario.sf.console_app.callback_urls = vec![format!("{origin}/auth/callback")];
    let running = harness::start_sandbox(scenario.clone()).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    let settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], mapping::Tz::UTC);
    store.save_settings(&settings, None, Utc::now()).await.unwrap();
    let mut config = tests_support::config();
    config.public_origin = origin.clone();
    config.sf_login_url = running.sf_url.clone();
    config.client_id = "sandbox-console-app".into();
    let publisher = Arc::new(Publisher::new(MemorySink::default()));
    let console = Console {
        config,
        store: store.clone(),
        publisher: publisher.clone(),
        salesforce: SalesforceAuth::new().unwrap(),
    };
    tokio::spawn(async move { axum::serve(listener, router(console)).await });
    Stack {
        origin,
        scenario,
        publisher,
        sf_url: running.sf_url.clone(),
        store,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _sandbox: running,
    }
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")) && !c.starts_with(&format!("{name}=;")))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    let raw = &html[start..start + html[start..].find('"').unwrap()];
    raw.replace("&#34;", "\"")
        .replace("&#38;", "&")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
}

/// Signs in as the sandbox user `user` (clicking "Allow" for them): the console's answer to the
/// callback.
impl Stack {
    /// REST calls made with signed-in users' own tokens.
    fn user_calls(&self) -> u64 {
        let world = self._sandbox.state.lock();
        world
            .sf
            .user_tokens
            .keys()
            .filter_map(|token| world.sf.tokens.get(token))
            .sum()
    }
}

/// Posts the confirm form of a preview page, as the browser would.
async fn confirm(stack: &Stack, session: &str, csrf: &str, preview: &str) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/settings/confirm", stack.origin))
        .header(COOKIE, session)
        .header(ORIGIN, stack.origin.clone())
        .form(&[
            ("csrf", csrf),
            ("base_version", &hidden(preview, "base_version")),
            ("proposed", &hidden(preview, "proposed")),
        ])
        .send()
        .await
        .unwrap()
}

async fn sign_in(stack: &Stack, user: &str) -> reqwest::Response {
    let started = stack
        .http
        .get(format!("{}/auth/start", stack.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let sign_in_cookie = cookie_of(&started, "cmsf-signin").expect("a sign-in cookie");
    let authorize = location(&started);
    assert!(
        authorize.starts_with(&format!("{}/services/oauth2/authorize?", stack.sf_url)),
        "{authorize}"
    );
    let page = stack.http.get(&authorize).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Allow as Ada Admin"), "{page}");
    let query = authorize.split_once('?').unwrap().1;
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    form.push(("user".into(), user.into()));
    let approved = stack
        .http
        .post(format!("{}/services/oauth2/authorize", stack.sf_url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::FOUND);
    let callback = location(&approved);
    assert!(
        callback.starts_with(&format!("{}/auth/callback?code=", stack.origin)),
        "{callback}"
    );
    stack
        .http
        .get(callback)
        .header(COOKIE, sign_in_cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_signs_in_with_salesforce_changes_a_setting_through_preview_and_signs_out() {
    let stack = stack().await;
    let back = sign_in(&stack, "005SB00000000A1AAA").await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/");
    let session = cookie_of(&back, "cmsf-session").expect("a session");
    let get = |path: &str| {
        stack
            .http
            .get(format!("{}{path}", stack.origin))
            .header(COOKIE, session.clone())
            .send()
    };
    let overview = get("/").await.unwrap().text().await.unwrap();
    assert!(overview.contains("Ada Admin"), "{overview}");

    // A linked campaign's member statuses, read from Salesforce with the admin's own token.
    let (cm, sf) = {
        let campaign = &stack.scenario.sf.records["Campaign"][0];
        (
            campaign["CM_Campaign_ID__c"].as_str().unwrap().to_owned(),
            campaign["Id"].as_str().unwrap().to_owned(),
        )
    };
    stack
        .store
        .put_link(&LinkRecord {
            cm_campaign_id: cm,
            sf_campaign_id: sf.clone(),
            origin: LinkOrigin::Manual,
            linked_at: Utc::now(),
        })
        .await
        .unwrap();
    let calls_before = stack.user_calls();
    let page = get(&format!("/settings?campaign={sf}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = stack.scenario.sf.records["Campaign"][0]["Name"].as_str().unwrap();
    assert!(page.contains(&format!("selected>{name}</option>")), "{page}");
    let table = &page[page.find("Member statuses on this campaign").expect(&page)..];
    assert!(
        table.contains("<td>Sent</td>") && table.contains("<td>Responded</td>"),
        "{table}"
    );
    assert!(stack.user_calls() > calls_before, "read with the admin's token");

    // Status refresh → Once Only: preview (nothing stored), then confirm (version 2).
    let page = get("/settings").await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let preview = stack
        .http
        .post(format!("{}/settings/preview", stack.origin))
        .header(COOKIE, session.clone())
        .header(ORIGIN, stack.origin.clone())
        .form(&[
            ("csrf", csrf.as_str()),
            ("status_refresh", "once_only"),
            ("update_campaign_statistics", "on"),
            ("status_Opened", "Opened"),
            ("status_Clicked", "Clicked"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), StatusCode::OK);
    let preview = preview.text().await.unwrap();
    assert!(
        preview.contains("status_refresh: &#34;always&#34; -&#62; &#34;once_only&#34;"),
        "{preview}"
    );
    assert_eq!(
        stack.store.load_settings().await.unwrap().unwrap().version,
        1,
        "a preview stores nothing"
    );
    let confirmed = confirm(&stack, &session, &csrf, &preview).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&confirmed), "/settings?saved=2");
    let stored = stack.store.load_settings().await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.settings.status_refresh),
        (2, mapping::StatusRefresh::OnceOnly)
    );

    // The change is in the audit, as the signed-in admin's, with the versions.
    let audit = get("/audit").await.unwrap().text().await.unwrap();
    assert!(
        audit.contains("005SB00000000A1AAA (you)")
            && audit.contains("settings changed: ")
            && audit.contains("status_refresh</td>")
            && audit.contains("v1 → v2"),
        "{audit}"
    );

    // The same confirm again: the settings moved on meanwhile, so a conflict, nothing stored.
    let again = confirm(&stack, &session, &csrf, &preview).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(stack.store.load_settings().await.unwrap().unwrap().version, 2);

    // Sign out: the Salesforce token is revoked, the session gone.
    let out = stack
        .http
        .post(format!("{}/signout", stack.origin))
        .header(COOKIE, session.clone())
        .header(ORIGIN, stack.origin.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (out.status(), location(&out)),
        (StatusCode::SEE_OTHER, "/signin".to_owned())
    );
    assert!(
        stack._sandbox.state.lock().sf.user_tokens.is_empty(),
        "the admin's Salesforce token was revoked"
    );
    // A copy of the old cookie can change nothing: every change asks Salesforce again.
    let replayed = stack
        .http
        .post(format!("{}/settings/confirm", stack.origin))
        .header(COOKIE, session.clone())
        .header(ORIGIN, stack.origin.clone())
        .form(&[("csrf", csrf.as_str()), ("base_version", "2"), ("proposed", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::FORBIDDEN);
    assert_eq!(stack.store.load_settings().await.unwrap().unwrap().version, 2);
}

#[tokio::test]
async fn an_admin_retries_a_runs_failed_people_from_its_page() {
    let stack = stack().await;
    let cm = "0123456789abcdef0123456789abcdef";
    stack
        .store
        .put_link(&LinkRecord {
            cm_campaign_id: cm.into(),
            sf_campaign_id: "701SB0000000001AAA".into(),
            origin: LinkOrigin::Manual,
            linked_at: Utc::now(),
        })
        .await
        .unwrap();
    let run = RunRecord {
        run_id: "r1".into(),
        scope: cm.into(),
        started_at: Utc::now(),
        ended_at: Some(Utc::now()),
        status: RunStatus::CompletedWithFailures,
        counts: Default::default(),
        failure_count: 2,
        resumed_at: None,
        expires_at: None,
    };
    stack.store.start_run(&run).await.unwrap();
    let refused = |who: &str| {
        RunFailure::new(
            who,
            "FIELD_CUSTOM_VALIDATION_EXCEPTION: refused",
            Some("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        )
    };
    stack
        .store
        .add_run_failures(
            "r1",
            &[refused("jo.smith@example.com"), refused("al.jones@example.com")],
        )
        .await
        .unwrap();

    let back = sign_in(&stack, "005SB00000000A1AAA").await;
    let session = cookie_of(&back, "cmsf-session").expect("a session");
    let page = stack
        .http
        .get(format!("{}/runs/r1", stack.origin))
        .header(COOKIE, session.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("2 people failed in this run"), "{page}");
    assert!(!page.contains("jo.smith@example.com"), "no whole address");
    let retried = stack
        .http
        .post(format!("{}/runs/r1/retry", stack.origin))
        .header(COOKIE, session.clone())
        .header(ORIGIN, stack.origin.clone())
        .form(&[("csrf", hidden(&page, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&retried), "/runs/r1?queued=2");
    let queued = stack.store.failed_records(cm, 10).await.unwrap();
    assert_eq!(queued.len(), 2, "both people queued for another attempt");
    let requested = stack.publisher.sink().events();
    assert_eq!(requested.len(), 1, "one sync of the campaign requested: {requested:?}");
    let audit = stack.store.recent_changes(10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].actor, "005SB00000000A1AAA");
    assert!(
        audit[0].action.starts_with("retry of run r1: 2 people queued"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_user_without_the_custom_permission_gets_the_403_page_naming_the_permission_set() {
    let stack = stack().await;
    let back = sign_in(&stack, "005SB00000000V1AAA").await;
    assert_eq!(back.status(), StatusCode::FORBIDDEN);
    assert!(cookie_of(&back, "cmsf-session").is_none(), "no session");
    let page = back.text().await.unwrap();
    assert!(
        page.contains("CM Sync Console Admin") && page.contains("CM_Sync_Console"),
        "{page}"
    );
}

#[tokio::test]
async fn a_code_replayed_or_exchanged_without_its_verifier_is_refused() {
    let stack = stack().await;
    let started = stack
        .http
        .get(format!("{}/auth/start", stack.origin))
        .send()
        .await
        .unwrap();
    let authorize = location(&started);
    let query = authorize.split_once('?').unwrap().1;
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    form.push(("user".into(), "005SB00000000A1AAA".into()));
    let approved = stack
        .http
        .post(format!("{}/services/oauth2/authorize", stack.sf_url))
        .form(&form)
        .send()
        .await
        .unwrap();
    let callback = location(&approved);
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    // Someone who saw the code but not the verifier.
    let stolen = stack
        .http
        .post(format!("{}/services/oauth2/token", stack.sf_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "sandbox-console-app"),
            ("redirect_uri", &format!("{}/auth/callback", stack.origin)),
            ("code_verifier", "not-the-verifier-not-the-verifier-not-the-ver"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    assert!(stolen.text().await.unwrap().contains("invalid_grant"));
}

#[tokio::test]
async fn an_admin_syncs_a_linked_campaign_and_unlinks_it_as_themselves() {
    let stack = stack().await;
    let campaign = &stack.scenario.sf.records["Campaign"][0];
    let cm = campaign["CM_Campaign_ID__c"].as_str().unwrap().to_owned();
    let sf = campaign["Id"].as_str().unwrap().to_owned();
    let name = campaign["Name"].as_str().unwrap().to_owned();
    stack
        .store
        .put_link(&LinkRecord {
            cm_campaign_id: cm.clone(),
            sf_campaign_id: sf.clone(),
            origin: LinkOrigin::Manual,
            linked_at: Utc::now(),
        })
        .await
        .unwrap();
    let back = sign_in(&stack, "005SB00000000A1AAA").await;
    let session = cookie_of(&back, "cmsf-session").expect("a session");
    let get = |path: String| {
        stack
            .http
            .get(format!("{}{path}", stack.origin))
            .header(COOKIE, session.clone())
            .send()
    };
    let post = |path: String, csrf: String| {
        stack
            .http
            .post(format!("{}{path}", stack.origin))
            .header(COOKIE, session.clone())
            .header(ORIGIN, stack.origin.clone())
            .form(&[("csrf", csrf)])
            .send()
    };
    let page = get("/links".into()).await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("{name}<br>")) && page.contains(&cm), "{page}");
    let csrf = hidden(&page, "csrf");

    // Sync now: one sync of this campaign requested on the bus.
    let requested = post(format!("/links/{cm}/sync"), csrf.clone()).await.unwrap();
    assert_eq!(requested.status(), StatusCode::SEE_OTHER);
    assert!(location(&requested).starts_with("/links?requested="));
    let events = stack.publisher.sink().events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(harness::sync_requests(&events), vec![cm.clone()]);

    // Unlink: a confirmation first, then the link field cleared as the admin.
    let confirm = get(format!("/links/{cm}/unlink")).await.unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    assert!(confirm.text().await.unwrap().contains("Unlink CM campaign"));
    let calls_before = stack.user_calls();
    let unlinked = post(format!("/links/{cm}/unlink"), csrf).await.unwrap();
    assert_eq!(unlinked.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&unlinked), format!("/links?unlinked={cm}"));
    assert!(stack.store.link(&cm).await.unwrap().is_none());
    assert!(stack.user_calls() > calls_before, "written with the admin's token");
    let field = stack._sandbox.state.lock().sf.records["Campaign"][&sf]
        .get("CM_Campaign_ID__c")
        .cloned();
    assert!(field.as_ref().is_none_or(serde_json::Value::is_null), "{field:?}");
    let audit = stack.store.recent_changes(1).await.unwrap();
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        (
            "005SB00000000A1AAA",
            format!("unlink of CM campaign {cm} from SF Campaign {sf}").as_str()
        )
    );
}

#[tokio::test]
async fn an_admin_links_a_campaign_picked_by_name_asks_a_dry_run_and_backfills_a_range() {
    let stack = stack().await;
    // A CM campaign the catalog lists, unlinked; and a Salesforce Campaign made for it by hand,
    // named with the characters a LIKE search must take literally.
    let cm_id = "fedcba9876543210fedcba9876543210".to_owned();
    let sent = Utc::now() - chrono::Duration::days(3);
    stack
        .store
        .save_catalog(&state::CatalogRecord {
            refreshed_at: Utc::now(),
            campaigns: vec![mapping::autocreate::DiscoveredCampaign {
                cm_campaign_id: cm_id.clone(),
                cm_client_id: "0123456789abcdef0123456789abcdef".into(),
                name: "Spring <Sale> 50%_off".into(),
                subject: "Spring".into(),
                state: mapping::autocreate::CmCampaignState::Sent,
                sent_at: Some(sent),
                created_at: None,
            }],
        })
        .await
        .unwrap();
    let record: sandbox::sf::Record = [("Name", "Spring Sale 50%_off (SF)".into())].into_iter().collect();
    let sf_id = stack._sandbox.state.lock().sf.create("Campaign", &record).unwrap();
    let decoy: sandbox::sf::Record = [("Name", "Spring Sale 50 percent off".into())].into_iter().collect();
    stack._sandbox.state.lock().sf.create("Campaign", &decoy).unwrap();

    let back = sign_in(&stack, "005SB00000000A1AAA").await;
    let session = cookie_of(&back, "cmsf-session").expect("a session");
    let get = |path: String| {
        stack
            .http
            .get(format!("{}{path}", stack.origin))
            .header(COOKIE, session.clone())
            .send()
    };
    let post = |path: String, form: Vec<(&'static str, String)>| {
        stack
            .http
            .post(format!("{}{path}", stack.origin))
            .header(COOKIE, session.clone())
            .header(ORIGIN, stack.origin.clone())
            .form(&form)
            .send()
    };

    // Step 1: the CM campaign found by a part of its name, shown as text.
    let page = get("/links/new?q=spring".into()).await.unwrap().text().await.unwrap();
    assert!(page.contains("Spring &#60;Sale&#62; 50%_off"), "{page}");
    assert!(page.contains(&format!("/links/new?cm={cm_id}")), "{page}");
    let csrf = hidden(&page, "csrf");
    // Step 2: Salesforce searched as the admin, `%` and `_` taken literally.
    let calls_before = stack.user_calls();
    let page = get(format!("/links/new?cm={cm_id}&sf_q=50%25_off"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stack.user_calls() > calls_before, "searched with the admin's token");
    assert!(page.contains("Spring Sale 50%_off (SF)"), "{page}");
    assert!(!page.contains("Spring Sale 50 percent off"), "a literal search: {page}");
    assert_eq!(hidden(&page, "sf"), sf_id);
    let linked = post(
        "/links/new".into(),
        vec![("csrf", csrf.clone()), ("cm", cm_id.clone()), ("sf", sf_id.clone())],
    )
    .await
    .unwrap();
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&linked), format!("/links?linked={cm_id}"));
    assert_eq!(stack.store.link(&cm_id).await.unwrap().unwrap().sf_campaign_id, sf_id);
    let field = stack._sandbox.state.lock().sf.records["Campaign"][&sf_id]
        .get("CM_Campaign_ID__c")
        .cloned();
    assert_eq!(field, Some(serde_json::json!(cm_id)), "the link field written");
    // Links shows the CM name, its send and its cadence band; a bad id is refused next to the field.
    let links = get("/links".into()).await.unwrap().text().await.unwrap();
    assert!(
        links.contains("Spring &#60;Sale&#62; 50%_off") && links.contains("hourly"),
        "{links}"
    );
    let refused = get("/links/new?cm=not-an-id".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        refused.contains("id=\"cm_error\"") && refused.contains("not a CM CampaignID"),
        "{refused}"
    );

    // Dry run: a preview with no proposal, asked of the sync function on the bus.
    let asked = post(format!("/links/{cm_id}/dry-run"), vec![("csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::SEE_OTHER);
    let preview_id = location(&asked).trim_start_matches("/links/dry-run/").to_owned();
    let preview = stack.store.preview(&preview_id).await.unwrap().unwrap();
    assert_eq!((preview.proposed, preview.campaigns), (None, vec![cm_id.clone()]));
    let waiting = get(location(&asked)).await.unwrap().text().await.unwrap();
    assert!(waiting.contains("http-equiv=\"refresh\""), "{waiting}");

    // Backfill: a reversed range is refused next to its field; a valid one asks the function.
    let reversed = get("/links/backfill?from=2026-03-01&to=2026-01-01".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reversed.contains("id=\"to_error\""), "{reversed}");
    let ranged = post(
        "/links/backfill".into(),
        vec![
            ("csrf", csrf),
            ("from", "2026-01-01".into()),
            ("to", "2026-03-31".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ranged.status(), StatusCode::SEE_OTHER);
    let kinds: Vec<String> = stack
        .publisher
        .sink()
        .events()
        .iter()
        .map(|e| e.detail_type().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "campaign-linked.v1",
            "settings-preview-requested.v1",
            "backfill-requested.v1"
        ]
    );
}
