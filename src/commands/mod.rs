//! CLI verbs.
