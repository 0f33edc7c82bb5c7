//! The command line: `serve` (the default), `migrate`, and the operator bootstrap commands
//! under `admin`, which print JSON on stdout.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// token-service: personal access tokens, sessions and other credentials for a
/// Mattermost-compatible platform, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "token-service", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file. Settings: defaults < this file < TOKEN_SERVICE_* variables <
    /// flags.
    #[arg(long, global = true, env = "TOKEN_SERVICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL (sqlite://…, postgres://…, mysql://…). Default: SQLite in the data
    /// directory.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Data directory for the embedded SQLite database and the generated server key.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Apply, roll back or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Operator commands on the database: create users and tokens. Prints JSON on stdout and
    /// where the database and the server key are on stderr. They never create a database or
    /// a key, except `admin init`.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// Flags of `serve`.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// gRPC listen address, IP:PORT or HOST:PORT (default 127.0.0.1:50051).
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// REST listen address, IP:PORT or HOST:PORT (default 127.0.0.1:8065).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
}

/// `migrate` actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the most recent migrations.
    Down {
        /// How many migrations to roll back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied (JSON).
    Status,
}

/// `admin` actions.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create the database (and data_dir) and the server key where the configuration
    /// points, if they do not exist yet, and migrate: the bootstrap before the first
    /// `serve`. Prints {"database","server_key","created_database","created_server_key"}.
    Init,
    /// Create a user (or bot). Prints {"id","username","email","roles",...}.
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// E-mail address.
        #[arg(long, default_value = "")]
        email: String,
        /// Space-separated system roles, e.g. "system_user system_admin".
        #[arg(long, default_value = "system_user")]
        roles: String,
        /// Create a bot account.
        #[arg(long)]
        bot: bool,
        /// For a bot: the owning user's id or username.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Use this id instead of generating one (to mirror an existing platform user).
        #[arg(long)]
        id: Option<String>,
    },
    /// Add a user to a team, or set a member's team roles. Prints {"team_id","user_id","roles"}.
    AddTeamMember {
        /// The team id.
        #[arg(long, value_name = "TEAM_ID")]
        team: String,
        /// The user's id or username.
        #[arg(long, value_name = "NAME_OR_ID")]
        user: String,
        /// Space-separated team roles, e.g. "team_user team_admin".
        #[arg(long, default_value = "team_user")]
        roles: String,
    },
    /// Create a personal access token. Prints {"id","token","user_id","description",...};
    /// the token is shown only this once.
    CreateToken {
        /// The user's id or username.
        #[arg(long, value_name = "NAME_OR_ID")]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "created with token-service admin")]
        description: String,
        /// Expire the token after this many days (default: never, unless a maximum lifetime
        /// is configured).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// Bind the token to a client address block (IPv4 or IPv6 CIDR, or an address);
        /// repeat for several. From any other address it does not authenticate.
        #[arg(long = "bound-cidr", value_name = "CIDR")]
        bound_cidrs: Vec<String>,
        /// Narrow the token to a scope (read, tokens, introspect, commands); repeat for
        /// several. Default: unscoped (all the user may do).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List personal access tokens (all, or one user's). Prints a JSON array.
    ListTokens {
        /// Only this user's tokens (id or username).
        #[arg(long, value_name = "NAME_OR_ID")]
        user: Option<String>,
        /// Page number, from 0.
        #[arg(long, default_value_t = 0)]
        page: i32,
        /// Tokens per page (at most 200).
        #[arg(long, default_value_t = 60)]
        per_page: i32,
    },
    /// Show one personal access token (never its secret).
    GetToken {
        /// The token's id.
        token_id: String,
    },
    /// Search personal access tokens: an exact token id, user id or username (as Mattermost).
    SearchTokens {
        /// The search term.
        term: String,
    },
    /// Revoke (delete) a personal access token: it stops authenticating at once.
    RevokeToken {
        /// The token's id.
        token_id: String,
    },
    /// Rotate a personal access token: same id, a new secret (printed once); the old secret
    /// stops at once, or after --grace.
    RotateToken {
        /// The token's id.
        token_id: String,
        /// The new expiry, this many days from now (default: never, unless a maximum
        /// lifetime is configured).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// How long the old secret keeps working: 0, 30s, 15m, 1h (at most
        /// access_tokens.max_rotation_grace_period).
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::config::parse_span)]
        grace: u64,
    },
    /// Disable a personal access token (it can be enabled again).
    DisableToken {
        /// The token's id.
        token_id: String,
    },
    /// Enable a disabled personal access token.
    EnableToken {
        /// The token's id.
        token_id: String,
    },
    /// List a user's sessions. Prints a JSON array.
    ListSessions {
        /// The user's id or username.
        #[arg(long, value_name = "NAME_OR_ID")]
        user: String,
    },
    /// Revoke one session of a user, or with --all every session of the user.
    RevokeSessions {
        /// The user's id or username.
        #[arg(long, value_name = "NAME_OR_ID")]
        user: String,
        /// The session to revoke.
        #[arg(
            long,
            value_name = "SESSION_ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        session: Option<String>,
        /// Revoke every session of the user.
        #[arg(long)]
        all: bool,
    },
    /// Revoke every session of every user (personal access tokens stay valid).
    RevokeAllSessions {
        /// Confirm: everyone is logged out.
        #[arg(long, required = true)]
        yes: bool,
    },
    /// Deactivate a user: their sessions and tokens stop authenticating.
    DeactivateUser {
        /// The user's id or username.
        user: String,
    },
    /// Reactivate a deactivated user.
    ReactivateUser {
        /// The user's id or username.
        user: String,
    },
    /// Replace a user's system roles.
    SetRoles {
        /// The user's id or username.
        user: String,
        /// Space-separated system roles, e.g. "system_user system_admin".
        #[arg(long)]
        roles: String,
    },
    /// Introspect a token read from standard input (never from the command line, where
    /// other users could see it). Prints {"active",...}.
    Introspect,
    /// Print the audit trail (the lifecycle log) as JSON lines, one record per line, newest
    /// first, paging through every record that passes the filters.
    Audit(Box<AuditArgs>),
    /// Read a credential's value (a token) on standard input and print the HMAC that audit
    /// records hold for it: {"credential_hmac": ...} (for `admin audit --credential-hmac`).
    AuditHash,
    /// Revoke by value: read tokens on standard input (one per line, any number; never from
    /// the command line) and report them as leaked (ReportLeakedTokens, as the operator: no
    /// rate limit). Every live personal access token among them is revoked and every live
    /// login session ended. Prints {"received": N}; which were live is in the audit trail
    /// (`admin audit --action access_token.leaked --action session.leaked`).
    RevokeByValue {
        /// Where the tokens were found (an http(s) URL), recorded for their owners.
        #[arg(long)]
        url: Option<String>,
    },
    /// Identify a token read on standard input (never from the command line): its shape, what
    /// it is (the personal access token or session, the owner), its state, and the audit
    /// records it appears in (newest first, at most 200). Prints one JSON object.
    IdentifyToken,
    /// Verify the audit trail's hash chain from its start to its newest record. Prints
    /// {"status":"OK","verified":N,...}, or {"status":"broken","broken":{...}} and exits 1
    /// naming the first broken link (a missing, edited or deleted-at-the-end record).
    VerifyAudit,
    /// Manage webhook endpoints (see the README's "Webhooks"). Prints JSON.
    Webhooks {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// The personal access tokens that break maximum_personal_access_token_lifetime_days
    /// (active, of users who are not bots, expiring never or beyond the maximum).
    NonCompliantTokens {
        #[command(subcommand)]
        action: NonCompliantAction,
    },
}

