//! The two HTTP surfaces: the filter's (`POST /v1/check`, metrics, health)
//! and the approvers' (pages, JSON API, health).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Approver, Auth, Via};
use crate::clock::{self, rfc3339};
use crate::html::{self, DetailActions, Frame};
use crate::metrics::Metrics;
use crate::model::{Answer, Approval, CheckRequest, Invalid, Verdict, MAX_DECISION_REASON};
use crate::store::{valid_id, DecideError, Store, StoreError};

pub struct Settings {
    /// The public URL of the approvers' page, without a trailing slash.
    pub public_url: String,
    /// Its path (`""` or `/prefix`): every route is under it.
    pub base_path: String,
    pub max_ttl_seconds: u64,
    pub max_check_bytes: usize,
    pub retry_after_seconds: u64,
    /// Pending approvals and history lines shown at most.
    pub list_limit: usize,
}

/// What both listeners use.
pub struct Core {
    pub store: Store,
    pub metrics: Metrics,
    pub settings: Settings,
}

/// The approvers' listener's state: the core and the approvers' sign-in,
/// which needs the signing secret (from Redis, possibly later than the
/// filter's listener starts).
pub struct Shared {
    pub core: Arc<Core>,
    pub auth: Auth,
}

impl std::ops::Deref for Shared {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

type App = Arc<Shared>;
type FilterApp = Arc<Core>;

// ---------------------------------------------------------------------------
// The filter's listener

pub fn filter_router(app: FilterApp) -> Router {
    Router::new()
        .route("/v1/check", post(check))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

fn error_json(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

async fn check(State(app): State<FilterApp>, body: Body) -> Response {
    let started = Instant::now();
    let (response, result, created) = answer_check(&app, body).await;
    app.metrics.check(result, created, started.elapsed());
    response
}

async fn answer_check(app: &Core, body: Body) -> (Response, &'static str, bool) {
    let limit = app.settings.max_check_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return (
            error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the check is larger than {limit} bytes"),
            ),
            "invalid",
            false,
        );
    };
    let request: CheckRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(err) => {
            return (
                error_json(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string()),
                "invalid",
                false,
            )
        }
    };
    let (digest, call) = match request.validate(app.settings.max_ttl_seconds) {
        Ok(valid) => valid,
        Err(Invalid::DigestMismatch { expected }) => {
            let body = json!({
                "error": "digest_mismatch",
                "message": "the digest does not match the call",
                "expected": expected,
            });
            return (
                (StatusCode::BAD_REQUEST, Json(body)).into_response(),
                "invalid",
                false,
            );
        }
        Err(err) => {
            return (
                error_json(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string()),
                "invalid",
                false,
            )
        }
    };
    let outcome = match app.store.check(&digest, &call).await {
        Ok(outcome) => outcome,
        Err(StoreError::Unavailable(text)) => {
            eprintln!("mcp-approval-service: check failed: {text}");
            return (
                error_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "approval storage unavailable",
                ),
                "error",
                false,
            );
        }
        Err(err) => {
            return (
                error_json(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_pending",
                    &err.to_string(),
                ),
                "full",
                false,
            )
        }
    };
    let url = approval_url(&app.settings, &outcome.id);
    let (status, result, created) = match outcome.answer {
        Answer::Approved => ("approved", "approved", false),
        Answer::Denied => ("denied", "denied", false),
        Answer::Pending { created } => ("pending", "pending", created),
    };
    let mut body = json!({
        "status": status,
        "id": outcome.id,
        "url": url,
        "expires_at": rfc3339(outcome.expires_ms),
    });
    match outcome.answer {
        Answer::Pending { created } => {
            let left = outcome
                .expires_ms
                .saturating_sub(outcome.now_ms)
                .div_ceil(1000);
            body["retry_after_seconds"] = json!(app.settings.retry_after_seconds.min(left).max(1));
            body["created"] = json!(created);
        }
        Answer::Approved | Answer::Denied => {
            body["approver"] = json!(outcome.approver);
            body["reason"] = json!(outcome.decision_reason);
            body["decided_at"] = json!(outcome.decided_ms.map(rfc3339));
        }
    }
    (
        (StatusCode::OK, Json(body)).into_response(),
        result,
        created,
    )
}

