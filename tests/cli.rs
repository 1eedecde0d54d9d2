//! The `mcp-policy` command, run as a user runs it: the built binary, its
//! exit status, and what it writes to standard output and standard error.
// The command and the schema are native only.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

mod support;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs the command in `dir` with `args`, feeding `stdin`.
fn mcp_policy_in(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-policy"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        status: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs the command at the repository root.
fn mcp_policy(args: &[&str]) -> Run {
    mcp_policy_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, "")
}

/// A fresh directory holding `files`, for documents the repository does not
/// ship; removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(test: &str, files: &[(&str, &str)]) -> Scratch {
    let dir = std::env::temp_dir().join(format!("mcp-policy-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    Scratch(dir)
}

// ---- check ----

/// The revision `check` prints (and the filter exports) for a repository file.
fn revision_of(file: &str) -> String {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    mcp_policy::metrics::policy_revision(&bytes)
}

#[test]
fn check_accepts_the_repository_policy() {
    let run = mcp_policy(&["check", "policy.json", "examples/policies/grants.json"]);
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (
            0,
            format!(
                "policy.json: OK (default deny, 3 tool rules, 0 grants, revision {})\n\
                 examples/policies/grants.json: OK (default deny, 2 tool rules, 2 grants, revision {})\n\
                 examples/policies/grants.json:18:18: warning: /tools/checkCodeExecStatus/limits/0: scope \"session\": MCP 2026-07-28 has no sessions, so its requests (and any without Mcp-Session-Id) count under the caller's grant instead: stricter, never unlimited; use \"grant\" to say so\n",
                revision_of("policy.json"),
                revision_of("examples/policies/grants.json")
            )
            .as_str(),
            ""
        )
    );
}

const MANY_ERRORS: &str = r#"{
  "version": "1",
  "default": "block",
  "tools": {
    "a": {"limits": [{"counter": "c", "window": "fortnight", "max": 1, "scope": "grant"}]},
    "b": {"deny_if": {"args.s": {"regex": "("}}},
    "c": {"reason": "x", "on_deny": "y"},
    "d": {"require": {"script": {"eq": 1}}}
  },
  "identity": {"header": "x-agent-id", "jwt_claim": {"provider_metadata": "p", "claim": "sub"}},
  "grants": {"ci": {"default": "maybe", "tools": {"e": {"action": "nope"}}}},
  "max_json_depth": 500
}
"#;

/// The summary counts every key of `tools`: patterns are rules too.
#[test]
fn check_counts_pattern_keys_among_the_tool_rules() {
    let policy = r#"{"version":"1","default":"deny","tools":{"read":{},"fs_*":{},"git_*":{"action":"deny"}}}"#;
    let dir = scratch("patterns", &[("p.json", policy)]);
    let run = mcp_policy_in(&dir, &["check", "p.json"], "");
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert!(
        run.stdout
            .starts_with("p.json: OK (default deny, 3 tool rules, 0 grants, "),
        "{}",
        run.stdout
    );
}

#[test]
fn check_reports_every_error_it_can_with_path_and_position() {
    let dir = scratch(
        "many",
        &[
            ("bad.json", MANY_ERRORS),
            ("good.json", r#"{"version":"1","default":"allow"}"#),
        ],
    );
    let run = mcp_policy_in(&dir, &["check", "bad.json", "good.json"], "");
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stdout,
        format!(
            "good.json: OK (default allow, 0 tool rules, 0 grants, revision {})\n",
            mcp_policy::metrics::policy_revision(br#"{"version":"1","default":"allow"}"#)
        )
    );
    let expected = [
        // Every error, in source order; positions from the reader...
        "bad.json:3:20: default: unknown variant `block`, expected `allow` or `deny`",
        r#"bad.json:5:59: tools.a.limits[0].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds)"#,
        // ...or, for checks made after reading, the value the path names.
        r#"bad.json:6:43: tools.b.deny_if.args.s.regex: invalid regex "(": found open group without closing ')'"#,
        "bad.json:7:37: tools.c.on_deny: a rule has either `reason` or `on_deny` (the same thing), not both",
        r#"bad.json:8:33: tools.d.require.script: argument paths start with "args." (got "script")"#,
        "bad.json:10:15: identity: give exactly one of `header`, `bearer_tokens`, `jwt_claim`",
        "bad.json:11:38: grants.ci.default: unknown variant `maybe`, expected `allow` or `deny`",
        "bad.json:11:72: grants.ci.tools.e.action: unknown variant `nope`, expected one of `allow`, `deny`, `approve`",
        "bad.json:12:21: max_json_depth: at most 127 (the JSON reader's own limit), got 500",
    ];
    assert_eq!(run.stderr.lines().collect::<Vec<_>>(), expected);
}

/// Several errors in one tool rule, every bad limit, a conflict between two
/// parts and a bad grant: all reported at once, each at its line and column.
const ERRORS_IN_ONE_RULE: &str = r#"{
  "version": "1",
  "default": "deny",
  "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 100, "scope": "grant"}]},
  "tools": {
    "exec": {
      "deny_if": {"args.script": {"regex": "("}, "args.cmd": {"regex": "[a-"}},
      "require": {"args.timeout": {"lte": "300"}, "timeout": {"exists": true}},
      "limits": [
        {"counter": "exec", "window": "fortnight", "max": 10, "scope": "grant"},
        {"counter": "exec_hour", "window": "hour", "max": 0, "scope": "grant"},
        {"counter": "exec_day", "window": "day", "max": 5, "scope": "tenant"}
      ]
    }
  },
  "grants": {
    "ci": {"default": "maybe"},
    "intern": {"tools": {"exec": {"limits": [{"counter": "all", "window": "day", "max": 1, "scope": "grant"}]}}}
  }
}
"#;

