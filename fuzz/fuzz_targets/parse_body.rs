//! Any bytes as a request body: the parser never panics, and whatever it
//! accepts as a tool call names a tool with an acceptable name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy::mcp::{self, Message};

fuzz_target!(|body: &[u8]| {
    match mcp::parse(body) {
        Ok(Message::ToolCall(call)) => {
            assert!(mcp::check_tool_name(&call.name).is_ok());
            assert!(call.id.is_string() || call.id.is_i64() || call.id.is_u64());
            // What the gate accepted is valid JSON, read one way.
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
        }
        Ok(Message::Other { .. }) => {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
        }
        Err(_) => {}
    }
});
