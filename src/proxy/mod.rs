//! The data plane: [`gate::Gate`], Pingora's `ProxyHttp` implementation, the
//! compiled config it reads ([`runtime::Runtime`]), and the pieces it calls in
//! order (routes, canonical paths, CORS, forwarding, headers, gRPC refusals), and
//! the requests that outlive their decision. What wraps each client connection is
//! in [`crate::net`].

pub mod announce;
pub mod context;
pub mod cors;
pub mod decide;
pub mod forward;
pub mod front;
pub mod gate;
pub mod grpc;
pub mod limit_headers;
pub mod live_streams;
pub mod path;
pub mod record;
pub mod routes;
pub mod runtime;
pub mod shared;

pub use gate::Gate;
pub use shared::Shared;
