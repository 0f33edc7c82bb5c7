//! Last use of personal access tokens: the last-use flush's batched writes, and the recent
//! addresses shown with listed tokens.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use super::Store;
use super::entities::{access_token_addresses as addresses, user_access_tokens as tokens};
use crate::domain::{
    error::Result,
    ids::UserId,
    lifecycle::NewRecord,
    model::{RecentAddress, UnixMillis, UserAccessToken},
    token_usage::{MAX_RECENT_ADDRESSES, TokenUse},
};

impl Store {
    /// Writes a batch of collected token uses in one transaction: per token one UPDATE
    /// (`last_used_at` to the later of the stored and the new time, the user agent with it),
    /// then the addresses of the tokens that still exist upserted in one statement (each
    /// address's time only moves forward), then each token's addresses beyond the 5 most
    /// recent deleted. Tokens revoked meanwhile are skipped.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name(), tokens = uses.len()))]
    ///
    /// An address a token that already has addresses has not been seen from (among its
    /// recent ones) gets the record `new_address` makes for it (owner, use, address, time),
    /// appended in the same transaction. A token's first addresses get none.
    pub async fn record_token_uses(
        &self,
        uses: &[TokenUse],
        now: UnixMillis,
        new_address: impl Fn(&UserId, &TokenUse, &str, UnixMillis) -> NewRecord,
    ) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let backend = self.db.get_database_backend();
        let txn = self.begin_with_write().await?;
        for used in uses {
            // Every row named is written (a no-op where the stored use is newer), so it stays
            // locked until commit and a concurrent revoke cannot remove it under the address
            // inserts below. The agent is set first: MySQL evaluates SET in order.
            let newer = Expr::col(tokens::Column::LastUsedAt).lt(used.last_used_at);
            tokens::Entity::update_many()
                .col_expr(
                    tokens::Column::LastUserAgent,
                    Expr::case(newer.clone(), used.user_agent.as_str())
                        .finally(Expr::col(tokens::Column::LastUserAgent))
                        .into(),
                )
                .col_expr(
                    tokens::Column::LastUsedAt,
                    Expr::case(newer, used.last_used_at)
                        .finally(Expr::col(tokens::Column::LastUsedAt))
                        .into(),
                )
                .filter(tokens::Column::Id.eq(used.token_id.as_str()))
                .exec(&txn)
                .await?;
        }
        let ids: Vec<&str> = uses.iter().map(|u| u.token_id.as_str()).collect();
        // The tokens that still exist, with their owners.
        let existing: HashMap<String, String> = tokens::Entity::find()
            .select_only()
            .columns([tokens::Column::Id, tokens::Column::UserId])
            .filter(tokens::Column::Id.is_in(ids.iter().copied()))
            .into_tuple::<(String, String)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        // The addresses stored before this batch: an address not among them is new.
        let known: HashSet<(String, String)> = addresses::Entity::find()
            .select_only()
            .columns([addresses::Column::TokenId, addresses::Column::Ip])
            .filter(addresses::Column::TokenId.is_in(existing.keys().map(String::as_str)))
            .into_tuple::<(String, String)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let has_addresses: HashSet<&str> = known.iter().map(|(token, _)| token.as_str()).collect();
        let mut records = Vec::new();
        for used in uses {
            let token = used.token_id.as_str();
            let Some(owner) = existing.get(token) else {
                continue;
            };
            if !has_addresses.contains(token) {
                continue;
            }
            for (ip, at) in &used.addresses {
                if !known.contains(&(token.to_owned(), ip.clone())) {
                    records.push(new_address(
                        &UserId::from_trusted(owner.clone()),
                        used,
                        ip,
                        *at,
                    ));
                }
            }
        }
        let rows: Vec<addresses::ActiveModel> = uses
            .iter()
            .filter(|u| existing.contains_key(u.token_id.as_str()))
            .flat_map(|u| {
                u.addresses.iter().map(|(ip, at)| addresses::ActiveModel {
                    token_id: sea_orm::Set(u.token_id.to_string()),
                    ip: sea_orm::Set(ip.clone()),
                    last_seen_at: sea_orm::Set(*at),
                })
            })
            .collect();
        if !rows.is_empty() {
            let later = match backend {
                DbBackend::MySql => Expr::cust("GREATEST(last_seen_at, VALUES(last_seen_at))"),
                DbBackend::Postgres => Expr::cust(
                    "GREATEST(access_token_addresses.last_seen_at, excluded.last_seen_at)",
                ),
                _ => Expr::cust("MAX(access_token_addresses.last_seen_at, excluded.last_seen_at)"),
            };
            addresses::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([addresses::Column::TokenId, addresses::Column::Ip])
                        .value(addresses::Column::LastSeenAt, later)
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            // Keep the 5 most recent addresses of each token.
            let stored: Vec<(String, String, i64)> = addresses::Entity::find()
                .select_only()
                .columns([
                    addresses::Column::TokenId,
                    addresses::Column::Ip,
                    addresses::Column::LastSeenAt,
                ])
                .filter(addresses::Column::TokenId.is_in(existing.keys().map(String::as_str)))
                .order_by_asc(addresses::Column::TokenId)
                .order_by_desc(addresses::Column::LastSeenAt)
                .order_by_asc(addresses::Column::Ip)
                .into_tuple()
                .all(&txn)
                .await?;
            let mut seen: HashMap<&str, usize> = HashMap::new();
            let surplus: Vec<(&str, &str)> = stored
                .iter()
                .filter(|(token, ..)| {
                    let n = seen.entry(token.as_str()).or_default();
                    *n += 1;
                    *n > MAX_RECENT_ADDRESSES
                })
                .map(|(token, ip, _)| (token.as_str(), ip.as_str()))
                .collect();
            if !surplus.is_empty() {
                let mut any = sea_orm::Condition::any();
                for (token, ip) in surplus {
                    any = any.add(
                        sea_orm::Condition::all()
                            .add(addresses::Column::TokenId.eq(token))
                            .add(addresses::Column::Ip.eq(ip)),
                    );
                }
                addresses::Entity::delete_many()
                    .filter(any)
                    .exec(&txn)
                    .await?;
            }
        }
        let appended = self.append_to_log(&txn, &records, now).await?;
        self.commit_logged(txn, appended).await?;
        Ok(())
    }

    /// Fills each token's recent addresses (newest first) from the database.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn fill_recent_addresses(&self, list: &mut [UserAccessToken]) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let mut by_token: HashMap<String, Vec<RecentAddress>> = HashMap::new();
        // Bounded statements: a page holds at most 200 tokens, a search may hold more.
        for chunk in list.chunks(500) {
            let rows = addresses::Entity::find()
                .filter(addresses::Column::TokenId.is_in(chunk.iter().map(|t| t.id.as_str())))
                .order_by_asc(addresses::Column::TokenId)
                .order_by_desc(addresses::Column::LastSeenAt)
                .order_by_asc(addresses::Column::Ip)
                .all(&self.db)
                .await?;
            for row in rows {
                let kept = by_token.entry(row.token_id).or_default();
                if kept.len() < MAX_RECENT_ADDRESSES {
                    kept.push(RecentAddress {
                        ip: row.ip,
                        last_seen_at: row.last_seen_at,
                    });
                }
            }
        }
        for token in list {
            token.last_use.recent_addresses =
                by_token.remove(token.id.as_str()).unwrap_or_default();
        }
        Ok(())
    }
}
