//! Host calls, without the SDK's panics where it can be avoided: values are
//! read as bytes (the SDK's string accessors `unwrap` UTF-8 decoding), and a
//! failed call is logged, not unwrapped. The exchange only asks for what
//! Envoy permits at that point of the stream (SECURITY.md lists each call).

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

use crate::exchange::{Effect, Headers, Host, HttpCall, Level, ServiceCall};
use crate::host::{host_cas, Cas, SharedStore, StoreError};
use crate::response::CONTENT_TYPE;

/// The stream's view of Envoy.
pub struct EnvoyHost;

impl Host for EnvoyHost {
    fn now(&self) -> Duration {
        hostcalls::get_current_time()
            .ok()
            .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    fn store(&self) -> &dyn SharedStore {
        &EnvoySharedData
    }

    fn request_headers(&mut self) -> Headers {
        // One host call for every header (each single read crosses the VM).
        Headers(warn(hostcalls::get_map_bytes(MapType::HttpRequestHeaders)).unwrap_or_default())
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpRequestBody, size)
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        // Every value: a single-value read gives Envoy's first only.
        let headers = warn(hostcalls::get_map_bytes(MapType::HttpResponseHeaders))?;
        let pairs = headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()));
        crate::exchange::joined_values(pairs, name)
    }

    fn response_body(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpResponseBody, size)
    }

    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        warn(hostcalls::get_property(path.to_vec())).flatten()
    }

    fn dispatch_grpc(&mut self, call: &ServiceCall) -> Result<u32, String> {
        hostcalls::dispatch_grpc_call(
            &call.cluster,
            call.service,
            call.method,
            Vec::new(),
            Some(&call.message),
            call.timeout,
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn service_answer(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::GrpcReceiveBuffer, size)
    }

    fn dispatch_http(&mut self, call: &HttpCall) -> Result<u32, String> {
        let headers = vec![
            (":method", "POST"),
            (":path", call.path),
            (":authority", call.cluster.as_str()),
            ("content-type", "application/json"),
        ];
        hostcalls::dispatch_http_call(
            &call.cluster,
            headers,
            Some(&call.body),
            Vec::new(),
            call.timeout,
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn http_answer_header(&mut self, name: &str) -> Option<Vec<u8>> {
        warn(hostcalls::get_map_value_bytes(
            MapType::HttpCallResponseHeaders,
            name,
        ))
        .flatten()
    }

    fn http_answer_body(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpCallResponseBody, size)
    }

    /// From the standard library's random hash keys: on wasm32-wasip1 they
    /// come from WASI's `random_get`, which Envoy serves from BoringSSL's
    /// `RAND_bytes`; each `RandomState` takes fresh keys (the first random,
    /// the rest one apart), and SipHash under distinct keys gives unrelated
    /// values.
    fn random(&mut self) -> u128 {
        use std::hash::BuildHasher;
        let half = || std::collections::hash_map::RandomState::new().hash_one(0u8);
        (u128::from(half()) << 64) | u128::from(half())
    }

    fn log_level(&mut self) -> Level {
        match hostcalls::get_log_level() {
            Ok(LogLevel::Trace | LogLevel::Debug) => Level::Debug,
            Ok(LogLevel::Info) | Err(_) => Level::Info,
            Ok(_) => Level::Warn,
        }
    }
}

/// Envoy's shared data: one map per `vm_id`, shared by every worker.
pub struct EnvoySharedData;

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            // An empty value: Envoy hands back no bytes, only its version.
            // Reading it as absent would make every later compare-and-swap
            // on the key fail (it expects no version).
            Ok((None, Some(cas))) => Ok(Some((Vec::new(), cas))),
            Ok((None, None)) => Ok(None),
            Ok((Some(_), None)) => Err(StoreError::Unavailable(format!("{key:?} has no version"))),
            Err(status) => Err(StoreError::Unavailable(format!(
                "get_shared_data: {status:?}"
            ))),
        }
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(host_cas(expected))) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Unavailable(format!(
                "set_shared_data: {status:?}"
            ))),
        }
    }
}

/// A call's value, or `None` with the failure logged.
fn warn<T>(result: Result<T, Status>) -> Option<T> {
    result
        .map_err(|status| log::warn!("mcp-policy: host call failed: {status:?}"))
        .ok()
}

/// Up to `size` bytes of a buffer; empty when it cannot be read.
pub fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    warn(hostcalls::get_buffer(kind, 0, size))
        .flatten()
        .unwrap_or_default()
}

/// Carries out one effect of the exchange.
pub fn apply(effect: Effect, metrics: &[Option<u32>]) {
    match effect {
        Effect::RemoveRequestHeader(name) => {
            warn(hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                name,
                None,
            ));
        }
        Effect::RemoveResponseHeader(name) => {
            warn(hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                name,
                None,
            ));
        }
        Effect::ReplaceRequestBody { size, body } => {
            warn(hostcalls::set_buffer(
                BufferType::HttpRequestBody,
                0,
                size,
                &body,
            ));
        }
        Effect::ReplaceResponseBody { size, body } => {
            warn(hostcalls::set_buffer(
                BufferType::HttpResponseBody,
                0,
                size,
                &body,
            ));
        }
        Effect::Reply { status, body } => {
            let headers = vec![("content-type", CONTENT_TYPE)];
            warn(hostcalls::send_http_response(
                u32::from(status),
                headers,
                Some(&body),
            ));
        }
        Effect::ResumeRequest => {
            warn(hostcalls::resume_http_request());
        }
        Effect::FilterState { name, value } => {
            warn(hostcalls::set_property(vec![name], Some(value.as_bytes())));
        }
        Effect::Count(index) => {
            if let Some(Some(id)) = metrics.get(index) {
                warn(hostcalls::increment_metric(*id, 1));
            }
        }
        Effect::Log {
            level: Level::Debug,
            line,
        } => log::debug!("{line}"),
        Effect::Log {
            level: Level::Info,
            line,
        } => log::info!("{line}"),
        Effect::Log {
            level: Level::Warn,
            line,
        } => log::warn!("{line}"),
    }
}
