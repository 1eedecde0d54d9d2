//! A real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver) by fantoccini, against the service on a real redis-server.
//!
//! A check holds a call; the approver signs in, finds it on the list, opens
//! it and approves; the next check is approved exactly once and the one after
//! that is pending again. The list updates by itself; a denial's reason
//! reaches the check; a cross-site form POST is refused; the caller cannot
//! approve their own call when the policy says `separate_approver`.
//!
//! `APPROVAL_SCREENSHOTS=DIR` saves a PNG of each page visited to DIR.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, free_port, Backend, Redis, Service, ALICE, BOB};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A program on PATH (chromium, chromedriver from Debian's packages).
fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found: install chromium and chromium-driver (`make approval-test` does)")
        })
}

/// chromedriver on a free port, and the browser profile directory; both
/// gone when dropped.
struct Browser {
    driver: Child,
    port: u16,
    profile: PathBuf,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        // Its own process group, with the browsers it starts: a failed test
        // never closes its session, and killing chromedriver alone left
        // Chromium running.
        let driver = Command::new(on_path("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!(
            "mcp-approval-browser-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Browser {
            driver,
            port,
            profile,
        }
    }

    async fn client(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": on_path("chromium"),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
                // A phone: its viewport, touch and user agent.
                "mobileEmulation": { "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0 } },
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // After a failed test the browser may still be writing its profile
        // while it notices chromedriver is gone.
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(&self.profile);
            if !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The page with a form that posts to the approval from another origin.
async fn serve_cross_site_form(target: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><html><body><form method=\"post\" action=\"{target}\">\
         <input name=\"reason\" value=\"from another site\"><button id=\"go\">Win a prize</button></form></body></html>"
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    port
}

struct Session<'a> {
    client: Client,
    service: &'a Service,
    screenshots: Option<PathBuf>,
    shot: std::cell::Cell<u32>,
}

impl Session<'_> {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&self.service.page_url(path))
            .await
            .unwrap();
        self.snap(path).await;
    }

    async fn snap(&self, what: &str) {
        if let Some(dir) = &self.screenshots {
            let png = self.client.screenshot().await.unwrap();
            let n = self.shot.get() + 1;
            self.shot.set(n);
            let name: String = what
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(40)
                .collect();
            std::fs::write(dir.join(format!("{n:02}{name}.png")), png).unwrap();
        }
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn text(&self, css: &str) -> String {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element.text().await.unwrap(),
            Err(err) => panic!("no {css}: {err}\n{}", self.source().await),
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
            .click()
            .await
            .unwrap();
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/approvals").await;
        let url = self.client.current_url().await.unwrap();
        assert!(url.path().ends_with("/login"), "not sent to sign in: {url}");
        self.client
            .find(Locator::Id("token"))
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        self.click("#sign-in").await;
        self.text("#approver").await;
        self.snap("signed-in").await;
    }

    async fn sign_out(&self) {
        self.click("header form button").await;
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("token"))
            .await
            .unwrap();
    }

    /// Waits until the list shows the approval, without navigating.
    async fn wait_for_card(&self, id: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(&format!("#a-{id}")))
            .await
            .unwrap_or_else(|err| panic!("approval {id} never listed: {err}"));
    }
}