#[test]
fn check_reports_every_error_of_a_rule_with_its_line_and_column() {
    let dir = scratch("one-rule", &[("policy.json", ERRORS_IN_ONE_RULE)]);
    let run = mcp_policy_in(&dir, &["check", "policy.json"], "");
    assert_eq!((run.status, run.stdout.as_str()), (1, ""));
    // Checks made after reading point at the value's first byte (the regex's
    // opening quote); the reader's errors at the end of what it read.
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            r#"policy.json:7:44: tools.exec.deny_if.args.script.regex: invalid regex "(": found open group without closing ')'"#,
            r#"policy.json:7:72: tools.exec.deny_if.args.cmd.regex: invalid regex "[a-": non-empty character class has no closing bracket after dash"#,
            r#"policy.json:8:47: tools.exec.require.args.timeout.lte: invalid type: string "300", expected a number"#,
            r#"policy.json:8:62: tools.exec.require.timeout: argument paths start with "args." (got "timeout")"#,
            r#"policy.json:10:49: tools.exec.limits[0].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds)"#,
            "policy.json:11:59: tools.exec.limits[1].max: must be a positive integer, got 0",
            "policy.json:12:76: tools.exec.limits[2].scope: unknown variant `tenant`, expected one of `grant`, `session`, `global`, `role`",
            "policy.json:17:29: grants.ci.default: unknown variant `maybe`, expected `allow` or `deny`",
            r#"policy.json:18:75: grants.intern.tools.exec.limits[0].window: counter "all" has window 86400s here but 60s at all_tools.limits[0]; a counter has one window"#,
        ]
    );
}

#[test]
fn check_locates_errors_found_after_reading() {
    let conflict = "{\"version\": \"1\", \"default\": \"deny\",\n \"all_tools\": {\"limits\": [{\"counter\": \"c\", \"window\": 60, \"max\": 1, \"scope\": \"grant\"}]},\n \"tools\": {\"t\": {\"limits\": [{\"counter\": \"c\", \"window\": 3600, \"max\": 1, \"scope\": \"grant\"}]}}}\n";
    let dir = scratch(
        "located",
        &[
            ("conflict.json", conflict),
            (
                "unclosed.json",
                "{\"version\": \"1\",\n  \"default\": \"deny\"\n",
            ),
            (
                "trailing.json",
                "{\"version\": \"1\", \"default\": \"deny\"}\n{}\n",
            ),
            ("empty.json", ""),
        ],
    );
    let run = mcp_policy_in(
        &dir,
        &[
            "check",
            "conflict.json",
            "unclosed.json",
            "trailing.json",
            "empty.json",
        ],
        "",
    );
    assert_eq!((run.status, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            r#"conflict.json:3:56: tools.t.limits[0].window: counter "c" has window 3600s here but 60s at all_tools.limits[0]; a counter has one window"#,
            "unclosed.json:3:0: policy: EOF while parsing an object",
            "trailing.json:2:1: policy: trailing characters after the policy document",
            "empty.json:1:0: policy: EOF while parsing a value",
        ]
    );
}

#[test]
fn check_reads_standard_input_and_reports_unreadable_files() {
    let dir = scratch("stdin", &[]);
    let run = mcp_policy_in(
        &dir,
        &["check", "-"],
        r#"{"version":"1","default":"deny","mode":"audit"}"#,
    );
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stderr,
        "<stdin>:1:46: mode: unknown variant `audit`, expected `enforce` or `monitor`\n"
    );

    let run = mcp_policy_in(&dir, &["check", "missing.json"], "");
    assert_eq!((run.status, run.stdout.as_str()), (1, ""));
    assert!(
        run.stderr
            .starts_with("mcp-policy: cannot read missing.json: "),
        "{}",
        run.stderr
    );
}

// ---- usage ----

