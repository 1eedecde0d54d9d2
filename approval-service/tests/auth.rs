//! Approvers' authentication and CSRF against the real binary (no browser:
//! tests/browser.rs drives Chromium).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, http, Backend, Service, ALICE, BOB};
use serde_json::{json, Value};

async fn pending_id(service: &Service, grant: &str, separate: bool) -> String {
    let mut call = call(grant, json!({ "code": format!("for {grant}") }));
    call.separate_approver = separate;
    let (_, answer) = service.check(&call).await;
    answer["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_header_counts_only_from_the_trusted_proxy() {
    let trusting = Service::start(&Backend::Memory, &["--trusted-proxy", "127.0.0.1/32"]);
    let id = pending_id(&trusting, "agent", false).await;
    let approve = |service: &Service, user: &str, content_type: &str| {
        http()
            .post(service.page_url(&format!("/api/v1/approvals/{id}/approve")))
            .header("x-forwarded-user", user)
            .header("content-type", content_type)
            .body("{}")
    };
    // A form's content type is refused for header-authenticated API calls.
    let response = approve(
        &trusting,
        "carol@example.com",
        "application/x-www-form-urlencoded",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // Another origin is refused.
    let response = approve(&trusting, "carol@example.com", "application/json")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = approve(&trusting, "carol@example.com", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["approver"], "carol@example.com");

    // The same header from outside the trusted networks is ignored.
    let distrusting = Service::start(&Backend::Memory, &["--trusted-proxy", "10.0.0.0/8"]);
    let id = pending_id(&distrusting, "agent", false).await;
    let response = http()
        .post(distrusting.page_url(&format!("/api/v1/approvals/{id}/approve")))
        .header("x-forwarded-user", "carol@example.com")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let page = http()
        .get(distrusting.page_url("/approvals"))
        .header("x-forwarded-user", "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 303, "to the token sign-in");
}

#[tokio::test]
async fn without_tokens_unauthenticated_pages_are_refused() {
    let service = Service::start_without_tokens(&["--trusted-proxy", "10.0.0.0/8"]);
    let page = http()
        .get(service.page_url("/approvals"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 401);
    let api = http()
        .get(service.page_url("/api/v1/approvals"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
    assert_eq!(api.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn separate_approver_refuses_the_callers_own_approval() {
    let service = Service::start(&Backend::Memory, &[]);
    let id = pending_id(&service, "ALICE", true).await;
    let (status, answer) = service.approve(ALICE, &id).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "own_call");
    assert_eq!(
        service.metric("mcp_approval_decisions_refused_total").await,
        Some(1.0)
    );
    let (status, _) = service.approve(BOB, &id).await;
    assert_eq!(status, 200);

    // Without separate_approver the caller may approve; and may always deny.
    let id = pending_id(&service, "alice", false).await;
    assert_eq!(service.approve(ALICE, &id).await.0, 200);
    let id = pending_id(&service, "alice2", true).await;
    let mut own = call("alice2", json!({ "code": "for alice2" }));
    own.separate_approver = true;
    own.caller = Some("alice".into());
    let (_, answer) = service.check(&own).await;
    let own_id = answer["id"].as_str().unwrap().to_owned();
    assert_ne!(own_id, id);
    assert_eq!(
        service.approve(ALICE, &own_id).await.0,
        403,
        "caller matches"
    );
    assert_eq!(service.deny(ALICE, &own_id, "not now").await.0, 200);
}

/// Signs in with a token like the login form does; returns the cookie pair.
async fn sign_in(service: &Service, token: &str) -> String {
    let response = http()
        .post(service.page_url("/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a page's forms.
fn form_token(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn state_changes_need_the_form_token_and_the_origin() {
    let service = Service::start(&Backend::Memory, &[]);
    let id = pending_id(&service, "agent", false).await;
    let cookie = sign_in(&service, BOB.1).await;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        http()
            .post(service.page_url(&path))
            .header("cookie", cookie.clone())
            .form(&form)
    };
    let approve_path = format!("/approvals/{id}/approve");

    // No token, a made-up token, alice's token: refused, still pending.
    for form in [
        vec![("reason", "x".to_owned())],
        vec![("csrf", "9999999999.00".to_owned())],
    ] {
        let response = post(approve_path.clone(), form).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403);
    }
    let detail = http()
        .get(service.page_url(&format!("/approvals/{id}")))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(detail.status().as_u16(), 200);
    assert_eq!(detail.headers()["x-frame-options"], "DENY");
    assert!(detail.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let page = detail.text().await.unwrap();
    let token = form_token(&page);
    let alice_cookie = sign_in(&service, ALICE.1).await;
    let response = http()
        .post(service.page_url(&approve_path))
        .header("cookie", alice_cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        403,
        "bob's token is not alice's"
    );

    // The right token from another origin: refused.
    let response = post(approve_path.clone(), vec![("csrf", token.clone())])
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = post(approve_path.clone(), vec![("csrf", token.clone())])
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let (_, shown) = service
        .api(BOB, "GET", &format!("/api/v1/approvals/{id}"), None)
        .await;
    assert_eq!(shown["status"], "pending");
    assert_eq!(
        service.metric("mcp_approval_decisions_refused_total").await,
        Some(5.0)
    );

    // The right token, same origin: approved.
    let response = post(approve_path.clone(), vec![("csrf", token.clone())])
        .header("origin", format!("http://{}", service.page))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/approvals/{id}?done=approved")
    );

    // Cookie-authenticated API calls need the token in x-csrf-token.
    let id = pending_id(&service, "agent-2", false).await;
    let api = |csrf: Option<&str>| {
        let mut request = http()
            .post(service.page_url(&format!("/api/v1/approvals/{id}/deny")))
            .header("cookie", cookie.clone())
            .header("content-type", "application/json")
            .body(json!({ "reason": "no" }).to_string());
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
    };
    let response = api(None).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = api(Some(&token)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn sign_in_and_out() {
    let service = Service::start(&Backend::Memory, &[]);
    let response = http()
        .post(service.page_url("/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    let response = http()
        .post(service.page_url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("token", BOB.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403, "login from another origin");

    let cookie = sign_in(&service, BOB.1).await;
    let page = http()
        .get(service.page_url("/history"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("signed in as <strong id=\"approver\">bob</strong>"));
    let token = form_token(&text);
    let response = http()
        .post(service.page_url("/logout"))
        .header("cookie", cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn a_public_url_path_prefixes_every_route_and_link() {
    let service = Service::start(
        &Backend::Memory,
        &["--public-url", "https://approvals.example.com/mcp/"],
    );
    let (_, answer) = service.check(&call("agent", json!({}))).await;
    let id = answer["id"].as_str().unwrap();
    assert_eq!(
        answer["url"],
        format!("https://approvals.example.com/mcp/approvals/{id}")
    );
    let (status, _) = service
        .api(BOB, "GET", &format!("/mcp/api/v1/approvals/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = service
        .api(BOB, "GET", &format!("/api/v1/approvals/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let login = http()
        .post(service.page_url("/mcp/login"))
        .header("origin", "https://approvals.example.com")
        .form(&[("token", BOB.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    assert_eq!(login.headers()["location"], "/mcp/approvals");
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-mcp-approval=") && cookie.contains("; Secure"),
        "{cookie}"
    );
}
