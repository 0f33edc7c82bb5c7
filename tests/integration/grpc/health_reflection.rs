//! Health (tied to the database) and server reflection (v1 and v1alpha).

use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::common::*;

const SERVICE: &str = "token_service.v1.TokenService";

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let srv = TestServer::start().await;
    let mut health = HealthClient::new(srv.channel().await);
    for service in ["", SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.v1.Nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_before_the_server_stops() {
    let srv = TestServer::start().await;
    let mut health = HealthClient::new(srv.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    srv.trigger_shutdown();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
        .await
        .expect("health update before the stream closes")
        .expect("an update, not the end of the stream")
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // Then the watch ends cleanly, so it does not hold the draining server open.
    let end = tokio::time::timeout(std::time::Duration::from_secs(2), watch.next())
        .await
        .expect("the watch ends well within the grace period");
    assert!(end.is_none(), "a clean end, not an error: {end:?}");
    let stopping = std::time::Instant::now();
    srv.stop().await;
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(2),
        "stopped without waiting out the grace period"
    );
}

#[tokio::test]
async fn reflection_v1_lists_every_service_and_serves_descriptors_with_http_rules() {
    use v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let srv = TestServer::start().await;
    let mut client = ServerReflectionClient::new(srv.channel().await);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(format!(
                "{SERVICE}.CreateUserAccessToken"
            ))),
        ]))
        .await
        .unwrap()
        .into_inner();

    let listed = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("unexpected {listed:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        SERVICE,
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let file = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = file.message_response else {
        panic!("unexpected {file:?}");
    };
    let all: Vec<u8> = files.file_descriptor_proto.concat();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("/api/v4/users/{user_id}/tokens"),
        "http rule kept"
    );
    assert!(text.contains("IntrospectToken"));
    srv.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_token_service() {
    use v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let srv = TestServer::start().await;
    let mut client = ServerReflectionClient::new(srv.channel().await);
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let listed = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("unexpected {listed:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE), "{names:?}");
    assert!(
        names.contains(&"grpc.reflection.v1.ServerReflection"),
        "{names:?}"
    );
    srv.stop().await;
}
