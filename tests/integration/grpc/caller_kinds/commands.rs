//! The team, slash command and WebRTC calls of the caller-kind table in [`super::sessions`]:
//! the team and command they act on, and the five calls, each with a request that succeeds
//! for a caller with the permission.

use token_service::{
    domain::{caller::Caller, commands, ids::new_id},
    pb,
};
use tonic::Code;

use super::{code, sessions::World};
use crate::common::*;

/// A new team whose team admin has created a command on it; returns (team id, command id).
pub(super) async fn team_with_command(srv: &TestServer) -> (String, String) {
    let team_id = new_id();
    let owner = srv.basic_user("owner").await;
    commands::add_team_member(
        &srv.ctx,
        &Caller::Local,
        &team_id,
        &owner.id,
        &["team_user team_admin".to_owned()],
    )
    .await
    .unwrap();
    let command_id = srv
        .as_(&owner)
        .create_command(pb::CreateCommandRequest {
            team_id: team_id.clone(),
            trigger: "deploy".into(),
            url: "https://hooks.example.com/deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .command
        .unwrap()
        .id;
    (team_id, command_id)
}

/// CreateCommand, RegenCommandToken, VerifyCommandToken, AddTeamMember and GetWebrtcToken
/// as `caller`, in that order: their status codes.
pub(super) async fn codes(w: &World, caller: &ActorClient) -> Vec<Code> {
    vec![
        code(
            caller
                .create_command(pb::CreateCommandRequest {
                    team_id: w.team_id.clone(),
                    trigger: format!("t{}", &new_id()[..8]),
                    url: "https://hooks.example.com/t".into(),
                    ..Default::default()
                })
                .await,
        ),
        code(caller.regen_command_token(&w.command_id).await),
        code(
            caller
                .verify_command_token(&w.command_id, "not-the-token")
                .await,
        ),
        code(caller.add_team_member(&w.team_id, &w.victim.id, &[]).await),
        code(caller.get_webrtc_token().await),
    ]
}
