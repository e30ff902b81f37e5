//! A local emulator of Google's Admin SDK Directory API and OAuth token endpoint, for tests,
//! benchmarks and `dirsync demo`.
pub mod cli;
