//! dirsync: Directory Sync for B2B SaaS. Pulls users, groups and memberships from a tenant's
//! IdP (Google Workspace, SCIM 2.0), diffs each snapshot against SQLite, and emits normalized
//! change events.
//!
//! # Layout
//! In layer order, top first; each imports only modules below it (docs/architecture.md,
//! checked by `scripts/check-layers.py`).
//! - `cli`, `commands`: the thin edge — argument parsing, one function per verb, exit codes.
//! - `console`: the web console at `/console/` (`console_token_file`): tenants, runs, events,
//!   inspect and the two actions for operators; signed tenant links for IT admins.
//! - `setup`: `dirsync setup google|scim TENANT`, guided onboarding.
//! - `daemon`: `dirsync run` — tenant tasks, the scheduler (`daemon::schedule`: a clock and a
//!   pure `next_due`), control socket, HTTP listener, systemd.
//! - `sync`: one run of one tenant — lease → fetch → `plan` (pure: policy, diff, guard) →
//!   apply (one transaction).
//! - `triage`: what the store knows about one user or group and why something is missing
//!   (`dirsync inspect` and the console's inspect page).
//! - `policy`: filters, roles, custom attributes, nested-group flattening (pure).
//! - `source`: complete fetches from Google or SCIM; retries, paging, rate limits; Google's
//!   console texts (`source::google::console`).
//! - `sink`: event delivery — a folder per sink kind (webhook, JSON lines), the worker, the
//!   supervisor, replay, status, delivery metrics, the events API.
//! - `store`: SQL only, behind one handle (`Store`) — migrations, snapshot, outbox, runs,
//!   leases, cursors.
//! - `diff`: the pure diff of two directories, in contract order.
//! - `config`: the global and tenant TOML files, raw → validated.
//! - `event`: change events and their one renderer; `model`: normalized users and groups.
//! - Leaves any layer may use, importing nothing of dirsync: `run` (one run's summary),
//!   `attribute_path`, `glob`, `signing` (Standard Webhooks), `feed` (the per-tenant commit
//!   feed), `telemetry` (the one metrics registry and Prometheus renderer), `mutex`
//!   (poison-tolerant locking), `process_stats`, `scim_protocol` (SCIM 2.0 filters, PATCH and
//!   errors, for the push receiver).
//! - `terminal`, the lowest leaf (even leaves may use it): escaping outside text for
//!   human-readable output, the text log format's field formatter, colour on stderr.
//!
//! The Google Directory API emulator (tests, benchmarks, `dirsync emulator`, `dirsync demo`)
//! is its own crate, `dirsync_emulator` (`crates/emulator`), which depends on no dirsync
//! crate; the test harness is `dirsync_testkit` (`crates/testkit`).

pub mod attribute_path;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod feed;
pub mod glob;
pub mod model;
pub mod mutex;
pub mod policy;
pub mod process_stats;
pub mod push;
pub mod run;
pub mod scim_protocol;
pub mod setup;
pub mod signing;
pub mod sink;
pub mod source;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod terminal;
pub mod triage;