pub fn approval_url(settings: &Settings, id: &str) -> String {
    format!("{}/approvals/{id}", settings.public_url)
}

async fn metrics(State(app): State<FilterApp>) -> Response {
    let pending = app.store.pending_count().await.ok();
    let text = app.metrics.render(pending, app.store.errors());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<FilterApp>) -> Response {
    ready(&app.store).await
}

async fn page_readyz(State(app): State<App>) -> Response {
    ready(&app.store).await
}

async fn ready(store: &Store) -> Response {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err}\n"),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------
// The approvers' listener

pub fn approver_router(app: App) -> Router {
    let routes = Router::new()
        .route("/", get(home))
        .route("/approvals", get(list_page))
        .route("/approvals/{id}", get(detail_page))
        .route("/approvals/{id}/{verdict}", post(decide_form))
        .route("/history", get(history_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/api/v1/approvals", get(api_list))
        .route("/api/v1/approvals/{id}", get(api_get))
        .route("/api/v1/approvals/{id}/{verdict}", post(api_decide))
        .route("/api/v1/history", get(api_history))
        .route("/healthz", get(healthz))
        .route("/readyz", get(page_readyz))
        .with_state(app.clone());
    if app.settings.base_path.is_empty() {
        routes
    } else {
        Router::new().nest(&app.settings.base_path, routes)
    }
}

fn now_s() -> u64 {
    clock::now_ms() / 1000
}

/// Headers every page carries: no scripts, no framing, no caching.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

impl Shared {
    fn who(&self, headers: &HeaderMap, peer: SocketAddr) -> Option<Approver> {
        self.auth.authenticate(headers, peer.ip(), now_s())
    }

    fn base(&self) -> &str {
        &self.settings.base_path
    }

    async fn frame<'a>(&'a self, approver: &'a Approver, csrf: &'a str) -> Frame<'a> {
        Frame {
            base: self.base(),
            approver: Some(&approver.name),
            logout_csrf: (approver.via == Via::Session).then_some(csrf),
            pending: self.store.pending_count().await.ok(),
        }
    }

    fn anonymous_frame(&self) -> Frame<'_> {
        Frame {
            base: self.base(),
            approver: None,
            logout_csrf: None,
            pending: None,
        }
    }

    /// What an unauthenticated page request gets.
    fn sign_in(&self) -> Response {
        if self.auth.tokens.is_empty() {
            let frame = self.anonymous_frame();
            html_response(
                StatusCode::UNAUTHORIZED,
                html::message(
                    &frame,
                    "Not signed in",
                    "Open this page through your organisation's sign-in proxy.",
                ),
            )
        } else {
            see_other(&format!("{}/login", self.base()))
        }
    }

    fn unavailable_page(&self, err: &dyn std::fmt::Display) -> Response {
        eprintln!("mcp-approval-service: {err}");
        html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            html::message(
                &self.anonymous_frame(),
                "Unavailable",
                "The approval storage did not answer; try again.",
            ),
        )
    }
}

async fn home(State(app): State<App>) -> Response {
    see_other(&format!("{}/approvals", app.base()))
}

async fn list_page(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return app.sign_in();
    };
    let (approvals, now) = match app.store.pending(app.settings.list_limit).await {
        Ok(found) => found,
        Err(err) => return app.unavailable_page(&err),
    };
    let csrf = app.auth.csrf_token(&approver.name, now_s());
    let frame = app.frame(&approver, &csrf).await;
    html_response(StatusCode::OK, html::list(&frame, &approvals, now))
}

#[derive(Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

async fn detail_page(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return app.sign_in();
    };
    let flash = match query.done.as_deref() {
        Some("approved") => Some((
            "Approved. The agent's next try of this exact call goes through, once.",
            false,
        )),
        Some("denied") => Some(("Denied. The agent is told your reason.", false)),
        _ => None,
    };
    render_detail(&app, &approver, &id, StatusCode::OK, flash).await
}

