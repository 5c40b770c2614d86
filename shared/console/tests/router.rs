//! The console's router in-process, on the in-memory store: sessions, sign-in, CSRF and
//! `Origin`, headers, escaping, loopback `Host`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use chrono::{Duration, Utc};
use console::pages::tests_support::config;
use console::salesforce::SalesforceAuth;
use console::session::{Sealer, Session, cookie_name};
use console::{Console, ROUTES, router};
use events::publisher::{MemorySink, Publisher};
use mapping::Settings;
use state::memory::MemoryStore;
use state::{RetryQueue, RunFailure, RunRecord, RunStatus, RunStore, SettingsStore, WebhookEventStore};
use tower::ServiceExt;

async fn app() -> (Router, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let settings = Settings::new(vec!["0123456789abcdef0123456789abcdef".into()], mapping::Tz::UTC);
    store.save_settings(&settings, None, Utc::now()).await.unwrap();
    let console = Console {
        config: config(),
        store: store.clone(),
        publisher: Arc::new(Publisher::new(MemorySink::default())),
        salesforce: SalesforceAuth::new().unwrap(),
    };
    (router(console), store)
}

fn session(seen_minutes_ago: i64) -> Session {
    let now = Utc::now();
    Session {
        user_id: "005SB00000000A1AAA".into(),
        org_id: config().org_id,
        name: "Ada Admin".into(),
        access_token: "00D!token".into(),
        identity_url: "http://127.0.0.1:9/id/00D/005".into(),
        instance_url: "http://127.0.0.1:9".into(),
        csrf: "csrf-token-of-this-session".into(),
        issued_at: now - Duration::minutes(seen_minutes_ago),
        seen_at: now - Duration::minutes(seen_minutes_ago),
    }
}

fn cookie(session: &Session) -> String {
    let sealed = Sealer::new(&config().session_keys)
        .unwrap()
        .seal("session", session)
        .unwrap();
    format!("{}={sealed}", cookie_name(&config(), "session"))
}

fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8080")
}

