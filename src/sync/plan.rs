//! The pure half of a sync: from the stored index, the fetched directory and the tenant's
//! policy, decide what the run will commit. No I/O, no clock, no async. It comes in two steps
//! because the diff needs, in full, the few stored objects the change touches, and which ones
//! those are is only known once policy has run:
//!
//! 1. [`draft`]: policy over the fetched directory, and the stored objects the diff needs
//!    ([`Draft::needed`]);
//! 2. [`Draft::plan`]: with those objects, the changes in contract order, the exclusions to
//!    record and the deletion guard's verdict.
//!
//! The caller (`sync::run_sync`) loads the needed objects between the two.

use crate::config::{GuardConfig, TenantConfig};
use crate::diff::{deletion_counts, diff_indexed, needed_previous, DeletionCounts, Needed};
use crate::event::Change;
use crate::model::{DirectGraph, MemberKind, Snapshot, StoredIndex};
use crate::policy::{self, Applied};
use crate::source::Fetched;
use crate::store::NewExclusion;

/// How many users and groups the store held before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCounts {
    pub users: usize,
    pub groups: usize,
}

/// Policy applied; waiting for the stored objects the diff needs.
pub struct Draft {
    applied: Applied,
    needed: Needed,
    stored: StoredCounts,
}

/// What a run will commit.
pub struct Plan {
    pub stored: StoredCounts,
    /// The stored objects the events render from their stored state (updated, deleted, in a
    /// removed membership); the rest of the stored directory is not held.
    pub previous: Snapshot,
    /// The directory as it will be stored.
    pub after: Snapshot,
    /// In contract order (creations, updates, additions, removals, deletions).
    pub changes: Vec<Change>,
    /// Users and groups policy left out, for `inspect`.
    pub exclusions: Vec<NewExclusion>,
    /// The direct group graph behind the effective memberships.
    pub direct: DirectGraph,
}

/// The deletion guard refused a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardRefusal {
    pub deletions: DeletionCounts,
    pub stored: StoredCounts,
    pub max_percent: f64,
    pub min_deletes: u64,
}

/// Step 1: policy over the fetched directory.
pub fn draft(stored: &StoredIndex, fetched: Fetched, tenant: &TenantConfig) -> Draft {
    let applied = policy::apply(fetched, tenant);
    let needed = needed_previous(stored, &applied.snapshot);
    Draft {
        applied,
        needed,
        stored: StoredCounts {
            users: stored.users.len(),
            groups: stored.groups.len(),
        },
    }
}

impl Draft {
    /// The stored objects [`Draft::plan`] needs in full.
    pub fn needed(&self) -> &Needed {
        &self.needed
    }

    /// Step 2: the changes, given the objects [`Draft::needed`] names (`previous`).
    pub fn plan(self, stored: &StoredIndex, previous: Snapshot) -> Plan {
        let Applied {
            snapshot: after,
            direct,
            excluded_users,
            excluded_groups,
        } = self.applied;
        let changes = diff_indexed(stored, &previous, &after);
        let exclusions = exclusions_of(excluded_users, excluded_groups);
        Plan {
            stored: self.stored,
            previous,
            after,
            changes,
            exclusions,
            direct,
        }
    }
}

/// What policy left out, as the store records it for `inspect`.
pub fn exclusions_of(
    excluded_users: Vec<policy::ExcludedUser>,
    excluded_groups: Vec<policy::ExcludedGroup>,
) -> Vec<NewExclusion> {
    let mut exclusions: Vec<NewExclusion> = excluded_users
        .into_iter()
        .map(|user| NewExclusion {
            detail: user.reason.detail(),
            reason: user.reason.code(),
            id: user.id.to_string(),
            key: user.email,
            kind: MemberKind::User,
        })
        .collect();
    exclusions.extend(excluded_groups.into_iter().map(|group| NewExclusion {
        id: group.id.to_string(),
        key: group.key,
        kind: MemberKind::Group,
        reason: "group_filter",
        detail: None,
    }));
    exclusions
}