async fn render_detail(
    app: &Shared,
    approver: &Approver,
    id: &str,
    status: StatusCode,
    flash: Option<(&str, bool)>,
) -> Response {
    let csrf = app.auth.csrf_token(&approver.name, now_s());
    let frame = app.frame(approver, &csrf).await;
    if !valid_id(id) {
        return html_response(
            StatusCode::NOT_FOUND,
            html::message(&frame, "Not found", "No such approval."),
        );
    }
    let (approval, now) = match app.store.get(id).await {
        Ok((Some(approval), now)) => (approval, now),
        Ok((None, _)) => {
            return html_response(
                StatusCode::NOT_FOUND,
                html::message(
                    &frame,
                    "Not found",
                    "No such approval: it may have expired.",
                ),
            )
        }
        Err(err) => return app.unavailable_page(&err),
    };
    let actions = DetailActions {
        csrf: &csrf,
        own_call: approval.call.separate_approver && approval.call.is_own_call(&approver.name),
    };
    html_response(
        status,
        html::detail(&frame, &approval, now, Some(actions), flash),
    )
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    match text {
        "approve" => Some(Verdict::Approve),
        "deny" => Some(Verdict::Deny),
        _ => None,
    }
}

/// A decision's reason, cleaned: CRLF as LF, trimmed, bounded, no other
/// control characters; a denial needs one.
fn decision_reason(verdict: Verdict, text: &str) -> Result<Option<String>, &'static str> {
    let text = text.replace("\r\n", "\n");
    let text = text.trim();
    if text.chars().count() > MAX_DECISION_REASON {
        return Err("The reason is longer than 1000 characters.");
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err("The reason contains control characters.");
    }
    if text.is_empty() {
        return match verdict {
            Verdict::Deny => Err("A denial needs a reason: the agent is told it."),
            Verdict::Approve => Ok(None),
        };
    }
    Ok(Some(text.to_owned()))
}

/// A decision refused before the store: why, and the HTTP status.
enum Refusal {
    Status(StatusCode, String),
}

/// Checks and stores a decision; shared by the page and the API.
async fn decide(
    app: &Shared,
    approver: &Approver,
    id: &str,
    verdict: Verdict,
    reason: &str,
) -> Result<Approval, Refusal> {
    let refuse = |status: StatusCode, text: &str| {
        app.metrics.refused_decision();
        Refusal::Status(status, text.to_owned())
    };
    if !valid_id(id) {
        return Err(refuse(StatusCode::NOT_FOUND, "No such approval."));
    }
    let reason =
        decision_reason(verdict, reason).map_err(|text| refuse(StatusCode::BAD_REQUEST, text))?;
    let approval = match app.store.get(id).await {
        Ok((Some(approval), _)) => approval,
        Ok((None, _)) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "No such approval: it may have expired.",
            ))
        }
        Err(err) => return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())),
    };
    if verdict == Verdict::Approve
        && approval.call.separate_approver
        && approval.call.is_own_call(&approver.name)
    {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "This is your own agent's call: someone else must approve it.",
        ));
    }
    match app
        .store
        .decide(id, verdict, &approver.name, reason.as_deref())
        .await
    {
        Ok(approval) => {
            app.metrics.decision(verdict == Verdict::Approve);
            eprintln!(
                "mcp-approval-service: {} {} {} by {}",
                verdict.status().as_str(),
                id,
                approval.call.target.name,
                approver.name
            );
            Ok(approval)
        }
        Err(DecideError::NotFound) => Err(refuse(
            StatusCode::NOT_FOUND,
            "No such approval: it may have expired.",
        )),
        Err(DecideError::NotPending(status)) => Err(refuse(
            StatusCode::CONFLICT,
            &format!(
                "This approval is no longer pending: it is {}.",
                status.as_str()
            ),
        )),
        Err(DecideError::Unavailable(text)) => Err(refuse(StatusCode::SERVICE_UNAVAILABLE, &text)),
    }
}

