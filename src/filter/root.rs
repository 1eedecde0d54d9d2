//! The root context: one plugin configuration (the policy) per VM.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::host;
use super::stream::Stream;
use crate::exchange::{Exchange, Plugin};
use crate::metrics::{Gauges, MetricKind, Registered};

#[derive(Default)]
pub struct PolicyRoot {
    plugin: Option<Rc<Plugin>>,
    metrics: Registered,
}

/// Envoy's metrics.
struct EnvoyMetrics;

impl Gauges for EnvoyMetrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name)
            .map_err(|status| log::warn!("mcp-policy: cannot define {name}: {status:?}"))
            .ok()
    }
    fn add(&mut self, id: u32, delta: i64) -> bool {
        hostcalls::increment_metric(id, delta).is_ok()
    }
    fn get(&mut self, id: u32) -> Option<u64> {
        hostcalls::get_metric(id).ok()
    }
    fn set(&mut self, id: u32, value: u64) -> bool {
        hostcalls::record_metric(id, value).is_ok()
    }
}

impl Context for PolicyRoot {
    fn on_done(&mut self) -> bool {
        self.metrics.unregister(&mut EnvoyMetrics);
        true
    }
}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = host::buffer(BufferType::PluginConfiguration, usize::MAX);
        match Plugin::configure(&config) {
            Ok(plugin) => {
                let revision = plugin.metrics.revision();
                log::info!("{} (revision {revision})", plugin.loaded_line());
                self.metrics.register(&plugin.metrics, &mut EnvoyMetrics);
                self.plugin = Some(Rc::new(plugin));
                true
            }
            Err(err) => {
                // Envoy refuses the configuration; this line says why.
                log::error!("mcp-policy: invalid policy: {err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let exchange = Exchange::new(Rc::clone(self.plugin.as_ref()?));
        Some(Box::new(Stream::new(
            exchange,
            Rc::clone(&self.metrics.counters),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