#[test]
fn usage_errors_exit_2_and_help_and_version_exit_0() {
    for args in [
        &["check"][..],
        &["eval", "policy.json"],
        &["frobnicate"],
        &[],
    ] {
        let run = mcp_policy(args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
        assert!(
            run.stderr.contains("Usage: mcp-policy"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/allowed.json",
        "--calls",
        "0",
    ]);
    assert_eq!(run.status, 2, "{}", run.stderr);

    let version = mcp_policy(&["--version"]);
    assert_eq!(
        (version.status, version.stdout),
        (0, format!("mcp-policy {}\n", env!("CARGO_PKG_VERSION")))
    );
    for command in ["check", "explain", "eval", "schema"] {
        let help = mcp_policy(&[command, "--help"]);
        assert_eq!(help.status, 0, "{command}");
        assert!(
            help.stdout
                .contains(&format!("Usage: mcp-policy {command}")),
            "{command}: {}",
            help.stdout
        );
    }
    let help = mcp_policy(&["check", "--help"]).stdout;
    assert!(help.contains("Every error is reported at once"), "{help}");
}

// ---- explain ----

#[test]
fn explain_shows_the_repository_policy() {
    let run = mcp_policy(&["explain", "policy.json"]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    let expected = r#"policy.json as seen by callers without a grant entry of their own

identity          header x-agent-id
default           deny  /default
default_prompts   deny  /default
default_resources deny  /default
prompts           (none)
resources         (none)
methods           (none)
annotations       (none)
hide              (nothing)
all_tools         (no limits)
list              show_denied
mode              enforce
deny_as           error
failure_mode      closed
max_body_bytes    1048576
max_json_depth    64
grants            (none)
approval_service  cluster mcp_approval, page (the service's own links), timeout 200 ms, failure_mode closed
revision          sha256:f3ac832c959fbafcc6089f317434a517d9b21277c8722ebe7ae2d8dee6acd77d

TOOL                 ACTION  LISTED  RULE                        REASON
asyncExecuteCode     allow   yes     /tools/asyncExecuteCode     timeout must be given and at most 300 s, and scripts that spawn interactive shells are refused (a tripwire, not a sandbox)
  limit    asyncexecutecode_rate: 10 per minute, per grant                                                                        /tools/asyncExecuteCode/limits/0
  require  args.timeout lte 300                                                                                                   /tools/asyncExecuteCode/require/args.timeout/lte
  deny_if  args.script regex "pty\\.spawn|os\\.fork"                                                                              /tools/asyncExecuteCode/deny_if/args.script/regex
  approve  args.script regex "subprocess|os\\.system|os\\.popen|socket|__import__"                                                /tools/asyncExecuteCode/approve_if/args.script/regex
  approval ttl 900 s, reason "scripts that start processes, open sockets or import modules by name wait for a person's approval"  /tools/asyncExecuteCode/approval
checkCodeExecStatus  allow   yes     /tools/checkCodeExecStatus  poll with an execution_uuid returned by asyncExecuteCode
  limit    checkcodeexecstatus_rate: 120 per minute, per grant                                                                    /tools/checkCodeExecStatus/limits/0
  require  args.execution_uuid regex "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"                             /tools/checkCodeExecStatus/require/args.execution_uuid/regex
deleteWorkspace      deny    yes     /tools/deleteWorkspace      destroys a workspace; ask an operator
(any other tool)     deny    yes     /default                    tool is not listed in the policy and the default is deny

A name that differs from one above only in letter case, or that a pattern above matches only ignoring case, is refused (hidden if that tool is).
"#;
    assert_eq!(run.stdout, expected);
}

#[test]
fn explain_shows_patterns_methods_and_what_hide_hides_of_each_kind() {
    let policy = r#"{"version":"1","default":"deny",
      "hide":["secretTool","tool:hid_*","prompt:hiddenPrompt","resource:file:///srv/secret/*"],
      "methods":{"other":"deny","logging/setLevel":"deny"},
      "tools":{"read_*":{"limits":[{"counter":"reads","window":"hour","max":100,"scope":"grant","per":"args.path"}]},
               "read_secret_*":{"action":"deny","reason":"no secrets"},"exec":{}},
      "prompts":{"review_*":{},"hiddenPrompt":{}}}"#;
    let dir = scratch("explain-patterns", &[("p.json", policy)]);
    let run = mcp_policy_in(&dir.0, &["explain", "p.json"], "");
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    let expected = r#"TOOL              ACTION  LISTED  RULE                  REASON
exec              allow   yes     /tools/exec           -
hid_*             hidden  no      /hide                 (answered as a tool the policy does not list)
read_*            allow   yes     /tools/read_*         -
  limit    reads: 100 per hour, per grant and args.path  /tools/read_*/limits/0
read_secret_*     deny    yes     /tools/read_secret_*  no secrets
secretTool        hidden  no      /hide                 (answered as a tool the policy does not list)
(any other tool)  deny    yes     /default              tool is not listed in the policy and the default is deny
"#;
    assert!(run.stdout.contains(expected), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("\nprompts           hiddenPrompt (hidden), review_* (allow)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "\nmethods           logging/setLevel deny  /methods/logging~1setLevel, other deny  /methods/other\n"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn explain_shows_a_grant_with_its_overrides() {
    let run = mcp_policy(&[
        "explain",
        "examples/policies/grants.json",
        "--grant",
        "intern",
    ]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    let expected = r#"examples/policies/grants.json as seen by grant "intern": its entry /grants/intern over the top-level policy

identity          header x-agent-id
default           deny  /default
default_prompts   deny  /default
default_resources deny  /default
prompts           (none)
resources         (none)
methods           (none)
annotations       (none)
hide              deleteWorkspace  /hide
all_tools         all_calls: 1000 per hour, per grant  /all_tools/limits/0
list              hide_denied
mode              enforce
deny_as           error
failure_mode      closed
max_body_bytes    1048576
max_json_depth    64
grants            ci-runner, intern

TOOL                 ACTION  LISTED  RULE                                   REASON
asyncExecuteCode     deny    no      /grants/intern/tools/asyncExecuteCode  interns run code through a reviewer
checkCodeExecStatus  allow   yes     /tools/checkCodeExecStatus             -
  limit    checkcodeexecstatus_rate: 120 per minute, per session  /tools/checkCodeExecStatus/limits/0
deleteWorkspace      hidden  no      /hide                                  (answered as a tool the policy does not list)
(any other tool)     deny    no      /default                               tool is not listed in the policy and the default is deny

A name that differs from one above only in letter case, or that a pattern above matches only ignoring case, is refused (hidden if that tool is).
"#;
    assert_eq!(run.stdout, expected);

    let ci = mcp_policy(&[
        "explain",
        "examples/policies/grants.json",
        "--grant",
        "ci-runner",
    ])
    .stdout;
    assert!(
        ci.contains("default           allow  /grants/ci-runner/default\n"),
        "{ci}"
    );
    assert!(ci.contains("\ndeleteWorkspace      allow   yes     /grants/ci-runner/tools/deleteWorkspace  CI deletes only its own scratch workspaces\n"), "{ci}");
    assert!(
        ci.contains("  require  args.workspace regex \"^ci-scratch-[0-9]+$\""),
        "{ci}"
    );

    let stranger = mcp_policy(&[
        "explain",
        "examples/policies/grants.json",
        "--grant",
        "stranger",
    ])
    .stdout;
    assert!(
        stranger.starts_with(
            "examples/policies/grants.json as seen by grant \"stranger\", which has no entry: the top-level policy\n"
        ),
        "{stranger}"
    );
}

#[test]
fn explain_refuses_an_invalid_policy_as_check_does() {
    let dir = scratch(
        "explain-invalid",
        &[(
            "bad.json",
            r#"{"version":"1","default":"deny","list":"all"}"#,
        )],
    );
    let run = mcp_policy_in(&dir, &["explain", "bad.json"], "");
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (
            1,
            "",
            "bad.json:1:44: list: unknown variant `all`, expected `show_denied` or `hide_denied`\n"
        )
    );
}

// ---- eval ----

/// `label    value` lines of eval's output.
fn field<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == label).then(|| value.trim_start())
        })
        .collect()
}

fn audit_record(stdout: &str) -> Value {
    let line = field(stdout, "audit")[0];
    serde_json::from_str(line).unwrap()
}

#[test]
fn eval_forwards_an_allowed_call_and_counts_it() {
    // asyncExecuteCode has a limit: counters start empty, so the call passes and takes one unit.
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/allowed.json",
        "--grant",
        "alice",
    ]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(field(&run.stdout, "decision"), ["allowed"]);
    assert_eq!(field(&run.stdout, "rule"), ["(none)"]);
    assert_eq!(field(&run.stdout, "answer"), ["forwarded unchanged"]);
    assert!(field(&run.stdout, "body").is_empty());
    let counted = field(&run.stdout, "counted");
    assert!(
        counted.len() == 1 && counted[0].contains("asyncexecutecode_rate"),
        "{}",
        run.stdout
    );
    let audit = audit_record(&run.stdout);
    assert_eq!(audit["grant"], "alice");
    assert_eq!(audit["tool"], "asyncExecuteCode");
    assert_eq!(audit["decision"], "allowed");
    assert_eq!(
        audit["argument_keys"],
        serde_json::json!(["script", "timeout"])
    );
}