async fn decide_form(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, verdict)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return app.sign_in();
    };
    let Some(verdict) = parse_verdict(&verdict) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let form = form.ok();
    let csrf_ok = form
        .as_ref()
        .is_some_and(|Form(form)| app.auth.csrf_valid(&approver.name, &form.csrf, now_s()));
    if !app.auth.same_origin(&headers) || !csrf_ok {
        app.metrics.refused_decision();
        let csrf = app.auth.csrf_token(&approver.name, now_s());
        let frame = app.frame(&approver, &csrf).await;
        return html_response(
            StatusCode::FORBIDDEN,
            html::message(
                &frame,
                "Refused",
                "This form did not come from this page (missing or stale form token, or another site). Open the approval again and retry.",
            ),
        );
    }
    let reason = form.map(|Form(form)| form.reason).unwrap_or_default();
    match decide(&app, &approver, &id, verdict, &reason).await {
        Ok(approval) => see_other(&format!(
            "{}/approvals/{}?done={}",
            app.base(),
            approval.id,
            verdict.status().as_str()
        )),
        Err(Refusal::Status(status, text)) => {
            render_detail(&app, &approver, &id, status, Some((&text, true))).await
        }
    }
}

async fn history_page(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return app.sign_in();
    };
    let entries = match app.store.history(app.settings.list_limit).await {
        Ok(entries) => entries,
        Err(err) => return app.unavailable_page(&err),
    };
    let csrf = app.auth.csrf_token(&approver.name, now_s());
    let frame = app.frame(&approver, &csrf).await;
    html_response(
        StatusCode::OK,
        html::history(&frame, &entries, clock::now_ms()),
    )
}

