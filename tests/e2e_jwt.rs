//! End to end, `identity: {"jwt_claim": ...}`: Envoy's own `jwt_authn` filter
//! verifies an ES256 JWT (a key pair made here, its JWKS given inline) and
//! stores the payload as dynamic metadata; the gate, after it in the chain,
//! takes the grant from a claim of that payload. Also checks that the shipped
//! envoy/envoy-jwt.yaml passes `envoy --mode validate`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate;
use serde_json::{json, Value};
use support::demo_server::{self, Recorder};
use support::envoy::{config_yaml, envoy_binary, repo_root, Envoy};
use support::mcp_client::McpClient;
use support::stack::{error_of, unix_now};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "mcp-policy-e2e";
/// jwt_authn's `payload_in_metadata`, named again in the policy.
const PAYLOAD_KEY: &str = "jwt_payload";
const CALL_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"script":"x"}}}"#;

/// An ES256 key pair made for this test run, as an issuer would hold it.
struct Issuer {
    key: SigningKey,
    kid: &'static str,
}

impl Issuer {
    fn generate(kid: &'static str) -> Issuer {
        Issuer {
            key: SigningKey::generate(),
            kid,
        }
    }

    /// The public key as a JWKS (RFC 7517), what `local_jwks` reads.
    fn jwks(&self) -> String {
        let point = self.key.verifying_key().to_sec1_point(false);
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }]})
        .to_string()
    }

    /// A compact JWS (RFC 7515) over `claims`: ES256 signs r || s, 32 bytes each.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// A valid token for `sub`, good for ten minutes.
    fn token(&self, sub: &str) -> String {
        self.sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": unix_now() + 600}))
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `config_yaml` (the tested filter block, unchanged) with `jwt_authn` before it:
/// `/anon/mcp` (rewritten to `/mcp`) lets requests without a token through,
/// every other path requires a valid token.
fn jwt_config(port: u16, admin_port: u16, upstream_port: u16, policy: &str, jwks: &str) -> String {
    let jwks = serde_json::to_string(jwks).unwrap();
    let jwt_authn = format!(
        r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                test_issuer:
                  issuer: "{ISSUER}"
                  audiences: ["{AUDIENCE}"]
                  local_jwks: {{ inline_string: {jwks} }}
                  payload_in_metadata: {PAYLOAD_KEY}
              rules:
              - match: {{ prefix: "/anon/" }}
                requires:
                  requires_any:
                    requirements:
                    - provider_name: test_issuer
                    - allow_missing: {{}}
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: test_issuer }}
          - name: mcp-policy
"#
    );
    let routes = r#"              routes:
              - match: { prefix: "/" }
"#;
    let anon_route = r#"              routes:
              - match: { prefix: "/anon/mcp" }
                route: { cluster: mcp_server, timeout: 0s, prefix_rewrite: "/mcp" }
              - match: { prefix: "/" }
"#;
    let config = config_yaml(port, admin_port, upstream_port, policy);
    let filter = "          - name: mcp-policy\n";
    assert_eq!(config.matches(filter).count(), 1, "{config}");
    assert_eq!(config.matches(routes).count(), 1, "{config}");
    config
        .replacen(filter, &jwt_authn, 1)
        .replacen(routes, anon_route, 1)
}

/// Envoy (jwt_authn → mcp-policy → router) in front of a recording demo server.
struct JwtStack {
    envoy: Envoy,
    upstream: Recorder,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl JwtStack {
    async fn start(policy: &str, jwks: &str) -> JwtStack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_port = listener.local_addr().unwrap().port();
        let upstream = Recorder::default();
        let server = tokio::spawn(demo_server::serve(listener, upstream.clone()));
        let envoy = Envoy::start_with_config(
            |port, admin_port| jwt_config(port, admin_port, upstream_port, policy, jwks),
            1,
        )
        .await;
        JwtStack {
            envoy,
            upstream,
            server,
        }
    }

    async fn client(&self, url: &str, headers: &[(&str, &str)]) -> McpClient {
        McpClient::connect(url, headers)
            .await
            .unwrap_or_else(|err| panic!("connect through Envoy: {err}\n{}", self.envoy.log()))
    }