#[tokio::test]
async fn an_approver_approves_a_held_call_in_chromium() {
    let redis = Redis::start();
    let service = Service::start(&Backend::Redis(&redis), &[]);
    let browser = Browser::start();
    let screenshots = std::env::var_os("APPROVAL_SCREENSHOTS").map(PathBuf::from);
    if let Some(dir) = &screenshots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let session = Session {
        client: browser.client().await,
        service: &service,
        screenshots,
        shot: std::cell::Cell::new(0),
    };

    // alice's agent makes a risky call; the policy wants someone else to approve.
    let mut held = call(
        "alice",
        json!({ "code": "import subprocess\nsubprocess.run(['ls', '/'])\u{202E}", "timeout": 30 }),
    );
    held.separate_approver = true;
    let (status, first) = service.check(&held).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("pending")));
    let id = first["id"].as_str().unwrap().to_owned();

    // alice signs in, sees it, and cannot approve it.
    session.sign_in(ALICE.1).await;
    session.wait_for_card(&id).await;
    session.click(&format!("#a-{id} a")).await;
    assert_eq!(session.text("#grant").await, "alice (for alice)");
    assert!(session.text("#target").await.contains("asyncExecuteCode"));
    assert_eq!(
        session.text("#rule").await,
        "/tools/asyncExecuteCode/approve_if/0"
    );
    assert_eq!(
        session.text("#reason").await,
        "scripts that start processes need a look"
    );
    let arguments = session.text("#arguments").await;
    assert!(
        arguments.contains("subprocess.run(['ls', '/'])⟨U+202E⟩"),
        "{arguments}"
    );
    assert!(arguments.contains("30"), "{arguments}");
    assert!(session
        .text("#own-call")
        .await
        .contains("someone else must approve"));
    assert!(
        session.client.find(Locator::Id("approve")).await.is_err(),
        "no approve button for the caller"
    );
    session.snap("own-call").await;
    session.sign_out().await;

    // bob signs in; a form on another site tries to approve through his session.
    session.sign_in(BOB.1).await;
    let evil = serve_cross_site_form(service.page_url(&format!("/approvals/{id}/approve"))).await;
    session
        .client
        .goto(&format!("http://127.0.0.1:{evil}/"))
        .await
        .unwrap();
    session.click("#go").await;
    assert!(session
        .text("#flash")
        .await
        .contains("did not come from this page"));
    session.snap("cross-site-refused").await;
    let (_, shown) = service
        .api(BOB, "GET", &format!("/api/v1/approvals/{id}"), None)
        .await;
    assert_eq!(
        shown["status"], "pending",
        "the cross-site POST changed nothing"
    );
    assert_eq!(service.check(&held).await.1["status"], "pending");

    // bob opens it from the list and approves.
    session.goto("/approvals").await;
    session.wait_for_card(&id).await;
    session.click(&format!("#a-{id} a")).await;
    session.text("#arguments").await;
    session.snap("detail").await;
    session.click("#approve").await;
    assert!(session.text("#flash").await.starts_with("Approved."));
    assert!(session.text("#decision").await.contains("approved by bob"));
    session.snap("approved").await;

    // The agent's retry goes through once; the one after waits again.
    session.goto("/approvals").await;
    assert!(session.text("#empty").await.contains("Nothing is waiting"));
    let (_, retry) = service.check(&held).await;
    assert_eq!(retry["status"], "approved", "{retry}");
    assert_eq!(retry["approver"], "bob");
    let (_, replay) = service.check(&held).await;
    assert_eq!(replay["status"], "pending", "{replay}");
    let second = replay["id"].as_str().unwrap().to_owned();
    assert_ne!(second, id);

    // The open list shows it by itself; bob denies it with a reason.
    session.wait_for_card(&second).await;
    session.snap("live-list").await;
    session.click(&format!("#a-{second} a")).await;
    session
        .client
        .find(Locator::Id("deny-reason"))
        .await
        .unwrap()
        .send_keys("no subprocesses from agents, use the ls tool")
        .await
        .unwrap();
    session.click("#deny").await;
    assert!(session.text("#flash").await.starts_with("Denied."));
    let (_, denied) = service.check(&held).await;
    assert_eq!(denied["status"], "denied");
    assert_eq!(
        denied["reason"],
        "no subprocesses from agents, use the ls tool"
    );
    assert_eq!(denied["approver"], "bob");

    // The history shows who decided what.
    session.goto("/history").await;
    let history = session.text("#history").await;
    for expected in [
        "denied",
        "no subprocesses from agents, use the ls tool",
        "used",
        "approved",
        "bob",
    ] {
        assert!(history.contains(expected), "{expected:?} not in\n{history}");
    }
    // Usable on a phone: the page is no wider than the viewport, even for a
    // call with a 400-character argument name.
    let mut wide = serde_json::Map::new();
    wide.insert("K".repeat(400), json!("x"));
    let (_, wide) = service
        .check(&call("carol", serde_json::Value::Object(wide)))
        .await;
    let wide = wide["id"].as_str().unwrap().to_owned();
    for path in [
        "/history",
        &format!("/approvals/{id}"),
        "/approvals",
        &format!("/approvals/{wide}"),
    ] {
        session.goto(path).await;
        let widths = session
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(widths[1], 390, "the phone's viewport");
        assert!(
            widths[0].as_u64() <= widths[1].as_u64(),
            "{path} scrolls sideways: {widths}"
        );
    }
    assert!(session.source().await.contains("width=device-width"));

    session.client.close().await.unwrap();
}