#[test]
fn eval_prints_the_exact_denial() {
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/denied.json",
    ]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(field(&run.stdout, "decision"), ["denied"]);
    assert_eq!(field(&run.stdout, "rule"), ["/tools/deleteWorkspace"]);
    assert_eq!(
        field(&run.stdout, "answer"),
        ["HTTP 200, content-type: application/json"]
    );
    assert_eq!(
        field(&run.stdout, "body"),
        [
            r#"{"error":{"code":-31001,"data":{"reason":"destroys a workspace; ask an operator","rule":"/tools/deleteWorkspace","tool":"deleteWorkspace"},"message":"Tool 'deleteWorkspace' denied by policy: destroys a workspace; ask an operator"},"id":2,"jsonrpc":"2.0"}"#
        ]
    );
    assert_eq!(audit_record(&run.stdout)["grant"], "anonymous");

    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/argument-denied.json",
    ]);
    assert_eq!(
        field(&run.stdout, "rule"),
        ["/tools/asyncExecuteCode/deny_if/args.script/regex"]
    );
    let body: Value = serde_json::from_str(field(&run.stdout, "body")[0]).unwrap();
    assert_eq!(body["error"]["code"], -31001);
    assert_eq!(body["id"], 3);
}

#[test]
fn eval_says_a_call_waits_for_approval_and_what_it_is_bound_to() {
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/needs-approval.json",
        "--grant",
        "alice",
    ]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(field(&run.stdout, "decision"), ["approval_pending"]);
    assert_eq!(
        field(&run.stdout, "rule"),
        ["/tools/asyncExecuteCode/approve_if/args.script/regex"]
    );
    let approval = field(&run.stdout, "approval")[0];
    assert!(approval.contains("cluster mcp_approval"), "{approval}");
    let digest = approval.rsplit(' ').next().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{approval}"
    );
    // The same call from another grant is another approval.
    let bob = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/needs-approval.json",
        "--grant",
        "bob",
    ]);
    assert_ne!(field(&bob.stdout, "approval"), [approval]);
    assert!(
        field(&run.stdout, "body").is_empty(),
        "nothing answered yet"
    );
}

