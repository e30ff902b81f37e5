//! The SCIM 2.0 pull source (RFC 7643/7644).

use std::sync::Arc;

use crate::config::ScimSourceConfig;
use crate::source::{FetchStats, Fetched, SourceError};

pub struct ScimSource {
    #[allow(dead_code)]
    config: ScimSourceConfig,
    #[allow(dead_code)]
    stats: Arc<FetchStats>,
}

impl ScimSource {
    pub fn new(config: ScimSourceConfig, stats: Arc<FetchStats>) -> Result<Self, SourceError> {
        Ok(Self { config, stats })
    }

    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        Err(SourceError::Protocol(
            "the SCIM source is not built yet".into(),
        ))
    }

    pub async fn check(&self) -> Result<String, SourceError> {
        Err(SourceError::Protocol(
            "the SCIM source is not built yet".into(),
        ))
    }
}
