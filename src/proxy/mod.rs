//! The data plane: [`gate::Gate`], Pingora's `ProxyHttp` implementation, and the
//! pieces it calls in order (routes, path normalisation, forwarding, headers).

pub mod cors;
pub mod decide;
pub mod forward;
pub mod gate;
pub mod head_deadline;
pub mod limit_headers;
pub mod path;
pub mod routes;

pub use gate::{Gate, Shared};