#[test]
fn eval_answers_an_invalid_request_as_the_filter_does() {
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/batch.json",
    ]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(field(&run.stdout, "decision"), ["invalid"]);
    assert_eq!(
        field(&run.stdout, "answer"),
        ["HTTP 400, content-type: application/json"]
    );
    assert_eq!(
        field(&run.stdout, "body"),
        [
            r#"{"error":{"code":-32600,"message":"Invalid Request: JSON-RPC batches are not accepted; send one message per request"},"id":null,"jsonrpc":"2.0"}"#
        ]
    );

    // Not a tools/call: passed through, nothing decided or logged.
    let dir = scratch("eval-other", &[]);
    let run = mcp_policy_in(
        &dir,
        &[
            "eval",
            &format!("{}/policy.json", env!("CARGO_MANIFEST_DIR")),
            "--request",
            "-",
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
    );
    assert_eq!(
        run.stdout,
        "decision  (none: the gate passes this method through undecided)\n\
         audit     (none: the filter logs no line for it)\n\
         answer    forwarded unchanged\n"
    );
}

/// A 2026-07-28 request needs the headers its client sends with it: eval
/// sends them with --protocol-version, mirroring the body.
#[test]
fn eval_sends_a_revision_s_headers() {
    let dir = scratch(
        "eval-revision",
        &[(
            "call.json",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deleteWorkspace","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )],
    );
    let policy = format!("{}/policy.json", env!("CARGO_MANIFEST_DIR"));
    let without = mcp_policy_in(&dir, &["eval", &policy, "--request", "call.json"], "");
    assert!(
        without.stdout.starts_with("decision  invalid\n"),
        "{}",
        without.stdout
    );
    let with = mcp_policy_in(
        &dir,
        &[
            "eval",
            &policy,
            "--request",
            "call.json",
            "--protocol-version",
            "2026-07-28",
        ],
        "",
    );
    assert!(
        with.stdout
            .starts_with("decision  denied\nrule      /tools/deleteWorkspace\n"),
        "{}",
        with.stdout
    );
    // A task method's Mcp-Name is its taskId; a listing has none.
    let dir = scratch(
        "eval-revision-task",
        &[
            (
                "task.json",
                r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t-1","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            ),
            (
                "list.json",
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            ),
        ],
    );
    for (file, first) in [
        ("task.json", "decision  hidden\n"),
        (
            "list.json",
            "decision  (none: the gate passes this method through undecided)\n",
        ),
    ] {
        let run = mcp_policy_in(
            &dir,
            &[
                "eval",
                &policy,
                "--request",
                file,
                "--protocol-version",
                "2026-07-28",
            ],
            "",
        );
        assert!(run.stdout.starts_with(first), "{file}: {}", run.stdout);
    }
}

#[test]
fn eval_calls_repeated_until_the_limit_answers() {
    // A window of 10^9 s: no window boundary falls between the calls.
    let policy = r#"{"version":"1","default":"deny","tools":{"poll":{"limits":[{"counter":"polls","window":1000000000,"max":2,"scope":"session"}]}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":"p","method":"tools/call","params":{"name":"poll"}}"#;
    let dir = scratch(
        "eval-limit",
        &[("policy.json", policy), ("call.json", call)],
    );
    let run = mcp_policy_in(
        &dir,
        &[
            "eval",
            "policy.json",
            "--request",
            "call.json",
            "--calls",
            "3",
            "--session",
            "s-1",
        ],
        "",
    );
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert!(
        run.stdout
            .starts_with("call 1     allowed\ncall 2     allowed\ncall 3     rate_limited\n\n"),
        "{}",
        run.stdout
    );
    assert_eq!(field(&run.stdout, "rule"), ["/tools/poll/limits/0"]);
    assert_eq!(audit_record(&run.stdout)["session"], "s-1");
    let body: Value = serde_json::from_str(field(&run.stdout, "body")[0]).unwrap();
    assert_eq!(body["error"]["code"], -31002);
    assert_eq!(body["error"]["data"]["max"], 2);
    assert_eq!(body["error"]["data"]["counter"], "polls");
}