async fn body(response: axum::response::Response) -> String {
    String::from_utf8(to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

fn concrete(path: &str) -> String {
    path.replace("{run_id}", "r1")
        .replace("{cm}", "0123456789abcdef0123456789abcdef")
}

#[tokio::test]
async fn every_route_but_sign_in_callback_static_and_health_sends_a_visitor_without_a_session_to_sign_in() {
    let (app, _) = app().await;
    for (method, path, public) in ROUTES {
        let response = app
            .clone()
            .oneshot(request(method, &concrete(path)).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        if *public {
            assert_ne!(location.as_deref(), Some("/signin"), "{method} {path} is public");
            assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path} is served");
        } else {
            assert_eq!(
                (status, location.as_deref()),
                (StatusCode::SEE_OTHER, Some("/signin")),
                "{method} {path} needs a session"
            );
        }
    }
}

#[test]
fn the_route_table_lists_every_route_the_router_declares() {
    let source: String = include_str!("../src/lib.rs").split_whitespace().collect();
    let declared = source.matches(".route(\"").count();
    assert_eq!(declared, ROUTES.len(), "a route added to the router is added to ROUTES");
    for (_, path, _) in ROUTES {
        assert!(source.contains(&format!(".route(\"{path}\"")), "{path}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (app, _) = app().await;
    let signed_in = cookie(&session(0));
    let mut paths: Vec<(String, Option<String>)> = ROUTES.iter().map(|(_, path, _)| (concrete(path), None)).collect();
    paths.push(("/settings".into(), Some(signed_in.clone())));
    paths.push(("/nowhere".into(), Some(signed_in)));
    for (path, cookie) in paths {
        let mut builder = request("GET", &path);
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        let response = app.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("script-src"), "no script is ever allowed");
        for (name, value) in [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ] {
            assert_eq!(headers[&name], value, "{path}");
        }
        assert!(
            headers[header::STRICT_TRANSPORT_SECURITY]
                .to_str()
                .unwrap()
                .starts_with("max-age=")
        );
    }
}

#[tokio::test]
async fn a_loopback_console_answers_no_other_host() {
    let (app, _) = app().await;
    for (host, expected) in [
        ("evil.example:8080", StatusCode::MISDIRECTED_REQUEST),
        ("127.0.0.1.evil.example", StatusCode::MISDIRECTED_REQUEST),
        ("localhost:8080", StatusCode::OK),
        ("[::1]:8080", StatusCode::OK),
    ] {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/health")
                    .header(header::HOST, host)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{host}");
    }
}

#[tokio::test]
async fn a_callback_without_the_state_sent_is_refused_and_stores_nothing() {
    let (app, _) = app().await;
    // Leave for Salesforce: a sign-in cookie and a redirect carrying state and S256 challenge.
    let started = app
        .clone()
        .oneshot(request("GET", "/auth/start").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let location = started.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.contains("code_challenge_method=S256") && location.contains("state="),
        "{location}"
    );
    assert!(location.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fauth%2Fcallback"));
    let sign_in = started.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for query in ["code=abc", "code=abc&state=forged", "code=abc&state="] {
        for with_cookie in [true, false] {
            let mut builder = request("GET", &format!("/auth/callback?{query}"));
            if with_cookie {
                builder = builder.header(header::COOKIE, sign_in.clone());
            }
            let response = app.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{query}, cookie {with_cookie}"
            );
            let set: Vec<&str> = response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert!(
                set.iter()
                    .all(|c| !c.starts_with("cmsf-session=") || c.starts_with("cmsf-session=;")),
                "no session stored: {set:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_session_idle_for_31_minutes_or_forged_is_sent_to_sign_in() {
    let (app, _) = app().await;
    let live = app
        .clone()
        .oneshot(
            request("GET", "/settings")
                .header(header::COOKIE, cookie(&session(5)))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let refreshed = live.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        refreshed.contains("HttpOnly") && refreshed.contains("SameSite=Lax"),
        "{refreshed}"
    );
    for stale in [
        cookie(&session(31)),
        format!("{}=forged", cookie_name(&config(), "session")),
    ] {
        let response = app
            .clone()
            .oneshot(
                request("GET", "/settings")
                    .header(header::COOKIE, stale)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_or_from_another_origin_is_refused_and_changes_nothing() {
    let (app, store) = app().await;
    let signed_in = cookie(&session(0));
    let form = "status_refresh=once_only&status_Opened=Opened";
    let good = "&csrf=csrf-token-of-this-session";
    let here = Some("http://127.0.0.1:8080");
    // Origin, Sec-Fetch-Site, token: a browser sends `Origin: null` from a page whose
    // referrer policy is no-referrer, and then only Fetch Metadata tells where the form was.
    for (origin, fetch_site, csrf, expected) in [
        (here, None, "", StatusCode::FORBIDDEN),
        (here, None, "&csrf=wrong", StatusCode::FORBIDDEN),
        (
            Some("http://evil.example"),
            Some("same-origin"),
            good,
            StatusCode::FORBIDDEN,
        ),
        (None, None, good, StatusCode::FORBIDDEN),
        (Some("null"), None, good, StatusCode::FORBIDDEN),
        (Some("null"), Some("cross-site"), good, StatusCode::FORBIDDEN),
        (Some("null"), Some("same-site"), good, StatusCode::FORBIDDEN),
        (Some("null"), Some("same-origin"), "&csrf=wrong", StatusCode::FORBIDDEN),
        (Some("null"), Some("same-origin"), good, StatusCode::OK),
        (None, Some("same-origin"), good, StatusCode::OK),
        (here, None, good, StatusCode::OK),
    ] {
        for path in ["/settings/preview", "/settings/confirm", "/runs/r1/retry"] {
            let mut builder = request("POST", path)
                .header(header::COOKIE, signed_in.clone())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            if let Some(origin) = origin {
                builder = builder.header(header::ORIGIN, origin);
            }
            if let Some(site) = fetch_site {
                builder = builder.header("sec-fetch-site", site);
            }
            let response = app
                .clone()
                .oneshot(builder.body(Body::from(format!("{form}{csrf}"))).unwrap())
                .await
                .unwrap();
            if path == "/settings/preview" || expected == StatusCode::FORBIDDEN {
                assert_eq!(response.status(), expected, "{path} origin {origin:?} {csrf}");
            } else if path == "/runs/r1/retry" {
                // Token and origin right, but Salesforce cannot confirm the permission again.
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
                assert!(body(response).await.contains("nothing was changed"));
            }
        }
    }
    assert_eq!(
        store.load_settings().await.unwrap().unwrap().version,
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn a_41_character_status_shows_an_error_naming_the_field_next_to_it() {
    let (app, store) = app().await;
    let long = "x".repeat(41);
    let response = app
        .oneshot(
            request("POST", "/settings/preview")
                .header(header::COOKIE, cookie(&session(0)))
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "csrf=csrf-token-of-this-session&status_refresh=always&status_Clicked={long}"
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = body(response).await;
    let error_at = html.find("class=\"error\" id=\"status_Clicked_error\"").expect(&html);
    assert!(
        html[error_at..].contains("status_mapping["),
        "the error names the field: {html}"
    );
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"status_Clicked_error\""));
    assert_eq!(store.load_settings().await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn names_from_cm_and_salesforce_are_shown_as_text() {
    let (app, store) = app().await;
    let run = RunRecord {
        run_id: "r1".into(),
        scope: "<script>alert(1)</script>".into(),
        started_at: Utc::now(),
        ended_at: None,
        status: RunStatus::Running,
        counts: Default::default(),
        failure_count: 0,
        resumed_at: None,
        expires_at: None,
    };
    store.start_run(&run).await.unwrap();
    store
        .add_run_failures(
            "r1",
            &[RunFailure::new(
                "jo.smith@example.com",
                "=HYPERLINK(\"http://evil.example\",\"<b>x</b>\") refused",
                Some("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            )],
        )
        .await
        .unwrap();
    for path in ["/runs", "/runs/r1"] {
        let response = app
            .clone()
            .oneshot(
                request("GET", path)
                    .header(header::COOKIE, cookie(&session(0)))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let html = body(response).await;
        let escaped = |text: &str| text.replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;");
        assert!(html.contains(&escaped("<script>alert(1)</script>")), "{path}: {html}");
        assert!(!html.contains("<script>"), "{path}");
        assert!(!html.contains("jo.smith@example.com"), "{path}: no whole address");
        if path == "/runs/r1" {
            assert!(
                html.contains(&escaped("=HYPERLINK(\"http://evil.example\",\"<b>x</b>\") refused")),
                "{html}"
            );
            assert!(!html.contains("<b>x</b>"));
        }
    }
}

/// Posts a form to `path` from this session's page.
async fn post_form(app: &Router, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    pairs.append_pair("csrf", "csrf-token-of-this-session");
    pairs.extend_pairs(form);
    let response = app
        .clone()
        .oneshot(
            request("POST", path)
                .header(header::COOKIE, cookie(&session(0)))
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(pairs.finish()))
                .unwrap(),
        )
        .await
        .unwrap();
    (response.status(), body(response).await)
}

#[tokio::test]
async fn the_advanced_document_is_checked_as_the_cli_checks_a_file_and_previewed_before_anything_is_stored() {
    let (app, store) = app().await;
    let mut stored = store.load_settings().await.unwrap().unwrap().settings;

    // Not JSON, an unknown field, a rule broken: each refused naming the field, as typed.
    for (document, field) in [
        ("{\"cm_clients\": [", "cm_clients"),
        (
            "{\"cm_clients\": [\"0123456789abcdef0123456789abcdef\"], \"cm_timezone\": \"UTC\", \"surprise\": 1}",
            "surprise",
        ),
        ("{\"cm_clients\": [], \"cm_timezone\": \"UTC\"}", "cm_clients"),
    ] {
        let (status, html) = post_form(&app, "/settings/advanced/preview", &[("document", document)]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{document}");
        assert!(html.contains(&format!("<code>{field}</code>")), "{field}: {html}");
        assert!(html.contains("aria-describedby=\"document_errors\""), "{html}");
    }

    // A valid change: the preview lists it field by field; nothing is stored until confirmed.
    stored.run_retention_days = 30;
    let (status, html) = post_form(&app, "/settings/advanced/preview", &[("document", &stored.to_json())]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("run_retention_days: 90 -&#62; 30"), "{html}");
    assert!(html.contains("action=\"/settings/confirm\""));
    assert_eq!(
        store.load_settings().await.unwrap().unwrap().version,
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn every_other_setting_is_a_field_on_advanced_with_its_problem_next_to_it() {
    let (app, store) = app().await;
    let page = body(
        app.clone()
            .oneshot(
                request("GET", "/settings/advanced")
                    .header(header::COOKIE, cookie(&session(0)))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    for field in console::pages::advanced::FIELDS {
        assert!(
            page.contains(&format!("name=\"{}\"", field.path)),
            "{}: {page}",
            field.path
        );
    }
    // The form as shown, with three edits: a bad zone, a word for a number, a new list.
    let stored = store.load_settings().await.unwrap().unwrap().settings;
    let form = |edits: &[(&str, &str)]| -> Vec<(String, String)> {
        let document: serde_json::Value = serde_json::from_str(&stored.to_json()).unwrap();
        let mut pairs = Vec::new();
        for field in console::pages::advanced::FIELDS {
            let value = document.pointer(&format!("/{}", field.path.replace('.', "/")));
            let text = match value {
                Some(serde_json::Value::Bool(false)) => continue,
                Some(serde_json::Value::Bool(true)) => "on".to_owned(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join("\n"),
                _ => String::new(),
            };
            let text = edits
                .iter()
                .find(|(p, _)| *p == field.path)
                .map_or(text, |(_, v)| (*v).to_owned());
            pairs.push((field.path.to_owned(), text));
        }
        pairs
    };
    let post = |pairs: Vec<(String, String)>| {
        let app = app.clone();
        async move {
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post_form(&app, "/settings/advanced/preview", &refs).await
        }
    };
    let (status, html) = post(form(&[("run_retention_days", "ninety")])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"run_retention_days_error\""), "{html}");
    assert!(html.contains("value=\"ninety\""), "kept as typed");
    let (status, html) = post(form(&[("cm_timezone", "Mars/Olympus")])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("id=\"cm_timezone_error\"") && html.contains("IANA"),
        "{html}"
    );

    let list = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let (status, html) = post(form(&[("cm_lists", list), ("opt_out_policy", "any_list")])).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("opt_out_policy"), "{html}");
    assert!(html.contains("cm_lists"), "{html}");
    assert!(!html.contains("run_retention_days: "), "only what changed: {html}");
    assert_eq!(
        store.load_settings().await.unwrap().unwrap().version,
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn a_persons_failures_are_found_by_address_in_a_post_and_shown_redacted() {
    let (app, store) = app().await;
    let run = RunRecord {
        run_id: "r7".into(),
        scope: "0123456789abcdef0123456789abcdef".into(),
        started_at: Utc::now(),
        ended_at: Some(Utc::now()),
        status: RunStatus::CompletedWithFailures,
        counts: Default::default(),
        failure_count: 2,
        resumed_at: None,
        expires_at: None,
    };
    store.start_run(&run).await.unwrap();
    store
        .add_run_failures(
            "r7",
            &[
                RunFailure::new(
                    "jo.smith@example.com",
                    "refused",
                    Some("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
                ),
                RunFailure::new("al.jones@example.com", "locked", Some("UNABLE_TO_LOCK_ROW")),
            ],
        )
        .await
        .unwrap();

    let (status, html) = post_form(&app, "/runs/search", &[("email", " Jo.Smith@Example.com ")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Failures of j***@example.com"), "{html}");
    assert!(
        html.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION") && !html.contains("UNABLE_TO_LOCK_ROW"),
        "only theirs"
    );
    assert!(
        !html.to_lowercase().contains("jo.smith@example.com"),
        "no whole address"
    );

    let (status, html) = post_form(&app, "/runs/search", &[("email", "nobody@example.org")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No failures of n***@example.org"), "{html}");

    let (status, html) = post_form(&app, "/runs/search", &[("email", "not-an-address")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error_at = html.find("id=\"email_error\"").expect(&html);
    assert!(html[error_at..].contains("is not an email address"), "{html}");
    assert!(html.contains("aria-describedby=\"email_error\""));
}

#[tokio::test]
async fn the_rank_of_each_activity_is_edited_beside_its_status_and_must_be_a_place_of_its_own() {
    let (app, store) = app().await;
    let ranks = |opened: &str, clicked: &str| {
        [
            ("status_refresh", "forward_only".to_owned()),
            ("rank_Sent", "1".to_owned()),
            ("rank_Bounced", "2".to_owned()),
            ("rank_Opened", opened.to_owned()),
            ("rank_Clicked", clicked.to_owned()),
            ("rank_Unsubscribed", "5".to_owned()),
            ("rank_MarkedAsSpam", "6".to_owned()),
        ]
    };
    let form = |pairs: [(&'static str, String); 7]| pairs.into_iter().collect::<Vec<_>>();

    let same = form(ranks("3", "3"));
    let pairs: Vec<(&str, &str)> = same.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, html) = post_form(&app, "/settings/preview", &pairs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for kind in ["Opened", "Clicked"] {
        let at = html.find(&format!("id=\"rank_{kind}_error\"")).expect(&html);
        assert!(
            html[at..].contains("rank 3 is given to more than one activity"),
            "{html}"
        );
    }
    assert!(!html.contains("id=\"rank_Sent_error\""));

    let swapped = form(ranks("4", "3"));
    let pairs: Vec<(&str, &str)> = swapped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, html) = post_form(&app, "/settings/preview", &pairs).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("status_rank[2]: &#34;Opened&#34; -&#62; &#34;Clicked&#34;"),
        "{html}"
    );
    assert_eq!(
        store.load_settings().await.unwrap().unwrap().version,
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn the_overview_lists_webhook_deliveries_waiting_and_campaigns_salesforce_refused_to_create() {
    let (app, store) = app().await;
    let now = Utc::now();
    let event = |key: &str| state::WebhookEventRecord {
        dedupe_key: key.into(),
        list_id: "list-9".into(),
        payload: serde_json::json!({"Type": "Deactivate", "State": "Unsubscribed", "EmailAddress": "jo.smith@example.com"}),
        person: None,
        received_at: now,
        expires_at: now + Duration::days(30),
        state: state::EventState::Received,
        attempts: 0,
    };
    store
        .record_webhook_batch(&state::WebhookBatchRecord {
            batch: format!("{}#b1", now.to_rfc3339()),
            list_id: "list-9".into(),
            received_at: now,
            expires_at: now + Duration::days(30),
            events: vec![event("k1"), event("k2")],
            refused: Vec::new(),
        })
        .await
        .unwrap();
    // An older delivery tried at every attempt, parked for an admin.
    store
        .record_webhook_batch(&state::WebhookBatchRecord {
            batch: format!("{}#b0", (now - Duration::hours(5)).to_rfc3339()),
            list_id: "list-8".into(),
            received_at: now - Duration::hours(5),
            expires_at: now + Duration::days(30),
            events: vec![event("k0")],
            refused: Vec::new(),
        })
        .await
        .unwrap();
    store
        .park_webhook_batch(&format!("{}#b0", (now - Duration::hours(5)).to_rfc3339()))
        .await
        .unwrap();
    store
        .enqueue_failed(&[state::FailedRecord {
            scope: state::Scope::AutocreateRefused.key(),
            key: "fedcba9876543210fedcba9876543210".into(),
            payload: serde_json::json!({}),
            reason: "FIELD_CUSTOM_VALIDATION_EXCEPTION: owner jo.smith@example.com may not <b>create</b>".into(),
            attempts: 1,
            first_failed_at: now,
        }])
        .await
        .unwrap();
    let response = app
        .oneshot(
            request("GET", "/")
                .header(header::COOKIE, cookie(&session(0)))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let html = body(response).await;
    let waiting = &html[html.find("Webhook deliveries waiting").expect(&html)..];
    assert!(
        waiting.contains("<code>list-9</code>") && waiting.contains("<td>2</td>"),
        "{html}"
    );
    let parked = &waiting[waiting.find("<code>list-8</code>").expect(waiting)..];
    assert!(
        parked[..parked.find("</tr>").unwrap()].contains("waits for an admin"),
        "{html}"
    );
    let refused = &html[html.find("Campaigns Salesforce refused to create").expect(&html)..];
    assert!(refused.contains("fedcba9876543210fedcba9876543210"), "{html}");
    assert!(
        refused.contains("j***@example.com") && !html.contains("jo.smith@example.com"),
        "{html}"
    );
    assert!(
        refused.contains("&#60;b&#62;create") && !html.contains("<b>"),
        "escaped"
    );
}

#[tokio::test]
async fn the_statistics_field_map_is_edited_on_campaign_settings_with_errors_next_to_the_field() {
    let (app, store) = app().await;
    let (status, html) = post_form(
        &app,
        "/settings/preview",
        &[
            ("status_refresh", "always"),
            ("update_campaign_statistics", "on"),
            ("stat_Clicks", "not a field!"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let at = html.find("id=\"stat_Clicks_error\"").expect(&html);
    assert!(html[at..].contains("statistics_fields.Clicks"), "{html}");
    assert!(html.contains("value=\"not a field!\""), "what was typed stays");

    let (status, html) = post_form(
        &app,
        "/settings/preview",
        &[
            ("status_refresh", "always"),
            ("update_campaign_statistics", "on"),
            ("stat_Forwards", "CM_Forwards__c"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("statistics_fields.Forwards: null -&#62; &#34;CM_Forwards__c&#34;"),
        "{html}"
    );
    assert_eq!(
        store.load_settings().await.unwrap().unwrap().version,
        1,
        "nothing stored"
    );
}
