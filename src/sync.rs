//! One sync run of one tenant.