#[test]
fn eval_refuses_an_invalid_policy_and_a_missing_request() {
    let dir = scratch(
        "eval-invalid",
        &[(
            "bad.json",
            r#"{"version":"1","default":"deny","tools":{"x":{"action":"block"}}}"#,
        )],
    );
    let run = mcp_policy_in(&dir, &["eval", "bad.json", "--request", "nothing.json"], "");
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (
            1,
            "",
            "bad.json:1:62: tools.x.action: unknown variant `block`, expected one of `allow`, `deny`, `approve`\n"
        )
    );
    let run = mcp_policy(&[
        "eval",
        "policy.json",
        "--request",
        "examples/requests/nothing.json",
    ]);
    assert_eq!((run.status, run.stdout.as_str()), (1, ""));
    assert!(
        run.stderr
            .starts_with("mcp-policy: cannot read examples/requests/nothing.json: "),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_names_the_key_that_decides_each_example() {
    let dir = std::env::temp_dir().join(format!("mcp-policy-cli-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("files.json");
    std::fs::write(
        &path,
        r#"{"version":"1","default":"deny","default_prompts":"allow",
            "hide":["prompt:secret"],
            "prompts":{"review_*":{"action":"deny"}},
            "resources":{"file:///srv/public/*":{},"file:///srv/public/docs/*":{"action":"deny"}}}"#,
    )
    .unwrap();
    let path = path.to_string_lossy().to_string();
    let run = mcp_policy(&[
        "explain",
        &path,
        "--resource",
        "file:///srv/public/docs/a.md",
        "--resource",
        "file:///srv/public/x/../readme.md",
        "--resource",
        "file:///srv/public/..%2f.env",
        "--prompt",
        "review_code",
        "--prompt",
        "secret",
        "--prompt",
        "other",
        "--prompt",
        "Review_code",
        "--prompt",
        "SECRET",
        "--tool",
        "a b",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let examples = run.stdout.split("\nEXAMPLES\n").nth(1).unwrap();
    // As the gate decides them: a name only a case-blind match reaches is
    // refused, a case variant of a hidden one is hidden, a tool name the
    // gate cannot accept is refused before any rule.
    assert_eq!(
        examples,
        "tool a b: refused (-32602): tool name \"a b\" has ' '; tool names use A-Z a-z 0-9 _ - . /\n\
         prompt review_code: key \"review_*\" (/prompts/review_*) → deny\n\
         prompt secret: hidden by /hide\n\
         prompt other: no key; the default (/default_prompts) → allow\n\
         prompt Review_code: denied by /prompts/review_*: prompt name matches \"review_*\" only when letter case is ignored\n\
         prompt SECRET: hidden by /hide\n\
         resource file:///srv/public/docs/a.md: key \"file:///srv/public/docs/*\" (/resources/file:~1~1~1srv~1public~1docs~1*) → deny\n\
         resource file:///srv/public/x/../readme.md (normalised: file:///srv/public/readme.md): key \"file:///srv/public/*\" (/resources/file:~1~1~1srv~1public~1*) → allow\n\
         resource file:///srv/public/..%2f.env: refused (-32602): it has an encoded / or \\ in the path\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_shows_concurrency_caps_costs_per_argument_counters_and_roles() {
    let run = mcp_policy(&["explain", "examples/policies/quotas.json", "--grant", "bob"]);
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        r#"examples/policies/quotas.json as seen by grant "bob": its entry /grants/bob over role "engineer" (/roles/engineer) over the top-level policy"#
    );
    let shown = |text: &str| {
        assert!(
            lines.iter().any(|line| line.trim_end() == text),
            "no line {text:?} in\n{}",
            run.stdout
        )
    };
    shown("roles             engineer (grants alice, bob)");
    shown("  limit    exec_inflight: 1 in flight (lease 900 s), per grant                       /grants/bob/tools/asyncExecuteCode/limits/0");
    shown("  limit    rows_exported: 10000 units per day, each call costs args.rows, per grant  /tools/exportRows/limits/0");
    shown("  limit    spend_cents: 5000 units per day, 25 per call, per grant                   /tools/generateImage/limits/0");
    shown("  limit    merges: 10 per hour, per grant and args.repo                              /roles/engineer/tools/mergePullRequest/limits/0");
    shown("  limit    team_merges: 50 per hour, per role                                        /roles/engineer/tools/mergePullRequest/limits/1");

    // A role on its own, as a JWT's role claim would name it.
    let role = mcp_policy(&[
        "explain",
        "examples/policies/quotas.json",
        "--role",
        "engineer",
    ]);
    assert_eq!(role.status, 0);
    assert!(role.stdout.starts_with(
        r#"examples/policies/quotas.json as seen by role "engineer": its entry /roles/engineer over the top-level policy"#
    ));
    assert!(role
        .stdout
        .contains("exec_inflight: 3 in flight (lease 900 s), per grant"));
    let unknown = mcp_policy(&[
        "explain",
        "examples/policies/quotas.json",
        "--role",
        "admin",
    ]);
    assert_eq!(
        (unknown.status, unknown.stderr.as_str()),
        (1, "mcp-policy: the policy has no role \"admin\"\n")
    );
}

#[test]
fn eval_shows_what_a_call_costs_and_refuses_an_uncountable_one() {
    let dir = scratch(
        "eval-costs",
        &[
            (
                "export.json",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exportRows","arguments":{"rows":4000}}}"#,
            ),
            (
                "bad.json",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exportRows","arguments":{"rows":"all"}}}"#,
            ),
        ],
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/quotas.json");
    let policy = policy.to_str().unwrap();
    let run = mcp_policy_in(
        &dir,
        &[
            "eval",
            policy,
            "--request",
            "export.json",
            "--grant",
            "carol",
            "--calls",
            "3",
        ],
        "",
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("decision  rate_limited"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(r#""costs":[{"counter":"rows_exported","cost":4000}]"#),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(r#""cost":4000"#), "{}", run.stdout);
    let bad = mcp_policy_in(
        &dir,
        &["eval", policy, "--request", "bad.json", "--grant", "carol"],
        "",
    );
    assert!(bad.stdout.contains("decision  invalid"), "{}", bad.stdout);
    assert!(bad.stdout.contains(r#""code":-32602"#), "{}", bad.stdout);
}

// ---- check as a linter ----

const WARNED: &str = r#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},
  "tools":{"asyncExecuteCode":{},"deleteWorkspace":{"action":"deny","reason":"ask an operator"},"notATool":{"action":"deny","limits":[{"counter":"c","window":"minute","max":1,"scope":"grant"}]}},
  "hide":["deleteWorkspce"]}"#;

#[test]
fn check_warns_and_strict_makes_warnings_errors() {
    let dir = scratch("strict", &[("warned.json", WARNED)]);
    let run = mcp_policy_in(&dir, &["check", "warned.json"], "");
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("warned.json:3:11: warning: /hide/0: hides \"deleteWorkspce\", which no rule names; did you mean \"deleteWorkspace\"?"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning: /tools/notATool/limits: the rule denies every call"),
        "{}",
        run.stdout
    );
    let strict = mcp_policy_in(&dir, &["check", "--strict", "warned.json"], "");
    assert_eq!(strict.status, 1);
    assert_eq!(strict.stdout, run.stdout);
    assert_eq!(
        strict.stderr,
        "mcp-policy: 2 warnings, errors under --strict\n"
    );
    let clean = mcp_policy(&["check", "--strict", "policy.json"]);
    assert_eq!(clean.status, 0, "{}{}", clean.stdout, clean.stderr);
}

/// Every warning line of a run, as `POINTER: MESSAGE`.
fn warnings_of(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|line| line.split_once(" warning: "))
        .map(|(_, warning)| warning.to_string())
        .collect()
}

fn assert_server_warnings(run: &Run) {
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let warnings = warnings_of(run);
    for expected in [
        "/tools/notATool: the server does not offer a tool named \"notATool\"",
        "/hide/0: hides \"deleteWorkspce\", which the server does not offer: a typo?",
        "/default: the server's tool \"checkCodeExecStatus\" is allowed by this default: no rule names it",
    ] {
        assert!(warnings.iter().any(|w| w == expected), "{expected}\nnot in {warnings:#?}");
    }
    assert!(
        !warnings.iter().any(|w| w.contains("\"asyncExecuteCode\"")),
        "a rule names it: {warnings:#?}"
    );
}

#[test]
fn check_compares_the_policy_with_a_saved_tools_list() {
    let answer = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
        {"name":"asyncExecuteCode","inputSchema":{"type":"object"}},
        {"name":"checkCodeExecStatus","inputSchema":{"type":"object"}},
        {"name":"deleteWorkspace","inputSchema":{"type":"object"}}]}}"#;
    let dir = scratch("tools", &[("warned.json", WARNED), ("tools.json", answer)]);
    let run = mcp_policy_in(&dir, &["check", "--tools", "tools.json", "warned.json"], "");
    assert_server_warnings(&run);
    let bad = mcp_policy_in(
        &dir,
        &["check", "--tools", "warned.json", "warned.json"],
        "",
    );
    assert_eq!(bad.status, 1);
    assert!(
        bad.stderr.contains("no tools/list answer"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn check_asks_a_running_server_for_its_tools() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let server = tokio::spawn(support::demo_server::serve(
        listener,
        support::demo_server::Recorder::default(),
    ));
    let dir = scratch("server", &[("warned.json", WARNED)]);
    let dir_path = dir.to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        mcp_policy_in(&dir_path, &["check", "--server", &url, "warned.json"], "")
    })
    .await
    .unwrap();
    assert_server_warnings(&run);
    server.abort();
    // Nothing listens there any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let dir_path = dir.to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        mcp_policy_in(&dir_path, &["check", "--server", &gone, "warned.json"], "")
    })
    .await
    .unwrap();
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
}

#[test]
fn check_reads_policies_where_deployments_carry_them() {
    let files = [
        "envoy/envoy.yaml",
        "deploy/sidecar/mcp-server.yaml",
        "deploy/istio/mcp-policy.yaml",
        "deploy/istio/wasmplugin.yaml",
        "deploy/envoy-gateway/mcp-policy.yaml",
    ];
    let mut args = vec!["check"];
    args.extend(files);
    let run = mcp_policy(&args);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    for expected in [
        "envoy/envoy.yaml#wasm:mcp-policy: OK (",
        "deploy/sidecar/mcp-server.yaml#ConfigMap:mcp-sidecar/mcp-policy:policy.json: OK (",
        "deploy/istio/mcp-policy.yaml#EnvoyFilter:",
        "deploy/istio/wasmplugin.yaml#WasmPlugin:",
        "deploy/envoy-gateway/mcp-policy.yaml#EnvoyExtensionPolicy:",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|line| line.starts_with(expected) && line.contains(": OK (")),
            "{expected}\nnot in\n{}",
            run.stdout
        );
    }
    // An error inside YAML is named by the file and where in it.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p, namespace: n}\ndata:\n  policy.json: |\n    {\"version\": \"1\", \"default\": \"block\"}\n";
    let dir = scratch("yaml", &[("configmap.yaml", broken)]);
    let run = mcp_policy_in(&dir, &["check", "configmap.yaml"], "");
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stderr,
        "configmap.yaml#ConfigMap:n/p:policy.json:1:35: default: unknown variant `block`, expected `allow` or `deny`\n"
    );
}

