//! The gRPC transport: `TokenService`, health and reflection (v1 and v1alpha).

mod convert;
mod status;
mod token_service;

pub use status::ERROR_DOMAIN;

use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use crate::domain::Context;
use crate::pb::{self, token_service_server::TokenServiceServer};

/// The fully qualified service name, as health reports it.
pub const SERVICE_NAME: &str = "token_service.v1.TokenService";

/// Largest request message accepted (bytes). Requests are small; this bounds hostile input.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Builds the routes: TokenService, health and reflection. `shutdown` turns true when a
/// graceful shutdown begins.
pub(crate) fn routes(
    ctx: Context,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Routes, tonic_reflection::server::Error> {
    let api = TokenServiceServer::new(token_service::TokenServiceApi::new(ctx, shutdown))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(Routes::new(api)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

/// At shutdown, after health has turned NOT_SERVING: forgets the statuses, which ends every
/// open health Watch stream once it has delivered NOT_SERVING, so watchers do not hold the
/// draining server open. New calls cannot arrive: the listener is closed and connections are
/// told to go away.
pub(crate) async fn end_health_watches(reporter: &mut HealthReporter) {
    reporter.clear_service_status("").await;
    reporter.clear_service_status(SERVICE_NAME).await;
}

/// Sets the health of the overall server ("") and of TokenService together.
pub(crate) async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// The `/package.Service/Method` path of every gRPC method this server serves (TokenService,
/// health, reflection v1 and v1alpha), read from their descriptors.
pub(crate) fn served_method_paths() -> std::collections::HashSet<String> {
    use prost::Message as _;
    let sets = [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut paths = std::collections::HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
}