    fn anon_url(&self) -> String {
        format!("http://127.0.0.1:{}/anon/mcp", self.envoy.port)
    }

    /// A raw `tools/call` POST; returns the status and the body.
    async fn post_call(&self, authorization: Option<&str>) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(self.envoy.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(CALL_BODY);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

impl Drop for JwtStack {
    /// As `Stack`: a request the upstream saw cut off mid-body fails the test.
    fn drop(&mut self) {
        self.server.abort();
        let cut_off = self.upstream.cut_off_requests();
        if !cut_off.is_empty() && !std::thread::panicking() {
            panic!("the upstream saw requests cut off mid-body: {cut_off:?}");
        }
    }
}

const POLICY: &str = r#"{"version":"1","default":"deny",
    "identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"sub"}},
    "grants":{"ci-runner":{"default":"allow"}},
    "tools":{"checkCodeExecStatus":{}}}"#;

#[tokio::test]
async fn the_grant_is_the_sub_claim_of_the_jwt_envoy_verified() {
    let issuer = Issuer::generate("e2e-key-1");
    let stack = JwtStack::start(POLICY, &issuer.jwks()).await;
    let script = json!({"script": "print(1)"});

    // sub = ci-runner: its grant allows every tool.
    let ci_auth = bearer(&issuer.token("ci-runner"));
    let ci = stack
        .client(&stack.envoy.mcp_url(), &[("authorization", &ci_auth)])
        .await;
    let seen = stack.envoy.audit_records().len();
    ci.call("asyncExecuteCode", script.clone()).await.unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    // The record of this call: the only one written since.
    let audit = stack.envoy.audit_records_after(seen);
    assert_eq!(audit.len(), 1, "{audit:?}");
    let last = &audit[0];
    assert_eq!(
        (&last["grant"], &last["tool"], &last["decision"]),
        (
            &json!("ci-runner"),
            &json!("asyncExecuteCode"),
            &json!("allowed")
        ),
        "{audit:?}"
    );
    // jwt_authn's default (`forward: false`) keeps the token from the server.
    let requests = stack.upstream.http_requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.header("authorization").is_none()),
        "the JWT reached the server"
    );

    // sub = alice: no grant entry, so the top-level policy: default deny.
    let alice_auth = bearer(&issuer.token("alice"));
    let alice = stack
        .client(&stack.envoy.mcp_url(), &[("authorization", &alice_auth)])
        .await;
    let seen = stack.envoy.audit_records().len();
    let err = error_of(alice.call("asyncExecuteCode", script.clone()).await);
    assert_eq!(err.code, -31001, "{err:?}");
    assert_eq!(err.data.as_ref().unwrap()["rule"], "/default", "{err:?}");
    alice
        .call("checkCodeExecStatus", json!({"execution_uuid": "u"}))
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    // alice's two calls, in order: denied by the default, then allowed.
    let audit = stack.envoy.audit_records_after(seen);
    let decided: Vec<(&Value, &Value, &Value, &Value)> = audit
        .iter()
        .map(|r| (&r["grant"], &r["tool"], &r["decision"], &r["rule"]))
        .collect();
    assert_eq!(
        decided,
        [
            (
                &json!("alice"),
                &json!("asyncExecuteCode"),
                &json!("denied"),
                &json!("/default")
            ),
            (
                &json!("alice"),
                &json!("checkCodeExecStatus"),
                &json!("allowed"),
                &Value::Null
            ),
        ],
        "{audit:?}"
    );
}

