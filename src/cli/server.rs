//! The tools an MCP server offers, for `mcp-policy check --tools FILE` (a
//! saved `tools/list` answer) and `--server URL` (asked over MCP's
//! Streamable HTTP: `initialize`, then `tools/list` page by page).
//!
//! The client is the least HTTP/1.1 that does this (plain `http://`, one
//! request per connection, `Connection: close`): a check asks a handful of
//! questions, and an HTTP stack with TLS would double what the command
//! takes to build. For an `https://` server, save its answer with curl and
//! pass `--tools`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};

/// The MCP revision the client speaks.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most pages of `tools/list` read before giving up.
const MAX_PAGES: usize = 100;

/// The tool names in a saved `tools/list` answer: a JSON-RPC response, its
/// `result`, a list of tools, several of those one after another (pages),
/// or the event stream a server answered with.
pub fn tools_from_answer(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(bytes);
    let values: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|err| format!("not JSON: {err}"))?
    } else {
        event_stream_messages(&text)
    };
    let mut tools = Vec::new();
    let mut any = false;
    for value in &values {
        if let Some(names) = tool_names(value) {
            any = true;
            tools.extend(names);
        }
    }
    if !any {
        return Err("no tools/list answer in it (expected a JSON-RPC response with result.tools, its result, or a list of tools)".to_string());
    }
    tools.sort();
    tools.dedup();
    Ok(tools)
}

/// The names of one answer, if it is one.
fn tool_names(value: &Value) -> Option<Vec<String>> {
    let list = match value {
        Value::Array(items) => items,
        Value::Object(map) => match (map.get("result"), map.get("tools")) {
            (Some(result), _) => result.get("tools")?.as_array()?,
            (None, Some(tools)) => tools.as_array()?,
            (None, None) => return None,
        },
        _ => return None,
    };
    Some(
        list.iter()
            .filter_map(|tool| match tool {
                Value::String(name) => Some(name.clone()),
                tool => tool["name"].as_str().map(str::to_string),
            })
            .collect(),
    )
}

/// The JSON messages of an event stream's `data:` fields.
fn event_stream_messages(text: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if let Ok(value) = serde_json::from_str(&data) {
                messages.push(value);
            }
            data.clear();
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    messages
}

/// The tool names a running MCP server lists, every page. `headers`: extra
/// request headers (`Authorization`, ...).
pub fn tools_from_server(url: &str, headers: &[(String, String)]) -> Result<Vec<String>, String> {
    let endpoint = Endpoint::parse(url)?;
    let mut session: Option<String> = None;
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcp-policy check", "version": env!("CARGO_PKG_VERSION")}}});
    let answer = endpoint.post(&initialize, &session, headers)?;
    session = answer.header("mcp-session-id").map(str::to_string);
    answer.result(1)?;
    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    endpoint.post(&initialized, &session, headers)?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let id = 2 + page;
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let request = json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":params});
        let result = endpoint.post(&request, &session, headers)?.result(id)?;
        tools.extend(tool_names(&json!({ "result": result })).unwrap_or_default());
        cursor = result["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            tools.sort();
            tools.dedup();
            return Ok(tools);
        }
    }
    Err(format!("tools/list had more than {MAX_PAGES} pages"))
}

/// Whether Envoy's admin interface at `admin` (`http://host:port`) shows
/// revision `revision` as live: `mcp_policy_info{revision="..."} 1`.
pub fn revision_is_live(admin: &str, revision: &str) -> Result<bool, String> {
    let endpoint = Endpoint::parse(admin)?;
    let answer = endpoint.get("/stats/prometheus")?;
    if answer.status != 200 {
        return Err(format!(
            "{admin}/stats/prometheus answered HTTP {}",
            answer.status
        ));
    }
    let wanted = format!("mcp_policy_info{{revision=\"{revision}\"}} 1");
    Ok(String::from_utf8_lossy(&answer.body)
        .lines()
        .any(|line| line.trim() == wanted))
}

