//! dirsync's integration tests, one binary (linked once) with one module per area, as ripgrep
//! and kanidm do. Each module drives the real `dirsync` binary, the library, or both, against
//! the emulator, fake servers and real peers from `dirsync-testkit` (`crates/testkit`);
//! `support` holds what needs the product library's own types.
#![allow(clippy::unwrap_used)]

mod support;

// The web console in headless Chromium.
mod console;
// `check-config` and `status` on broken configuration.
mod config_check;
// The contract: CLI, config, exit codes and event JSON against an independent fake of Google.
mod contract;
// The daemon: schedules, control socket, HTTP listener, signals, systemd notify, extensions.
mod daemon;
mod daemon_demo;
mod daemon_extension;
// The Google Directory API emulator: its HTTP API, its CLI, Google's own Python client on it.
mod emulator_api;
mod emulator_cli;
mod emulator_python;
// Sources: Google (against a scripted fake) and SCIM (scim2-server, scripted faults).
mod google_source;
mod scim_faults;
mod scim_server;
// The PATCH engine against independent implementations (npm scimmy, scim-patch).
mod scim_patch_oracle;
// The same directory through Google and SCIM; tenant policy on each.
mod parity;
mod policy_google;
mod policy_scim;
// `dirsync setup google|scim`.
mod setup;
mod setup_scim;
// `dirsync setup scim-push`.
mod setup_push;
// Sinks: webhooks, JSON lines, the events API, SCIM-fed delivery, throughput.
mod sink_bench;
mod sink_daemon;
mod sink_jsonl;
mod sink_library;
mod sink_scim;
mod sink_webhook;
// Reading events at the edges: the events API and `events --after`, `forget`.
mod events_access;
// The shipped systemd unit against the example config.
mod systemd_unit;
// A stand-alone sync, signals and the tenant's lease.
mod lease_signals;
// Moving a SQLite history to PostgreSQL.
mod migrate_store;
// SCIM push writes to one tenant through two nodes of one PostgreSQL store.
mod push_cluster;
// A cluster on PostgreSQL under faults: nodes killed, stopped past their lease, PostgreSQL
// restarted, a receiver down.
mod faults;
// What a run reports.
mod run_report;
// Out of file descriptors: the error says so.
mod descriptors;
// IdP text in human-readable output, log colour.
mod terminal_text;
// Whole syncs of the real binary against the emulator: changes, faults, guard, dry runs.
mod sync_e2e;
// A run of an unchanged Google directory records itself without planning; real changes still plan.
mod unchanged_directory;
// A hostile or broken IdP: panics, hangs, secrets in logs, unbounded work.
mod hostile;
// The SCIM push receiver: replayed IdP sessions, outside conformance suites, storms and bad
// input, all against the real `dirsync run`.
mod push_conformance;
mod push_edges;
mod push_entra;
mod push_okta;
mod push_policy;
mod push_stress;
mod push_support;
// Several nodes on one store (issue 16).
mod cluster;
