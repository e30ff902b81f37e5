//! dirsync: Directory Sync for B2B SaaS. Pulls users, groups and memberships from a tenant's
//! IdP (Google Workspace, SCIM 2.0), diffs each snapshot against SQLite, and emits normalized
//! change events.
//!
//! # Layout
//! - `config`: the global and tenant TOML files, raw → validated.
//! - `model`, `event`, `diff`: the pure core — normalized objects, change events, the diff.
//! - `policy`: filters, roles, custom attributes, nested-group flattening (pure).
//! - `source`: fetch complete snapshots from Google or SCIM; retries, paging, rate limits.
//! - `sink`: event delivery — a folder per sink kind (webhook, JSON lines), the worker, the
//!   supervisor, replay, status, delivery metrics, the events API.
//! - `store`: SQLite only — migrations, snapshot, outbox, runs, per-tenant locks, cursors.
//! - `sync`: one run of one tenant — fetch → policy → diff → guard → one transaction.
//! - `daemon`: `dirsync run` — per-tenant scheduling, control socket, HTTP listener, systemd.
//! - `setup`: `dirsync setup google|scim TENANT`, guided onboarding (its console texts are
//!   `source::google::console`).
//! - leaves shared by several layers, importing nothing of dirsync: `attribute_path`, `glob`,
//!   `run` (one run's summary), `signing` (Standard Webhooks), `process_stats`.
//! - `cli`, `commands`: the thin edge — argument parsing, verbs, exit codes.
//! - Leaf modules any layer may use: `feed` (the per-tenant commit feed), `telemetry` (the one
//!   metrics registry and Prometheus renderer), `mutex` (poison-tolerant locking).
//!
//! The Google Directory API emulator (tests, benchmarks, `dirsync emulator`, `dirsync demo`)
//! is its own crate, `dirsync_emulator` (`crates/emulator`), which depends on no dirsync
//! crate; the test harness is `dirsync_testkit` (`crates/testkit`).

pub mod attribute_path;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod feed;
pub mod glob;
pub mod model;
pub mod mutex;
pub mod policy;
pub mod process_stats;
pub mod run;
pub mod setup;
pub mod signing;
pub mod sink;
pub mod source;
pub mod store;
pub mod sync;
pub mod telemetry;
