//! Slash commands: team memberships, CreateCommand, RegenCommandToken (Mattermost's
//! TestRegenToken and its 404 hiding), VerifyCommandToken, encryption at rest and key
//! rotation.

use sea_orm::{ConnectionTrait, Database, Statement};
use token_service::{
    config::Secret,
    domain::{caller::Caller, commands, ids::new_id},
    pb, server,
};

use crate::common::*;

fn command(team_id: &str, trigger: &str) -> pb::CreateCommandRequest {
    pb::CreateCommandRequest {
        team_id: team_id.to_owned(),
        trigger: trigger.to_owned(),
        url: "https://hooks.example.com/deploy".to_owned(),
        display_name: "Deploy".to_owned(),
        ..Default::default()
    }
}

/// A team with an admin member and an ordinary member.
struct Team {
    id: String,
    sysadmin: Actor,
    team_admin: Actor,
    team_user: Actor,
}

async fn team(srv: &TestServer) -> Team {
    let id = new_id();
    let sysadmin = srv.admin("root").await;
    let team_admin = srv.basic_user("carol").await;
    let team_user = srv.basic_user("dave").await;
    for (user, roles) in [
        (&team_admin, &["team_user", "team_admin"][..]),
        (&team_user, &["team_user"][..]),
    ] {
        srv.as_(&sysadmin)
            .add_team_member(&id, &user.id, roles)
            .await
            .unwrap();
    }
    Team {
        id,
        sysadmin,
        team_admin,
        team_user,
    }
}

#[tokio::test]
async fn team_memberships_are_managed_by_system_managers() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let team_id = new_id();
    assert_denied(
        srv.as_(&alice)
            .add_team_member(&team_id, &alice.id, &[])
            .await,
        "manage_system",
    );
    let added = srv
        .as_(&admin)
        .add_team_member(&team_id, &alice.id, &[])
        .await
        .unwrap()
        .team_member
        .unwrap();
    assert_eq!(added.roles, vec!["team_user"]);
    let promoted = srv
        .as_(&admin)
        .add_team_member(&team_id, &alice.id, &["team_user team_admin"])
        .await
        .unwrap()
        .team_member
        .unwrap();
    assert_eq!(promoted.roles, vec!["team_user", "team_admin"]);
    assert_invalid(
        srv.as_(&admin)
            .add_team_member(&team_id, &alice.id, &["system_admin"])
            .await,
        "roles",
        "model.user.is_valid.roles.app_error",
    );
    assert_invalid(
        srv.as_(&admin)
            .add_team_member("junk", &alice.id, &[])
            .await,
        "team_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        srv.as_(&admin)
            .add_team_member(&team_id, &new_id(), &[])
            .await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    srv.stop().await;
}

#[tokio::test]
async fn adding_an_existing_member_without_roles_keeps_the_membership_unchanged() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let carol = srv.basic_user("carol").await;
    let team_id = new_id();
    let promoted = srv
        .as_(&admin)
        .add_team_member(&team_id, &carol.id, &["team_user", "team_admin"])
        .await
        .unwrap()
        .team_member
        .unwrap();
    srv.advance(std::time::Duration::from_secs(60));
    // Mattermost's joinUserToTeam does nothing for a live member: no demotion to team_user.
    let again = srv
        .as_(&admin)
        .add_team_member(&team_id, &carol.id, &[])
        .await
        .unwrap()
        .team_member
        .unwrap();
    assert_eq!(again, promoted);
    assert_eq!(again.roles, vec!["team_user", "team_admin"]);
    // The team admin still holds the team permissions the roles grant.
    srv.as_(&carol)
        .create_command(command(&team_id, "still-admin"))
        .await
        .unwrap();
    // Explicit roles still replace them (our extension).
    let demoted = srv
        .as_(&admin)
        .add_team_member(&team_id, &carol.id, &["team_user"])
        .await
        .unwrap()
        .team_member
        .unwrap();
    assert_eq!(demoted.roles, vec!["team_user"]);
    srv.stop().await;
}

