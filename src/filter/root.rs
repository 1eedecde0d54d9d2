//! The root context: one plugin configuration (the policy) per VM.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::host;
use super::stream::Stream;
use crate::exchange::{Exchange, Plugin};
use crate::metrics::{count_instance, Gauges};

#[derive(Default)]
pub struct PolicyRoot {
    plugin: Option<Rc<Plugin>>,
    /// Envoy's ids of the plugin's counters, by catalog index.
    metrics: Rc<Vec<Option<u32>>>,
    /// Envoy's ids of the revision's gauges: instances, info.
    revision: Option<(u32, u32)>,
}

/// Defines one metric the catalog names; `None` (logged) if Envoy refuses.
fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name)
        .map_err(|status| log::warn!("mcp-policy: cannot define {name}: {status:?}"))
        .ok()
}

/// The revision's gauges, through Envoy.
struct EnvoyGauges;

impl Gauges for EnvoyGauges {
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
        if let Some(revision) = self.revision.take() {
            count_instance(&mut EnvoyGauges, revision, -1);
        }
        true
    }
}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = host::buffer(BufferType::PluginConfiguration, usize::MAX);
        match Plugin::configure(&config) {
            Ok(plugin) => {
                let catalog = &plugin.metrics;
                log::info!("{} (revision {})", plugin.loaded_line(), catalog.revision());
                let ids = catalog
                    .names()
                    .iter()
                    .map(|name| define(MetricType::Counter, name))
                    .collect();
                self.metrics = Rc::new(ids);
                if let Some(previous) = self.revision.take() {
                    count_instance(&mut EnvoyGauges, previous, -1);
                }
                self.revision = define(MetricType::Gauge, &catalog.instances_name())
                    .zip(define(MetricType::Gauge, &catalog.info_name()));
                if let Some(revision) = self.revision {
                    count_instance(&mut EnvoyGauges, revision, 1);
                }
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
        Some(Box::new(Stream::new(exchange, Rc::clone(&self.metrics))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
