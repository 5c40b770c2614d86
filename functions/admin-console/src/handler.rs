//! One request: its host checked against the console's origin (fixed by the deployment, or this
//! region's Function URL host, learned from the first request), then the console's router.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use console::config::{ConsoleSecret, DEFAULT_PERMISSION, DEFAULT_PERMISSION_SET, function_url_origin};
use console::salesforce::SalesforceAuth;
use console::{Console, ConsoleConfig, ConsoleSink, ConsoleStore};
use events::publisher::Publisher;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use lambda_support::{Config, StartupError};
use tower::ServiceExt;

/// Where browsers reach the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Set by the deployment (`CONSOLE_PUBLIC_ORIGIN`: a custom domain; the local stack).
    Fixed(String),
    /// The function's own URL, in this region.
    FunctionUrl {
        /// `AWS_REGION`.
        region: String,
    },
}

/// The console's settings from the template's environment, checked at start.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    org_id: String,
    sf_login_url: String,
    origin: Origin,
}

impl SiteSettings {
    /// Reads and checks them (`Config::console_settings`, as `doctor` does); an error names the
    /// variable. A plain-HTTP origin must be a loopback address: only the local stack has one.
    pub fn from_config(config: &Config) -> Result<SiteSettings, StartupError> {
        let settings = config.console_settings()?;
        let origin = match settings.public_origin {
            Some(fixed) => {
                if fixed
                    .strip_prefix("http://")
                    .is_some_and(|host| !console::guard::is_loopback_host(host))
                {
                    return Err(StartupError::Insecure(
                        "CONSOLE_PUBLIC_ORIGIN over plain HTTP must be a loopback address (the local stack)".into(),
                    ));
                }
                Origin::Fixed(fixed)
            }
            None => Origin::FunctionUrl {
                region: config.aws_region()?.to_owned(),
            },
        };
        Ok(SiteSettings {
            org_id: settings.org_id,
            sf_login_url: settings.sf_login_url,
            origin,
        })
    }
}

/// The console, served once its origin is known.
pub struct Site<S, P> {
    settings: SiteSettings,
    secret: ConsoleSecret,
    store: Arc<S>,
    publisher: Arc<Publisher<P>>,
    salesforce: SalesforceAuth,
    /// The origin and the router built for it (once per container).
    router: OnceLock<(String, Router)>,
}

impl<S: ConsoleStore + Send + Sync, P: ConsoleSink + Send + Sync> Site<S, P> {
    /// The site; its router is built on the first request.
    pub fn new(
        settings: SiteSettings,
        secret: ConsoleSecret,
        store: Arc<S>,
        publisher: Arc<Publisher<P>>,
    ) -> Result<Site<S, P>, StartupError> {
        let salesforce = SalesforceAuth::new().map_err(|e| StartupError::Client(e.to_string()))?;
        Ok(Site {
            settings,
            secret,
            store,
            publisher,
            salesforce,
            router: OnceLock::new(),
        })
    }

    fn build(&self, public_origin: String) -> Router {
        let loopback = public_origin.starts_with("http://");
        console::router(Console {
            config: ConsoleConfig {
                public_origin,
                sf_login_url: self.settings.sf_login_url.clone(),
                client_id: self.secret.client_id.clone(),
                client_secret: self.secret.client_secret.clone(),
                org_id: self.settings.org_id.clone(),
                permission: DEFAULT_PERMISSION.to_owned(),
                permission_set: DEFAULT_PERMISSION_SET.to_owned(),
                session_keys: self.secret.cookie_keys.clone(),
                loopback,
            },
            store: self.store.clone(),
            publisher: self.publisher.clone(),
            salesforce: self.salesforce.clone(),
        })
    }

    /// The router for this request's host, or why it is not answered.
    fn router_for(&self, request: &Request) -> Result<Router, &'static str> {
        let origin = match &self.settings.origin {
            Origin::Fixed(origin) => origin.clone(),
            Origin::FunctionUrl { region } => {
                let domain = match request.request_context_ref() {
                    Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.as_deref().unwrap_or_default(),
                    _ => "",
                };
                function_url_origin(domain, region).ok_or("this host is not the console's")?
            }
        };
        let (known, router) = self.router.get_or_init(|| {
            tracing::info!(%origin, "console origin known");
            (origin.clone(), self.build(origin.clone()))
        });
        if *known != origin {
            return Err("this host is not the console's");
        }
        Ok(router.clone())
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        match self.router_for(&request) {
            Ok(router) => match router.oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Err(why) => {
                tracing::warn!(why, "request refused before the console");
                misdirected(why)
            }
        }
    }
}

