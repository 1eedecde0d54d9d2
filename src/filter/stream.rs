//! One HTTP stream: each callback becomes an event for the exchange, each
//! effect a host call.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, EnvoyHost};
use crate::exchange::{self, Event, Exchange};

pub struct Stream {
    exchange: Exchange,
    metrics: Rc<Vec<Option<u32>>>,
}

impl Stream {
    pub fn new(exchange: Exchange, metrics: Rc<Vec<Option<u32>>>) -> Self {
        Stream { exchange, metrics }
    }

    fn run(&mut self, event: Event) -> Action {
        let step = self.exchange.on(event, &mut EnvoyHost);
        for effect in step.effects {
            host::apply(effect, &self.metrics);
        }
        match step.action {
            exchange::Action::Continue => Action::Continue,
            exchange::Action::Pause => Action::Pause,
        }
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.run(Event::ServiceAnswer {
            token,
            status,
            size,
        });
    }

    fn on_http_call_response(&mut self, token: u32, headers: usize, size: usize, _trailers: usize) {
        self.run(Event::HttpAnswer {
            token,
            headers,
            size,
        });
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.run(Event::RequestHeaders { end_of_stream })
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.run(Event::RequestBody {
            size,
            end_of_stream,
        })
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.run(Event::RequestTrailers)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.run(Event::ResponseHeaders { end_of_stream })
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.run(Event::ResponseBody {
            size,
            end_of_stream,
        })
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.run(Event::ResponseTrailers)
    }

    fn on_log(&mut self) {
        self.run(Event::StreamEnd);
    }
}