/// Whether the deletion guard refuses `changes` against `stored`: more than
/// `max_delete_percent` of the stored users, or of the stored groups, and more than
/// `min_deletes` of them.
pub fn guard_refuses(
    changes: &[Change],
    stored: StoredCounts,
    guard: &GuardConfig,
) -> Option<GuardRefusal> {
    let deletions = deletion_counts(changes);
    let trips = |deleted: usize, stored: usize| {
        deleted as u64 > guard.min_deletes
            && stored > 0
            && (deleted as f64) * 100.0 / (stored as f64) > guard.max_delete_percent
    };
    (trips(deletions.users, stored.users) || trips(deletions.groups, stored.groups)).then_some(
        GuardRefusal {
            deletions,
            stored,
            max_percent: guard.max_delete_percent,
            min_deletes: guard.min_deletes,
        },
    )
}

impl Plan {
    /// Whether the deletion guard lets this plan commit: it refuses a run that deletes more
    /// than `max_delete_percent` of the stored users, or of the stored groups, and more than
    /// `min_deletes` of them.
    pub fn guard(&self, guard: &GuardConfig) -> Result<(), GuardRefusal> {
        match guard_refuses(&self.changes, self.stored, guard) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::SourceKind;
    use crate::model::{Email, Id, RawAttributes, User, UserState};
    use crate::source::FetchedUser;

    fn guard(max_delete_percent: f64, min_deletes: u64) -> GuardConfig {
        GuardConfig {
            max_delete_percent,
            min_deletes,
        }
    }

    fn plan_deleting(users: usize, stored_users: usize) -> Plan {
        Plan {
            stored: StoredCounts {
                users: stored_users,
                groups: 0,
            },
            previous: Snapshot::default(),
            after: Snapshot::default(),
            changes: (0..users)
                .map(|i| Change::UserDeleted(Id::from(format!("u{i}"))))
                .collect(),
            exclusions: Vec::new(),
            direct: DirectGraph::default(),
        }
    }

    #[test]
    fn the_guard_needs_both_the_share_and_the_count() {
        // 11 of 50 is 22% and more than 10: refused.
        assert!(plan_deleting(11, 50).guard(&guard(20.0, 10)).is_err());
        // 10 of 20 is 50%, but not more than 10: allowed.
        assert!(plan_deleting(10, 20).guard(&guard(20.0, 10)).is_ok());
        // 11 of 100 is 11%: allowed.
        assert!(plan_deleting(11, 100).guard(&guard(20.0, 10)).is_ok());
        // Nothing stored: nothing to protect.
        assert!(plan_deleting(0, 0).guard(&guard(0.0, 0)).is_ok());
    }

    #[test]
    fn a_draft_over_an_empty_store_needs_nothing_and_creates_everything() {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dirsync.toml");
        let mut tenant = crate::config::load_strict(&config)
            .unwrap()
            .tenants
            .remove("acme")
            .unwrap();
        tenant.filters = Default::default();
        let email = "ada@acme.example".to_owned();
        let user = FetchedUser {
            user: User {
                id: Id::from("u1"),
                email: email.clone(),
                username: email.clone(),
                first_name: None,
                last_name: None,
                display_name: None,
                emails: vec![Email {
                    value: email,
                    primary: true,
                }],
                state: UserState::Active,
                roles: Vec::new(),
                custom_attributes: Default::default(),
                raw_attributes: RawAttributes::empty(),
            },
            org_unit_path: Some("/".into()),
            aliases: Vec::new(),
        };
        let fetched = Fetched {
            source: SourceKind::Google,
            users: vec![user],
            groups: Vec::new(),
            members: Default::default(),
        };
        let stored = StoredIndex::default();
        let draft = draft(&stored, fetched, &tenant);
        assert_eq!(draft.needed(), &Needed::default());
        let plan = draft.plan(&stored, Snapshot::default());
        assert_eq!(plan.changes.len(), 1);
        assert!(matches!(&plan.changes[0], Change::UserCreated(id) if &**id == "u1"));
        assert!(plan.exclusions.is_empty());
        assert!(plan.guard(&guard(20.0, 10)).is_ok());
    }
}
