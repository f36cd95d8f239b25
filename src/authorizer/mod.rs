//! The authorizer (docs/authorizer.md): keygate deciding for a proxy the platform
//! already runs. Its listener answers Envoy's ext_authz (gRPC, and HTTP like
//! forward auth), nginx's `auth_request`, Traefik's and Caddy's forward auth with
//! the data plane's own chain ([`crate::proxy::decide`]), recorded like a proxied
//! request ([`crate::proxy::record`]).

pub mod envoy; // Envoy ext_authz v3 and gRPC health messages, by field number
pub mod judge;
pub mod listener; // the listener: HTTP forward auth and Envoy ext_authz over gRPC on one port // the chain run on the original request, and what it tells the upstream and the client
pub mod original; // the original request, as the calling proxy describes it, believed only from trusted peers