/// `admin non-compliant-tokens ...`.
#[derive(Debug, Subcommand)]
pub enum NonCompliantAction {
    /// Count them (0 without a policy). Prints {"count": N}.
    Count,
    /// Revoke them, in batches. Prints {"count": N, "complete": true|false}; run it again
    /// while complete is false. Refused without a policy.
    Revoke {
        /// Confirm: the tokens stop working at once.
        #[arg(long, required = true)]
        yes: bool,
    },
}

/// `admin webhooks ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookAction {
    /// List every endpoint with its delivery state. Prints a JSON array.
    List,
    /// Show one endpoint.
    Get {
        /// The endpoint's id.
        webhook_id: String,
    },
    /// Register an endpoint. Prints {"webhook":{...},"secret":"whsec_..."}; the secret is
    /// shown only this once.
    Create {
        /// Where to POST (http:// or https://).
        #[arg(long)]
        url: String,
        /// What the endpoint is for.
        #[arg(long, default_value = "")]
        description: String,
        /// A lifecycle action to send (repeat for several; none: every action).
        #[arg(long = "action", value_name = "ACTION")]
        actions: Vec<String>,
        /// Only records about this user (id).
        #[arg(long, value_name = "USER_ID", default_value = "")]
        user_id: String,
    },
    /// Change an endpoint: only the options given change.
    Update {
        /// The endpoint's id.
        webhook_id: String,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Replace the filter's actions (repeat for several).
        #[arg(long = "action", value_name = "ACTION")]
        actions: Vec<String>,
        /// Replace the filter with one selecting every action (and any user unless
        /// --user-id).
        #[arg(long, conflicts_with = "actions")]
        all_actions: bool,
        /// With --action or --all-actions: only records about this user ("" for any).
        #[arg(long, value_name = "USER_ID")]
        user_id: Option<String>,
        /// Enable delivery (clears the failure state of a disabled endpoint).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop delivery.
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint.
    Delete {
        /// The endpoint's id.
        webhook_id: String,
    },
    /// Replace an endpoint's signing secret. Prints {"webhook":{...},"secret":"whsec_..."}.
    RotateSecret {
        /// The endpoint's id.
        webhook_id: String,
        /// How long the old secret keeps signing beside the new one: 0, 30m, 24h, 7d.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::config::parse_span)]
        grace: u64,
    },
    /// Send one signed webhook.test message now. Prints {"delivered","http_status","error",...}.
    Test {
        /// The endpoint's id.
        webhook_id: String,
    },
}

