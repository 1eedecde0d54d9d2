//! An event stream cut into random pieces: the filtered output does not
//! depend on where the cuts fall, and a stream without the answer passes
//! byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy::listing::SseFilter;
use serde_json::json;

fn keep(name: &str) -> bool {
    name != "hidden"
}

fuzz_target!(|data: &[u8]| {
    // First byte: the piece size; the rest: the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(size.max(1));
    let whole = SseFilter::new(json!(1)).push(stream, true, &keep);
    let mut filter = SseFilter::new(json!(1));
    let mut pieces = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        pieces.extend(filter.push(chunk, index + 1 == chunks.len(), &keep));
    }
    if stream.is_empty() {
        pieces.extend(filter.push(b"", true, &keep));
    }
    assert_eq!(pieces, whole, "output depends on how the stream was split");
    if !String::from_utf8_lossy(stream).contains("\"id\"") {
        assert_eq!(
            whole, stream,
            "a stream without an answer must pass unchanged"
        );
    }
});