// ---- render, apply ----

/// The Wasm filter's `config` of a listener.
fn wasm_config(listener: &Value) -> &Value {
    &listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        ["config"]
}

/// A module path with what YAML reads as syntax in a flow mapping (`,`,
/// ` #`, `: `, `}`) is written so the configuration says that path.
#[test]
fn render_and_apply_write_any_module_path_as_it_is() {
    const POLICY: &str = r#"{"version":"1","default":"deny"}"#;
    let dir = scratch("module-path", &[("policy.json", POLICY)]);
    for module in ["/a,b/x.wasm", "/a #b/x.wasm", "/a: b/x.wasm", "/a}b/x.wasm"] {
        let run = mcp_policy_in(
            &dir,
            &[
                "render",
                "envoy",
                "--policy",
                "policy.json",
                "--module",
                module,
            ],
            "",
        );
        assert_eq!(run.status, 0, "{}", run.stderr);
        let config: Value = serde_norway::from_str(&run.stdout).unwrap();
        let listener = &config["static_resources"]["listeners"][0];
        assert_eq!(
            wasm_config(listener)["vm_config"]["code"]["local"]["filename"],
            module
        );
        let run = mcp_policy_in(
            &dir,
            &["apply", "policy.json", "listener.yaml", "--module", module],
            "",
        );
        assert_eq!(run.status, 0, "{}", run.stderr);
        let written = std::fs::read_to_string(dir.join("listener.yaml")).unwrap();
        let lds: Value = serde_norway::from_str(&written).unwrap();
        assert_eq!(
            wasm_config(&lds["resources"][0])["vm_config"]["code"]["local"]["filename"],
            module
        );
        // A second apply keeps the module the file names.
        let run = mcp_policy_in(&dir, &["apply", "policy.json", "listener.yaml"], "");
        assert_eq!(run.status, 0, "{}", run.stderr);
        let again = std::fs::read_to_string(dir.join("listener.yaml")).unwrap();
        assert_eq!(again, written);
    }
}