async fn login_page(State(app): State<App>) -> Response {
    let frame = app.anonymous_frame();
    if app.auth.tokens.is_empty() {
        return html_response(
            StatusCode::NOT_FOUND,
            html::message(
                &frame,
                "No token sign-in",
                "Approvers sign in through the sign-in proxy.",
            ),
        );
    }
    html_response(StatusCode::OK, html::login(&frame, None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let frame = app.anonymous_frame();
    if app.auth.tokens.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !app.auth.same_origin(&headers) {
        return html_response(
            StatusCode::FORBIDDEN,
            html::login(&frame, Some("Sign in from this page.")),
        );
    }
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    let Some(owner) = app.auth.token_owner(&token) else {
        return html_response(
            StatusCode::UNAUTHORIZED,
            html::login(&frame, Some("Unknown token.")),
        );
    };
    let cookie = app
        .auth
        .set_cookie(&app.auth.session_cookie(owner, now_s()));
    let mut response = see_other(&format!("{}/approvals", app.base()));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return app.sign_in();
    };
    let csrf_ok =
        form.is_ok_and(|Form(form)| app.auth.csrf_valid(&approver.name, &form.csrf, now_s()));
    if !app.auth.same_origin(&headers) || !csrf_ok {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut response = see_other(&format!("{}/login", app.base()));
    if let Ok(value) = HeaderValue::from_str(&app.auth.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---------------------------------------------------------------------------
// The JSON API

fn api_error(status: StatusCode, error: &str, message: &str) -> Response {
    let mut response = error_json(status, error, message);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn approval_json(settings: &Settings, approval: &Approval, now: u64) -> Value {
    let call = &approval.call;
    let arguments: Value = serde_json::value::RawValue::from_string(call.arguments.clone())
        .ok()
        .and_then(|raw| serde_json::to_value(raw).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": approval.id,
        "status": approval.status_at(now).as_str(),
        "url": approval_url(settings, &approval.id),
        "digest": approval.digest,
        "grant": call.grant,
        "caller": call.caller,
        "target": call.target,
        "arguments": arguments,
        "rule": call.rule,
        "reason": call.reason,
        "ttl_seconds": call.ttl_seconds,
        "separate_approver": call.separate_approver,
        "policy_revision": call.policy_revision,
        "created_at": rfc3339(approval.created_ms),
        "expires_at": rfc3339(approval.expires_ms),
        "approver": approval.approver,
        "decision_reason": approval.decision_reason,
        "decided_at": approval.decided_ms.map(rfc3339),
        "used_at": approval.used_ms.map(rfc3339),
    })
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn api_list(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<LimitQuery>,
    headers: HeaderMap,
) -> Response {
    if app.who(&headers, peer).is_none() {
        return api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first");
    }
    let limit = query
        .limit
        .unwrap_or(app.settings.list_limit)
        .min(app.settings.list_limit);
    match app.store.pending(limit).await {
        Ok((approvals, now)) => {
            let list: Vec<Value> = approvals
                .iter()
                .map(|a| approval_json(&app.settings, a, now))
                .collect();
            Json(json!({ "approvals": list })).into_response()
        }
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &err.to_string(),
        ),
    }
}

async fn api_get(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if app.who(&headers, peer).is_none() {
        return api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first");
    }
    if !valid_id(&id) {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no such approval");
    }
    match app.store.get(&id).await {
        Ok((Some(approval), now)) => {
            Json(approval_json(&app.settings, &approval, now)).into_response()
        }
        Ok((None, _)) => api_error(StatusCode::NOT_FOUND, "not_found", "no such approval"),
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &err.to_string(),
        ),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    reason: String,
}

async fn api_decide(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, verdict)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(approver) = app.who(&headers, peer) else {
        return api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first");
    };
    let Some(verdict) = parse_verdict(&verdict) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "approve or deny");
    };
    // A cross-site form can send neither this content type nor a custom header.
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        app.metrics.refused_decision();
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "send Content-Type: application/json",
        );
    }
    if !app.auth.same_origin(&headers) {
        app.metrics.refused_decision();
        return api_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "request from another origin",
        );
    }
    if approver.via == Via::Session {
        let token = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !app.auth.csrf_valid(&approver.name, token, now_s()) {
            app.metrics.refused_decision();
            return api_error(
                StatusCode::FORBIDDEN,
                "csrf",
                "cookie-authenticated calls need the x-csrf-token header",
            );
        }
    }
    let decision: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(decision) => decision,
            Err(err) => {
                app.metrics.refused_decision();
                return api_error(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string());
            }
        }
    };
    match decide(&app, &approver, &id, verdict, &decision.reason).await {
        Ok(approval) => {
            Json(approval_json(&app.settings, &approval, clock::now_ms())).into_response()
        }
        Err(Refusal::Status(status, text)) => {
            let error = match status {
                StatusCode::FORBIDDEN => "own_call",
                StatusCode::CONFLICT => "not_pending",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::BAD_REQUEST => "invalid_request",
                _ => "unavailable",
            };
            api_error(status, error, &text)
        }
    }
}

async fn api_history(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<LimitQuery>,
    headers: HeaderMap,
) -> Response {
    if app.who(&headers, peer).is_none() {
        return api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first");
    }
    let limit = query
        .limit
        .unwrap_or(app.settings.list_limit)
        .min(app.settings.list_limit);
    match app.store.history(limit).await {
        Ok(entries) => {
            let list: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "event": e.event,
                        "at": rfc3339(e.at_ms),
                        "approver": e.approver,
                        "reason": e.reason,
                        "grant": e.summary.grant,
                        "caller": e.summary.caller,
                        "target": e.summary.target,
                        "rule": e.summary.rule,
                    })
                })
                .collect();
            Json(json!({ "history": list })).into_response()
        }
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &err.to_string(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cleaned_and_denials_need_one() {
        assert_eq!(decision_reason(Verdict::Approve, "  "), Ok(None));
        assert!(decision_reason(Verdict::Deny, " \r\n ").is_err());
        assert_eq!(
            decision_reason(Verdict::Deny, " no\r\nnetwork "),
            Ok(Some("no\nnetwork".into()))
        );
        assert!(decision_reason(Verdict::Deny, "a\u{1b}b").is_err());
        assert!(decision_reason(Verdict::Deny, &"x".repeat(1001)).is_err());
        assert!(decision_reason(Verdict::Deny, &"é".repeat(1000)).is_ok());
    }
}
