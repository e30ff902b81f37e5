//! The JSON-lines sink: appends each event as one line to a file and fsyncs every batch before
//! the cursor moves. Safe with logrotate: before each batch the path's device and inode are
//! compared with the open file's (a moved or deleted file is reopened, creating a new one), and
//! a SIGHUP-driven reopen hook forces a reopen for setups that signal. A crash can leave a
//! partial last line; on open it is cut off (`repair`). Its config (`path`) is
//! `config::JsonlSinkConfig`. Must not: touch cursors or the store (the worker does).

mod repair;
mod sink;

pub use sink::JsonlSink;
