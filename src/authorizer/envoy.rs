//! Envoy's external authorization protocol, v3 (`envoy.service.auth.v3`), and the
//! gRPC health protocol (`grpc.health.v1`): the messages keygate reads and writes,
//! with the field numbers of the official `.proto` files
//! (`api/envoy/service/auth/v3/external_auth.proto`, `attribute_context.proto`,
//! `api/envoy/config/core/v3/base.proto`, `address.proto`,
//! `api/envoy/type/v3/http_status.proto`, `google/rpc/status.proto`). Fields
//! keygate does not read are skipped on decoding, as protobuf allows.

use std::collections::HashMap;

/// The gRPC method Envoy calls.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The gRPC health check.
pub const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// The request's attributes.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// The downstream peer (the client, as Envoy sees it).
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// The request.
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    /// Per-route values set in Envoy's config (not sent upstream).
    #[prost(map = "string, string", tag = "10")]
    pub context_extensions: HashMap<String, String>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// Its address.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

/// `envoy.config.core.v3.Address` (only its `socket_address` case).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// An IP address and port.
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// The IP address.
    #[prost(string, tag = "2")]
    pub address: String,
    /// The port.
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The HTTP request.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// Its request id (`x-request-id`).
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its method.
    #[prost(string, tag = "2")]
    pub method: String,
    /// Its headers, names lowercase, repeated ones joined with `,` (a proto3
    /// `map<string, string>`, read as the repeated entries it is on the wire, each
    /// a slice of the message: no copy, no hashing).
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<HeaderEntry>,
    /// The request target: path and query, undecoded.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `Host` / `:authority`.
    #[prost(string, tag = "5")]
    pub host: String,
    /// `http` or `https`.
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// `HTTP/1.1`, `HTTP/2`, …
    #[prost(string, tag = "10")]
    pub protocol: String,
    /// The headers one by one, instead of `headers`, with `encode_raw_headers`.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// One entry of `HttpRequest.headers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderEntry {
    /// Name.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: bytes::Bytes,
    /// Value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: bytes::Bytes,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// The headers.
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// Name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value as text.
    #[prost(string, tag = "2")]
    pub value: String,
    /// Value as bytes (with `encode_raw_headers`).
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `HeaderAppendAction`.
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

/// `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`.
pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

/// `envoy.service.auth.v3.CheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `OK` allows the request; anything else denies it.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    /// What Envoy does with the request or answers the client.
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

/// `CheckResponse.http_response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    /// The client's answer, for a denied request.
    #[prost(message, tag = "2")]
    Denied(DeniedHttpResponse),
    /// The changes to the request, for an allowed one.
    #[prost(message, tag = "3")]
    Ok(OkHttpResponse),
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why, for a person.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// The status the client gets.
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// The headers the client gets.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// The body the client gets.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// The status code (`envoy.type.v3.StatusCode`: the HTTP codes).
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.service.auth.v3.OkHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// Headers set on the request before it goes upstream.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Headers removed from the request before it goes upstream.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// Headers added to the upstream's answer to the client.
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// Query parameters removed from the request before it goes upstream.
    #[prost(string, repeated, tag = "8")]
    pub query_parameters_to_remove: Vec<String>,
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service asked about (`""`: the server).
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 1 `SERVING`, 2 `NOT_SERVING`.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// A header for a `HeaderValueOption` list, replacing any of the same name.
pub fn header(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append_action: OVERWRITE_IF_EXISTS_OR_ADD,
    }
}