#[tokio::test]
async fn jwt_authn_refuses_bad_tokens_before_the_gate_and_the_server() {
    let issuer = Issuer::generate("e2e-key-1");
    // Same kid, another key: a well-formed token whose signature does not verify.
    let impostor = Issuer::generate("e2e-key-1");
    let stack = JwtStack::start(POLICY, &issuer.jwks()).await;

    let good = issuer.token("ci-runner");
    let (header_and_payload, _) = good.rsplit_once('.').unwrap();
    let impostor_token = impostor.token("ci-runner");
    let (_, impostor_signature) = impostor_token.rsplit_once('.').unwrap();
    let expired = issuer.sign(
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "ci-runner", "exp": unix_now() - 600}),
    );
    let wrong_issuer = issuer.sign(
        &json!({"iss": "https://other.test", "aud": AUDIENCE, "sub": "ci-runner", "exp": unix_now() + 600}),
    );
    let cases = [
        (
            "bad signature",
            Some(bearer(&impostor_token)),
            "Jwt verification fails",
        ),
        (
            "signature of another payload",
            Some(bearer(&format!(
                "{header_and_payload}.{impostor_signature}"
            ))),
            "Jwt verification fails",
        ),
        ("expired", Some(bearer(&expired)), "Jwt is expired"),
        (
            "wrong issuer",
            Some(bearer(&wrong_issuer)),
            "Jwt issuer is not configured",
        ),
        (
            "not a JWT",
            Some(bearer("not-a-jwt")),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        ("no token", None, "Jwt is missing"),
    ];
    for (case, authorization, expected) in &cases {
        let (status, body) = stack.post_call(authorization.as_deref()).await;
        // jwt_authn's own answer, not the gate's JSON-RPC -31003.
        assert_eq!((status, body.as_str()), (401, *expected), "{case}");
    }
    assert!(
        stack.upstream.http_requests().is_empty(),
        "a refused request reached the server: {:?}",
        stack.upstream.http_requests()
    );
    // jwt_authn answered; the gate never decided.
    assert!(
        stack.envoy.audit_records().is_empty(),
        "{:?}",
        stack.envoy.audit_records()
    );

    // The good token passes: jwt_authn, then the gate (grant ci-runner), then the server.
    let good_auth = bearer(&good);
    let ci = stack
        .client(&stack.envoy.mcp_url(), &[("authorization", &good_auth)])
        .await;
    ci.call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    let audit = stack.envoy.audit_records();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (&audit[0]["grant"], &audit[0]["decision"]),
        (&json!("ci-runner"), &json!("allowed"))
    );
}

#[tokio::test]
async fn without_a_token_the_grant_is_anonymous_where_jwt_authn_allows_it() {
    let issuer = Issuer::generate("e2e-key-1");
    let policy = r#"{"version":"1","default":"deny",
        "identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"sub"}},
        "grants":{"ci-runner":{"default":"allow"},"anonymous":{"tools":{"asyncExecuteCode":{"action":"deny","reason":"sign in first"}}}},
        "tools":{"checkCodeExecStatus":{}}}"#;
    let stack = JwtStack::start(policy, &issuer.jwks()).await;

    let anonymous = stack.client(&stack.anon_url(), &[]).await;
    let err = error_of(
        anonymous
            .call("asyncExecuteCode", json!({"script": "x"}))
            .await,
    );
    let data = err.data.unwrap();
    assert_eq!(data["rule"], "/grants/anonymous/tools/asyncExecuteCode");
    assert_eq!(data["reason"], "sign in first");

    // The same allow_missing route still reads a token that is there.
    let ci_auth = bearer(&issuer.token("ci-runner"));
    let ci = stack
        .client(&stack.anon_url(), &[("authorization", &ci_auth)])
        .await;
    ci.call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    let grants: Vec<Value> = stack
        .envoy
        .audit_records()
        .iter()
        .filter(|r| r["tool"] == "asyncExecuteCode")
        .map(|r| r["grant"].clone())
        .collect();
    assert_eq!(grants, vec![json!("anonymous"), json!("ci-runner")]);
}

