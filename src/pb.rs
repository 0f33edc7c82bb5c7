//! Generated protobuf and tonic code for `token_service.v1`, and the encoded descriptor set
//! (with `google.api.http` options intact) served by reflection.

#![allow(
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    reason = "generated code"
)]

/// `google.api` messages referenced by the descriptor (HTTP rules).
pub mod google_api {
    tonic::include_proto!("google.api");
}

tonic::include_proto!("token_service.v1");

/// The encoded `FileDescriptorSet` of `proto/`, including imports and source info.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/token_service_descriptor.bin"));

/// Envoy's external authorization API (`envoy.service.auth.v3`) and the packages it imports,
/// generated from the descriptor set vendored in `proto/vendor/` (Envoy's own protos, not a
/// reading of them).
pub mod envoy_ext_authz {
    include!(concat!(env!("OUT_DIR"), "/envoy_ext_authz.rs"));

    /// The encoded `FileDescriptorSet` of `envoy/service/auth/v3/external_auth.proto` and its
    /// imports, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_ext_authz_descriptor.bin"));
}
