//! Command-line arguments (clap).