/// 421: the request reached this function on a host that is not the console's.
fn misdirected(why: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(why));
    *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use events::publisher::MemorySink;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use state::memory::MemoryStore;

    const HOST: &str = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws";

    fn config(extra: &[(&'static str, &str)]) -> Config {
        let mut vars = vec![
            ("CONSOLE_ORG_ID", "00DSB0000000001AAA"),
            ("CONSOLE_SF_LOGIN_URL", "https://login.salesforce.com"),
            ("AWS_REGION", "eu-west-1"),
        ];
        vars.extend_from_slice(extra);
        Config::from_vars(vars)
    }

    fn site(config: &Config) -> Site<MemoryStore, MemorySink> {
        let secret = ConsoleSecret::parse(
            r#"{"client_id":"3MVGx","cookie_keys":["AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="]}"#,
        )
        .unwrap();
        Site::new(
            SiteSettings::from_config(config).unwrap(),
            secret,
            Arc::new(MemoryStore::new()),
            Arc::new(Publisher::new(MemorySink::default())),
        )
        .unwrap()
    }

    fn request(path: &str, domain: Option<&str>) -> Request {
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.domain_name = domain.map(str::to_owned);
        let request = lambda_http::http::Request::builder()
            .uri(path)
            .header(header::HOST, domain.unwrap_or("unknown"))
            .body(lambda_http::Body::Empty)
            .unwrap();
        request.with_request_context(RequestContext::ApiGatewayV2(context))
    }

    #[test]
    fn a_bad_setting_stops_the_console_at_start_naming_the_variable() {
        let cases: [(&[(&'static str, &str)], &str); 5] = [
            (&[("CONSOLE_ORG_ID", "00D123")], "CONSOLE_ORG_ID"),
            (
                &[("CONSOLE_SF_LOGIN_URL", "http://login.salesforce.com")],
                "CONSOLE_SF_LOGIN_URL",
            ),
            (
                &[("CONSOLE_SF_LOGIN_URL", "https://login.salesforce.com/services")],
                "CONSOLE_SF_LOGIN_URL",
            ),
            (
                &[("CONSOLE_PUBLIC_ORIGIN", "http://console.example.com")],
                "CONSOLE_PUBLIC_ORIGIN",
            ),
            (
                &[
                    ("CONSOLE_PUBLIC_ORIGIN", "http://console.example.com"),
                    ("ALLOW_PLAIN_HTTP", "1"),
                ],
                "CONSOLE_PUBLIC_ORIGIN",
            ),
        ];
        for (vars, variable) in cases {
            let error = SiteSettings::from_config(&config(vars)).unwrap_err();
            assert!(error.to_string().contains(variable), "{vars:?}: {error}");
        }
        let missing = SiteSettings::from_config(&Config::from_vars([("AWS_REGION", "eu-west-1")])).unwrap_err();
        assert!(missing.to_string().contains("CONSOLE_ORG_ID"), "{missing}");
    }

    #[tokio::test]
    async fn the_console_answers_on_its_function_url_and_on_no_other_host() {
        let site = site(&config(&[]));
        let refused = site.handle(request("/signin", Some("evil.example"))).await;
        assert_eq!(
            refused.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "before the origin is known"
        );
        let page = site.handle(request("/signin", Some(HOST))).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers().contains_key("content-security-policy"),
            "the console's headers"
        );
        let start = site.handle(request("/auth/start", Some(HOST))).await;
        let location = start.headers()[header::LOCATION].to_str().unwrap();
        let callback = format!("redirect_uri=https%3A%2F%2F{HOST}%2Fauth%2Fcallback");
        assert!(location.contains(&callback), "{location}");
        let cookie = start.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.starts_with("__Host-") && cookie.ends_with("; Secure"),
            "{cookie}"
        );
        let other = "zyxwvutsrqponmlkjihgfedcba543210.lambda-url.eu-west-1.on.aws";
        let refused = site.handle(request("/signin", Some(other))).await;
        assert_eq!(
            refused.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "once learned, only that host"
        );
    }

    #[tokio::test]
    async fn a_fixed_origin_is_the_callback_whatever_the_host() {
        let site = site(&config(&[("CONSOLE_PUBLIC_ORIGIN", "https://console.example.com/")]));
        let start = site.handle(request("/auth/start", None)).await;
        let location = start.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.contains("redirect_uri=https%3A%2F%2Fconsole.example.com%2Fauth%2Fcallback"),
            "{location}"
        );
    }
}
