//! The SCIM 2.0 protocol pieces of the push receiver that need no I/O (RFC 7643 / RFC 7644):
//! attribute paths, the filter language (`filter`), the PATCH engine (`patch`) and the error
//! schema with its `scimType` codes (`error`). Everything works on resources as JSON objects,
//! with attribute names and URNs matched case-insensitively as RFC 7643 §2.1 requires.
//!
//! A leaf module: imports nothing of dirsync. Must not: know about tenants, the store or HTTP.

pub mod error;
pub mod filter;
pub mod patch;
pub mod path;

pub use error::{ScimError, ScimType};
pub use filter::Filter;
pub use path::AttrPath;

/// The core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
