//! A fetch whose deletions are confirmed: every stored object missing from the listing is
//! asked for upstream, and one that still exists means the listing changed under us (it was
//! torn), so it is fetched again; a second torn listing fails the run rather than delete live
//! objects.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SyncError;
use crate::model::{Id, MemberKind, StoredIndex};
use crate::source::{Fetched, Source, SourceError};

const ATTEMPTS: u32 = 2;

/// A fetch with its deletions confirmed.
pub struct Confirmed {
    pub fetched: Fetched,
    /// The first fetch as it was listed: no stored user had to be located, and the directory
    /// was not listed again. Only then does the next run's equal listing need no confirming.
    pub as_listed: bool,
}

/// Confirms `first`, the run's first fetch, and lists again when it was torn.
pub async fn fetch_confirmed(
    source: &Source,
    before: &StoredIndex,
    first: Fetched,
    cancel: &CancellationToken,
) -> Result<Confirmed, SyncError> {
    let mut attempt = 0;
    let mut first = Some(first);
    loop {
        attempt += 1;
        let mut fetched = match first.take() {
            Some(fetched) => fetched,
            None => source.fetch(cancel).await?,
        };
        let listed: HashSet<&str> = fetched.users.iter().map(|u| &*u.user.id).collect();
        let unlisted: Vec<Id> = before
            .users
            .keys()
            .filter(|id| !listed.contains(&***id))
            .cloned()
            .collect();
        let located = source.locate_users(&unlisted).await?;
        let as_listed = attempt == 1 && located.is_empty();
        fetched.users.extend(located);
        let user_ids: HashSet<&str> = fetched.users.iter().map(|u| &*u.user.id).collect();
        let group_ids: HashSet<&str> = fetched.groups.iter().map(|g| &*g.id).collect();
        let missing_users: Vec<Id> = before
            .users
            .keys()
            .filter(|id| !user_ids.contains(&***id))
            .cloned()
            .collect();
        let missing_groups: Vec<Id> = before
            .groups
            .keys()
            .filter(|id| !group_ids.contains(&***id))
            .cloned()
            .collect();
        let mut unconfirmed = Vec::new();
        for (kind, missing) in [
            (MemberKind::User, missing_users),
            (MemberKind::Group, missing_groups),
        ] {
            if missing.is_empty() {
                continue;
            }
            let gone: HashSet<Id> = source
                .confirm_absent(kind, &missing)
                .await?
                .into_iter()
                .collect();
            unconfirmed.extend(missing.into_iter().filter(|id| !gone.contains(id)));
        }
        if unconfirmed.is_empty() {
            return Ok(Confirmed { fetched, as_listed });
        }
        if attempt >= ATTEMPTS {
            return Err(SyncError::Source(SourceError::Protocol(format!(
                "the listing changed while it was read: {} stored object(s) missing from it still exist upstream (e.g. {}); nothing was committed, the next run will try again",
                unconfirmed.len(),
                unconfirmed[0]
            ))));
        }
        warn!(
            missing = unconfirmed.len(),
            "objects missing from the listing still exist upstream; listing again"
        );
    }
}
