//! The root context: one plugin configuration (the policy) per VM.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::host;
use super::stream::Stream;
use crate::exchange::{Exchange, Plugin};

#[derive(Default)]
pub struct PolicyRoot {
    plugin: Option<Rc<Plugin>>,
    /// Envoy's ids of the plugin's counters, by catalog index.
    metrics: Rc<Vec<Option<u32>>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = host::buffer(BufferType::PluginConfiguration, usize::MAX);
        match Plugin::configure(&config) {
            Ok(plugin) => {
                log::info!("{}", plugin.loaded_line());
                let ids = plugin.metrics.names().iter().map(|name| {
                    hostcalls::define_metric(MetricType::Counter, name)
                        .map_err(|status| {
                            log::warn!("mcp-policy: cannot define {name}: {status:?}")
                        })
                        .ok()
                });
                self.metrics = Rc::new(ids.collect());
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