// ---- eval as the filter ----

/// The filter takes an empty identity header as `anonymous`: so does eval.
#[test]
fn eval_takes_an_empty_grant_as_anonymous() {
    let policy = r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
        "grants":{"anonymous":{"tools":{"t":{}}}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    let dir = scratch(
        "eval-empty-grant",
        &[("policy.json", policy), ("call.json", call)],
    );
    let run = mcp_policy_in(
        &dir,
        &[
            "eval",
            "policy.json",
            "--request",
            "call.json",
            "--grant",
            "",
        ],
        "",
    );
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(
        field(&run.stdout, "decision"),
        ["allowed"],
        "{}",
        run.stdout
    );
    assert_eq!(audit_record(&run.stdout)["grant"], "anonymous");
}

/// A body over max_body_bytes: the filter answers 413 as the bytes arrive,
/// and so does eval.
#[test]
fn eval_answers_a_body_over_the_limit_413() {
    let policy = r#"{"version":"1","default":"allow","max_body_bytes":100}"#;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(100)
    );
    let dir = scratch(
        "eval-too-large",
        &[("policy.json", policy), ("call.json", &call)],
    );
    let run = mcp_policy_in(&dir, &["eval", "policy.json", "--request", "call.json"], "");
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert_eq!(
        field(&run.stdout, "decision"),
        ["invalid"],
        "{}",
        run.stdout
    );
    assert_eq!(
        field(&run.stdout, "answer"),
        ["HTTP 413, content-type: application/json"]
    );
    let body: Value = serde_json::from_str(field(&run.stdout, "body")[0]).unwrap();
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["error"]["data"]["max_body_bytes"], 100);
    // Within the limit: decided.
    let small = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    std::fs::write(dir.join("small.json"), small).unwrap();
    let run = mcp_policy_in(
        &dir,
        &["eval", "policy.json", "--request", "small.json"],
        "",
    );
    assert_eq!(
        field(&run.stdout, "decision"),
        ["allowed"],
        "{}",
        run.stdout
    );
}

/// --calls keeps each call's concurrency slots: N calls meet a cap as N
/// calls in flight at once do (eval --help and README say so).
#[test]
fn eval_calls_hold_their_concurrency_slots() {
    let policy = r#"{"version":"1","default":"deny","tools":{"run":{"limits":[{"counter":"runs","concurrent":2,"scope":"global"}]}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run"}}"#;
    let dir = scratch(
        "eval-concurrent",
        &[("policy.json", policy), ("call.json", call)],
    );
    let run = mcp_policy_in(
        &dir,
        &[
            "eval",
            "policy.json",
            "--request",
            "call.json",
            "--calls",
            "3",
        ],
        "",
    );
    assert_eq!((run.status, run.stderr.as_str()), (0, ""));
    assert!(
        run.stdout
            .starts_with("call 1     allowed\ncall 2     allowed\ncall 3     rate_limited\n\n"),
        "{}",
        run.stdout
    );
    let help = mcp_policy(&["eval", "--help"]);
    assert!(
        help.stdout.contains("concurrency slots are kept"),
        "{}",
        help.stdout
    );
}

/// A policy that is not UTF-8 text is refused, as the filter refuses it,
/// not read with the bad bytes replaced.
#[test]
fn check_refuses_a_policy_that_is_not_utf8() {
    let dir = scratch("not-utf8", &[]);
    std::fs::write(
        dir.0.join("p.json"),
        b"{\"version\":\"1\",\"default\":\"allow\",\"tools\":{\"a\xff\":{}}}",
    )
    .unwrap();
    let run = mcp_policy_in(&dir.0, &["check", "p.json"], "");
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("not UTF-8 text at line 1 column"),
        "{}",
        run.stderr
    );
    assert!(
        mcp_policy::policy::Policy::from_json(&std::fs::read(dir.0.join("p.json")).unwrap())
            .is_err()
    );
}