#[tokio::test]
async fn creating_a_command_needs_the_team_permission() {
    let srv = TestServer::start().await;
    let t = team(&srv).await;
    assert_denied(
        srv.as_(&t.team_user)
            .create_command(command(&t.id, "deploy"))
            .await,
        "manage_own_slash_commands",
    );
    let outsider_team = new_id();
    assert_denied(
        srv.as_(&t.team_admin)
            .create_command(command(&outsider_team, "deploy"))
            .await,
        "manage_own_slash_commands",
    );
    let created = srv
        .as_(&t.team_admin)
        .create_command(pb::CreateCommandRequest {
            trigger: "Deploy".into(),
            ..command(&t.id, "")
        })
        .await
        .unwrap();
    assert_eq!(created.token.len(), 26);
    let cmd = created.command.unwrap();
    assert_eq!(cmd.trigger, "deploy");
    assert_eq!(cmd.method, "P");
    assert_eq!(cmd.team_id, t.id);
    assert_eq!(cmd.creator_id, t.team_admin.id);
    assert!(cmd.delete_at.is_none());
    assert!(!format!("{cmd:?}").contains(&created.token));
    // A system admin needs no membership.
    srv.as_(&t.sysadmin)
        .create_command(command(&t.id, "status"))
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn command_fields_are_validated_and_triggers_are_unique_per_team() {
    let srv = TestServer::start().await;
    let t = team(&srv).await;
    srv.as_(&t.team_admin)
        .create_command(command(&t.id, "deploy"))
        .await
        .unwrap();
    let cases = [
        (
            command(&t.id, "deploy"),
            "trigger",
            "api.command.duplicate_trigger.app_error",
        ),
        (
            command(&t.id, "/deploy"),
            "trigger",
            "model.command.is_valid.trigger.app_error",
        ),
        (
            command(&t.id, "two words"),
            "trigger",
            "model.command.is_valid.trigger.app_error",
        ),
        (
            command(&t.id, ""),
            "trigger",
            "model.command.is_valid.trigger.app_error",
        ),
        (
            pb::CreateCommandRequest {
                method: "X".into(),
                ..command(&t.id, "a")
            },
            "method",
            "model.command.is_valid.method.app_error",
        ),
        (
            pb::CreateCommandRequest {
                url: "ftp://example.com".into(),
                ..command(&t.id, "b")
            },
            "url",
            "model.command.is_valid.url_http.app_error",
        ),
        (
            pb::CreateCommandRequest {
                display_name: "d".repeat(65),
                ..command(&t.id, "c")
            },
            "display_name",
            "model.command.is_valid.display_name.app_error",
        ),
        (
            pb::CreateCommandRequest {
                description: "d".repeat(129),
                ..command(&t.id, "e")
            },
            "description",
            "model.command.is_valid.description.app_error",
        ),
        (
            command("junk", "f"),
            "team_id",
            "api.context.invalid_body_param.app_error",
        ),
    ];
    for (request, field, id) in cases {
        assert_invalid(
            srv.as_(&t.team_admin).create_command(request).await,
            field,
            id,
        );
    }
    // Another team may reuse the trigger.
    let other = new_id();
    srv.as_(&t.sysadmin)
        .create_command(command(&other, "deploy"))
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn regenerating_a_token_follows_mattermost_and_hides_commands_from_the_unpermitted() {
    let srv = TestServer::start_with(|c| {
        c.roles
            .insert("own_commands".into(), vec!["manage_slash_commands".into()]);
    })
    .await;
    let t = team(&srv).await;
    let created = srv
        .as_(&t.team_admin)
        .create_command(command(&t.id, "deploy"))
        .await
        .unwrap();
    let id = created.command.unwrap().id;

    // The admin regenerates: 200, a different token.
    let by_admin = srv
        .as_(&t.sysadmin)
        .regen_command_token(&id)
        .await
        .unwrap()
        .token;
    assert_eq!(by_admin.len(), 26);
    assert_ne!(by_admin, created.token);

    // A plain team member: 404 hiding existence, exactly as for a missing command.
    assert_error(
        srv.as_(&t.team_user).regen_command_token(&id).await,
        tonic::Code::NotFound,
        "store.sql_command.save.get.app_error",
    );
    assert_error(
        srv.as_(&t.team_admin).regen_command_token(&new_id()).await,
        tonic::Code::NotFound,
        "store.sql_command.save.get.app_error",
    );
    assert_invalid(
        srv.as_(&t.team_admin).regen_command_token("123").await,
        "command_id",
        "api.context.invalid_url_param.app_error",
    );

    // A member who may manage only their own commands (legacy permission name) is refused
    // someone else's command with 403.
    let eve = srv.basic_user("eve").await;
    srv.as_(&t.sysadmin)
        .add_team_member(&t.id, &eve.id, &["team_user", "own_commands"])
        .await
        .unwrap();
    assert_denied(
        srv.as_(&eve).regen_command_token(&id).await,
        "manage_others_slash_commands",
    );
    let own = srv
        .as_(&eve)
        .create_command(command(&t.id, "eves"))
        .await
        .unwrap();
    srv.as_(&eve)
        .regen_command_token(&own.command.unwrap().id)
        .await
        .unwrap();

    // The creator regenerates their own.
    srv.as_(&t.team_admin)
        .regen_command_token(&id)
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn a_receiver_verifies_the_current_token_only() {
    let srv = TestServer::start().await;
    let t = team(&srv).await;
    let receiver = srv
        .user("receiver", &["system_user", "system_token_introspector"])
        .await;
    let created = srv
        .as_(&t.team_admin)
        .create_command(command(&t.id, "deploy"))
        .await
        .unwrap();
    let id = created.command.unwrap().id;
    let as_receiver = srv.as_(&receiver);
    let valid = async |command_id: &str, token: &str| {
        as_receiver
            .verify_command_token(command_id, token)
            .await
            .unwrap()
            .valid
    };

    assert!(valid(&id, &created.token).await);
    assert_denied(
        srv.as_(&t.team_admin)
            .verify_command_token(&id, &created.token)
            .await,
        "introspect_token",
    );
    let fresh = srv
        .as_(&t.team_admin)
        .regen_command_token(&id)
        .await
        .unwrap()
        .token;
    assert!(
        !valid(&id, &created.token).await,
        "old token invalid at once"
    );
    assert!(valid(&id, &fresh).await);
    assert!(!valid(&id, "x").await);
    assert!(!valid(&new_id(), &fresh).await);
    assert_invalid(
        srv.as_(&receiver).verify_command_token(&id, "").await,
        "token",
        "api.context.invalid_body_param.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn disabled_commands_are_unimplemented_to_create_and_hidden_to_regenerate() {
    let srv = TestServer::start_with(|c| c.enable_commands = false).await;
    let t = team(&srv).await;
    assert_error(
        srv.as_(&t.sysadmin)
            .create_command(command(&t.id, "deploy"))
            .await,
        tonic::Code::Unimplemented,
        "api.command.disabled.app_error",
    );
    assert_error(
        srv.as_(&t.sysadmin).regen_command_token(&new_id()).await,
        tonic::Code::NotFound,
        "store.sql_command.save.get.app_error",
    );
    srv.stop().await;
}

async fn stored_ciphertext(srv: &TestServer, command_id: &str) -> String {
    let db = Database::connect(srv.config.database_url.as_ref().unwrap().expose())
        .await
        .unwrap();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT token_ciphertext FROM commands WHERE id = $1",
        _ => "SELECT token_ciphertext FROM commands WHERE id = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [command_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let value: String = row.try_get("", "token_ciphertext").unwrap();
    db.close().await.ok();
    value
}

#[tokio::test]
async fn command_tokens_are_encrypted_at_rest() {
    let srv = TestServer::start().await;
    let t = team(&srv).await;
    let created = srv
        .as_(&t.team_admin)
        .create_command(command(&t.id, "deploy"))
        .await
        .unwrap();
    let id = created.command.unwrap().id;
    let stored = stored_ciphertext(&srv, &id).await;
    assert!(stored.starts_with("server."), "{stored}");
    assert!(!stored.contains(&created.token));
    if srv.backend() == "sqlite" {
        let mut haystack = Vec::new();
        for entry in std::fs::read_dir(srv.dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                haystack.extend(std::fs::read(path).unwrap());
            }
        }
        let contains = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        assert!(contains(id.as_bytes()), "the database files were read");
        assert!(
            !contains(created.token.as_bytes()),
            "plaintext command token on disk"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn rotating_the_command_key_keeps_old_tokens_valid_and_encrypts_new_ones_with_the_new_key() {
    let k1 = "11".repeat(32);
    let k2 = "22".repeat(32);
    let k1_for_server = k1.clone();
    let srv = TestServer::start_with(move |c| {
        c.command_tokens
            .keys
            .insert("k1".into(), Secret::new(k1_for_server));
        c.command_tokens.current_key = Some("k1".into());
    })
    .await;
    let t = team(&srv).await;
    let created = srv
        .as_(&t.team_admin)
        .create_command(command(&t.id, "deploy"))
        .await
        .unwrap();
    let id = created.command.unwrap().id;
    assert!(stored_ciphertext(&srv, &id).await.starts_with("k1."));

    // A replica restarted with k2 added and current.
    let mut rotated_config = srv.config.clone();
    rotated_config
        .command_tokens
        .keys
        .insert("k1".into(), Secret::new(k1));
    rotated_config
        .command_tokens
        .keys
        .insert("k2".into(), Secret::new(k2));
    rotated_config.command_tokens.current_key = Some("k2".into());
    let rotated = server::open_context(&rotated_config).await.unwrap();
    assert!(
        commands::verify_command_token(&rotated, &Caller::Local, &id, &created.token)
            .await
            .unwrap(),
        "rows encrypted with the old key still decrypt"
    );
    let fresh = commands::regen_command_token(&rotated, &Caller::Local, &id)
        .await
        .unwrap();
    assert!(stored_ciphertext(&srv, &id).await.starts_with("k2."));
    assert!(
        commands::verify_command_token(&rotated, &Caller::Local, &id, fresh.expose())
            .await
            .unwrap()
    );
    assert!(
        !commands::verify_command_token(&rotated, &Caller::Local, &id, &created.token)
            .await
            .unwrap()
    );
    rotated.store().clone().close().await;
    srv.stop().await;
}

/// A personal access token of `owner`'s with `scopes`, made by the operator.
async fn operator_scoped_pat(srv: &TestServer, owner: &Actor, scopes: &[&str]) -> String {
    use token_service::domain::access_tokens::{self, NewUserAccessToken, TokenRestrictions};
    access_tokens::create_user_access_token(
        &srv.ctx,
        &Caller::Local,
        NewUserAccessToken {
            user_id: owner.id.clone(),
            description: "scoped".into(),
            expires_at: None,
            restrictions: TokenRestrictions {
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
        },
    )
    .await
    .unwrap()
    .secret
    .expose()
    .to_owned()
}

#[tokio::test]
async fn a_team_roles_slash_command_permission_reaches_a_token_only_through_the_commands_scope() {
    let srv = TestServer::start().await;
    let t = team(&srv).await;
    let commands = operator_scoped_pat(&srv, &t.team_admin, &["commands"]).await;
    let read = operator_scoped_pat(&srv, &t.team_admin, &["read"]).await;
    srv.as_(&commands)
        .create_command(command(&t.id, "deploy"))
        .await
        .expect("the team role's permission, within the commands scope");
    assert_denied(
        srv.as_(&read).create_command(command(&t.id, "build")).await,
        "manage_own_slash_commands",
    );
    srv.stop().await;
}