/// Filters of `admin audit` (all optional; they combine).
#[derive(Debug, Default, clap::Args)]
pub struct AuditArgs {
    /// Records made at or after this time: Unix milliseconds or RFC 3339
    /// (2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Records made before this time: Unix milliseconds or RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this action, e.g. access_token.revoked (repeat it, or separate with commas).
    #[arg(long = "action", value_name = "ACTION")]
    pub actions: Vec<String>,
    /// Only changes made by this actor: a user's id or username, or `operator`, `service`
    /// or `unknown`.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only records about this user (id or username).
    #[arg(long, value_name = "NAME_OR_ID")]
    pub user: Option<String>,
    /// Only records about this personal access token.
    #[arg(long, value_name = "TOKEN_ID")]
    pub token: Option<String>,
    /// Only records about this session.
    #[arg(long, value_name = "SESSION_ID")]
    pub session: Option<String>,
    /// Only records about this slash command.
    #[arg(long, value_name = "COMMAND_ID")]
    pub command: Option<String>,
    /// Only records of requests from this client address.
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Only records of this request (its X-Request-ID).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only records naming the credential whose value is read on standard input (never
    /// from the command line); the server computes its HMAC.
    #[arg(long)]
    pub credential_stdin: bool,
    /// Only records naming this credential HMAC (from `admin audit-hash`).
    #[arg(long, value_name = "HEX", conflicts_with = "credential_stdin")]
    pub credential_hmac: Option<String>,
    /// Print at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Oldest record first.
    #[arg(long)]
    pub oldest_first: bool,
}

impl Cli {
    /// The flag values that override configuration.
    pub fn overrides(&self) -> Overrides {
        let serve = match &self.command {
            Some(Command::Serve(args)) => Some(args),
            _ => None,
        };
        Overrides {
            grpc_addr: serve.and_then(|a| a.grpc_addr.clone()),
            http_addr: serve.and_then(|a| a.http_addr.clone()),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_flags_override() {
        let cli = Cli::parse_from(["token-service"]);
        assert!(cli.command.is_none());
        let cli = Cli::parse_from([
            "token-service",
            "serve",
            "--grpc-addr",
            "127.0.0.1:1",
            "--database-url",
            "sqlite::memory:",
        ]);
        let o = cli.overrides();
        assert_eq!(o.grpc_addr.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(o.database_url.as_deref(), Some("sqlite::memory:"));
    }
}
