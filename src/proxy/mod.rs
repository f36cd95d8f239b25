//! The data plane: [`gate::Gate`], Pingora's `ProxyHttp` implementation, the
//! compiled config it reads ([`runtime::Runtime`]), and the pieces it calls in
//! order (routes, canonical paths, CORS, forwarding, headers, gRPC refusals, the
//! HTTP/2 stream budget).

pub mod cors;
pub mod cut;
pub mod decide;
pub mod forward;
pub mod gate;
pub mod grpc;
pub mod h2_streams;
pub mod head_deadline;
pub mod limit_headers;
pub mod live_streams;
pub mod path;
pub mod routes;
pub mod runtime;
pub mod shared;

pub use gate::Gate;
pub use shared::Shared;