#[test]
fn the_shipped_jwt_configuration_passes_envoy_validation() {
    // Validation loads the module (and so checks the policy) from the path
    // the file names, relative to the repository root.
    let module = "target/wasm32-wasip1/release/mcp_policy.wasm";
    assert!(
        repo_root().join(module).exists(),
        "{module} is missing: build it with `make wasm` (make test does)"
    );
    let output = std::process::Command::new(envoy_binary())
        .current_dir(repo_root())
        .args(["--mode", "validate", "-c", "envoy/envoy-jwt.yaml"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", envoy_binary().display()));
    assert!(
        output.status.success(),
        "envoy --mode validate -c envoy/envoy-jwt.yaml failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn string_and_integer_claims_name_grants_other_claims_are_anonymous() {
    // `sub` must be a string (jwt_authn refuses others), so a custom claim.
    let issuer = Issuer::generate("e2e-key-1");
    let policy = r#"{"version":"1","default":"deny",
        "identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"uid"}},
        "grants":{"1234":{"default":"allow"},"7":{"default":"allow"}}}"#;
    let stack = JwtStack::start(policy, &issuer.jwks()).await;
    let cases = [
        (json!("1234"), "1234"),
        (json!(1234), "1234"),
        (json!(7), "7"),
        (json!(42.5), "anonymous"),
        (json!(true), "anonymous"),
        (json!(["1234"]), "anonymous"),
        (json!({"id": "1234"}), "anonymous"),
    ];
    for (uid, grant) in cases {
        let token = issuer.sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "someone", "uid": uid, "exp": unix_now() + 600
        }));
        let auth = bearer(&token);
        let client = stack
            .client(&stack.envoy.mcp_url(), &[("authorization", &auth)])
            .await;
        let seen = stack.envoy.audit_records().len();
        let result = client
            .call("asyncExecuteCode", json!({"script": "x"}))
            .await;
        assert_eq!(
            result.is_ok(),
            grant != "anonymous",
            "uid {uid}: {result:?}"
        );
        let audit = stack.envoy.audit_records_after(seen);
        assert_eq!(audit.len(), 1, "uid {uid}: {audit:?}");
        assert_eq!(audit[0]["grant"], grant, "uid {uid}");
    }
    assert!(stack
        .envoy
        .log()
        .contains("JWT claim `uid` is not a string or an integer"));
}

/// A role claim of the same verified payload names the caller's role:
/// rules come from the role, counts stay per grant unless a limit says
/// `scope: role`; an unknown role is no role.
#[tokio::test]
async fn a_role_claim_names_the_callers_role() {
    let issuer = Issuer::generate("e2e-key-1");
    let policy = r#"{"version":"1","default":"deny",
        "identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"sub","role_claim":"role"}},
        "roles":{"engineer":{"tools":{
            "asyncExecuteCode":{"limits":[{"counter":"exec","window":"hour","max":1,"scope":"grant"}]},
            "checkCodeExecStatus":{"limits":[{"counter":"polls","window":"hour","max":2,"scope":"role"}]}}}}}"#;
    let stack = JwtStack::start(policy, &issuer.jwks()).await;
    // The error code a call gets, or 0 when it passes.
    let call = |sub: &'static str, role: Option<&'static str>, tool: &'static str| {
        let mut claims =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": unix_now() + 600});
        if let Some(role) = role {
            claims["role"] = json!(role);
        }
        let auth = bearer(&issuer.sign(&claims));
        let stack = &stack;
        async move {
            let client = stack
                .client(&stack.envoy.mcp_url(), &[("authorization", &auth)])
                .await;
            match client
                .call(tool, json!({"script": "x", "execution_uuid": "u"}))
                .await
            {
                Ok(_) => (0, Value::Null),
                Err(err) => (err.code, err.data.unwrap_or(Value::Null)),
            }
        }
    };
    // No role, or one the policy does not define: the top level denies.
    assert_eq!(call("eve", None, "asyncExecuteCode").await.0, -31001);
    assert_eq!(
        call("eve", Some("admin"), "asyncExecuteCode").await.0,
        -31001
    );
    // Engineers: once an hour each.
    assert_eq!(
        call("alice", Some("engineer"), "asyncExecuteCode").await.0,
        0
    );
    assert_eq!(
        call("alice", Some("engineer"), "asyncExecuteCode").await.0,
        -31002
    );
    assert_eq!(call("bob", Some("engineer"), "asyncExecuteCode").await.0, 0);
    // Polls: twice an hour for all engineers together.
    assert_eq!(
        call("alice", Some("engineer"), "checkCodeExecStatus")
            .await
            .0,
        0
    );
    assert_eq!(
        call("bob", Some("engineer"), "checkCodeExecStatus").await.0,
        0
    );
    let (code, data) = call("carol", Some("engineer"), "checkCodeExecStatus").await;
    assert_eq!(
        (code, &data["rule"]),
        (
            -31002,
            &json!("/roles/engineer/tools/checkCodeExecStatus/limits/0")
        ),
        "{data}"
    );
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 2);
    assert_eq!(stack.upstream.tool_call_count("checkCodeExecStatus"), 2);
}