/// `http://host:port/path`.
struct Endpoint {
    host: String,
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!(
                "{url}: only http:// URLs (for https, save the server's tools/list answer with curl and pass --tools)"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let host = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Endpoint {
            host,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    fn post(
        &self,
        message: &Value,
        session: &Option<String>,
        headers: &[(String, String)],
    ) -> Result<Answer, String> {
        let body = message.to_string();
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.path,
            self.authority,
            body.len()
        );
        if let Some(session) = session {
            request.push_str(&format!(
                "Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n"
            ));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        self.exchange(&request)
    }

    /// GET `path_and_query` on this host.
    fn get(&self, path_and_query: &str) -> Result<Answer, String> {
        self.exchange(&format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.authority
        ))
    }

    /// Sends one request on a new connection; the whole answer.
    fn exchange(&self, request: &str) -> Result<Answer, String> {
        let address = self
            .host
            .to_socket_addrs()
            .map_err(|err| format!("{}: {err}", self.host))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.host))?;
        let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
            .map_err(|err| format!("cannot connect to {}: {err}", self.host))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .map_err(|err| format!("{}: {err}", self.host))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|err| format!("{}: {err}", self.host))?;
        Answer::parse(&raw)
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> Result<Answer, String> {
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .ok_or("the server's answer is not HTTP")?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or("the server's answer has no status")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
        if chunked {
            body = dechunk(&body)?;
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(have, _)| have == name)
            .map(|(_, value)| value.as_str())
    }

    /// The `result` of the JSON-RPC response with this id.
    fn result(&self, id: usize) -> Result<Value, String> {
        if !(200..300).contains(&self.status) {
            return Err(format!(
                "the server answered HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        let text = String::from_utf8_lossy(&self.body);
        let messages = if self
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("text/event-stream"))
        {
            event_stream_messages(&text)
        } else {
            serde_json::from_str::<Value>(&text).into_iter().collect()
        };
        let response = messages
            .into_iter()
            .find(|message| message["id"] == json!(id))
            .ok_or_else(|| format!("no answer to request {id} from the server"))?;
        if let Some(error) = response.get("error") {
            return Err(format!(
                "the server answered request {id} with an error: {error}"
            ));
        }
        Ok(response["result"].clone())
    }
}

/// A chunked body, unchunked.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("a chunked answer is cut short")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("a chunk is cut short")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_answers_in_every_shape() {
        let response =
            br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"b"},{"name":"a"}]}}"#;
        assert_eq!(tools_from_answer(response).unwrap(), ["a", "b"]);
        assert_eq!(
            tools_from_answer(br#"{"tools":[{"name":"x"}]}"#).unwrap(),
            ["x"]
        );
        assert_eq!(
            tools_from_answer(br#"["y", {"name":"z"}]"#).unwrap(),
            ["y", "z"]
        );
        let pages = br#"{"result":{"tools":[{"name":"p1"}],"nextCursor":"c"}}
{"result":{"tools":[{"name":"p2"}]}}"#;
        assert_eq!(tools_from_answer(pages).unwrap(), ["p1", "p2"]);
        let stream = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"s\"}]}}\n\n";
        assert_eq!(tools_from_answer(stream).unwrap(), ["s"]);
        assert!(tools_from_answer(br#"{"jsonrpc":"2.0","id":1,"error":{}}"#).is_err());
    }

    #[test]
    fn http_answers_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}";
        let answer = Answer::parse(plain).unwrap();
        assert_eq!(answer.header("mcp-session-id"), Some("s1"));
        assert_eq!(answer.result(1).unwrap(), json!({"ok": true}));
        let event = " {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"a\":1}}\n\n";
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5\r\ndata:\r\n{:X}\r\n{event}\r\n0\r\n\r\n",
            event.len()
        );
        let answer = Answer::parse(chunked.as_bytes()).unwrap();
        assert_eq!(answer.result(3).unwrap(), json!({"a": 1}));
        assert!(Endpoint::parse("https://x/mcp").is_err());
        let endpoint = Endpoint::parse("http://127.0.0.1:8081/mcp").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.path.as_str()),
            ("127.0.0.1:8081", "/mcp")
        );
    }
}
