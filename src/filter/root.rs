//! The root context: reads and compiles the policy once per configuration.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::EnvoyMetrics;
use super::stream::PolicyStream;
use crate::policy::Policy;

#[derive(Default)]
pub struct PolicyRoot {
    policy: Option<Rc<Policy>>,
    metrics: Option<Rc<EnvoyMetrics>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = super::calls::buffer(BufferType::PluginConfiguration, usize::MAX);
        if config.is_empty() {
            log::error!(
                "mcp-policy: invalid policy: no plugin configuration (the policy document)"
            );
            return false;
        }
        match Policy::from_json(&config) {
            Ok(policy) => {
                log::info!(
                    "mcp-policy: policy loaded: {} tools, {} grants, default {:?}, mode {:?}",
                    policy.base().tool_names().count(),
                    policy.grant_names().count(),
                    policy.base().default,
                    policy.mode
                );
                let tools = policy.named_tools();
                self.metrics = Some(Rc::new(EnvoyMetrics::define(
                    tools.iter().map(String::as_str),
                )));
                self.policy = Some(Rc::new(policy));
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
        let policy = self.policy.clone()?;
        let metrics = self.metrics.clone()?;
        Some(Box::new(PolicyStream::new(policy, metrics)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
