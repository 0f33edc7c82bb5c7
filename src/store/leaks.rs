//! Finding credentials by the digests of their secrets, many at once (a leaked-token report).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Store;
use super::entities::{sessions, user_access_tokens as tokens};
use crate::domain::error::Result;
use crate::domain::{
    leaks::CredentialsByDigest,
    model::{Session, UserAccessToken},
    secret::TokenDigest,
};

/// Digests per query (well under every backend's limit on bound parameters).
const CHUNK: usize = 500;

impl Store {
    /// The personal access tokens and login sessions whose secrets have one of `digests`:
    /// one query per kind per 500 digests.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name(), digests = digests.len()))]
    pub async fn find_credentials_by_digests(
        &self,
        digests: &[TokenDigest],
    ) -> Result<CredentialsByDigest> {
        let mut found = CredentialsByDigest::default();
        for chunk in digests.chunks(CHUNK) {
            let values: Vec<&str> = chunk.iter().map(TokenDigest::as_str).collect();
            for m in tokens::Entity::find()
                .filter(tokens::Column::TokenHash.is_in(values.clone()))
                .all(&self.db)
                .await?
            {
                let stored = TokenDigest::from_stored(m.token_hash.clone());
                found.access_tokens.push((UserAccessToken::from(m), stored));
            }
            for m in sessions::Entity::find()
                .filter(sessions::Column::TokenHash.is_in(values))
                .filter(sessions::Column::UserAccessTokenId.is_null())
                .all(&self.db)
                .await?
            {
                let stored = TokenDigest::from_stored(m.token_hash.clone());
                found.sessions.push((Session::try_from(m)?, stored));
            }
        }
        Ok(found)
    }
}
