//! Org units: the unit record, path normalisation (`/Sales/EMEA`, `sales/emea/` name the same
//! unit), lookups by path or id, and orgunits.insert with its missing parents.

use super::*;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct OrgUnit {
    pub id: String,
    pub path: String,
    pub name: String,
    pub description: String,
    pub parent_path: Option<String>,
    pub parent_id: Option<String>,
    pub version: u64,
}

/// `/Sales/EMEA`, `Sales/EMEA/` and `sales/emea` name the same unit (case aside).
pub fn normalise_ou_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}")
    }
}

impl Directory {
    pub fn org_unit(&self, path_or_id: &str) -> Option<&OrgUnit> {
        let key = normalise_ou_path(path_or_id);
        self.org_units.get(&lower(&key)).or_else(|| {
            let id = path_or_id.trim_start_matches('/');
            let id = id.strip_prefix("id:").unwrap_or(id);
            self.org_units
                .values()
                .find(|ou| ou.id.strip_prefix("id:") == Some(id))
        })
    }

    pub(super) fn root_ou_id(&self) -> String {
        format!("id:{}", base36(mix64(self.seed ^ 0x0_0007), 13))
    }

    /// Adds an org unit and its missing parents; returns its canonical path.
    pub fn add_org_unit(&mut self, path: &str, description: &str) -> Result<String, ApiError> {
        let path = normalise_ou_path(path);
        if path == "/" {
            return Ok(path);
        }
        if path.split('/').skip(1).any(str::is_empty) {
            return Err(ApiError::invalid_input("orgUnitPath"));
        }
        let mut parent_path = "/".to_owned();
        let mut parent_id = self.root_ou_id();
        let mut current = String::new();
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        for (index, part) in parts.iter().enumerate() {
            current.push('/');
            current.push_str(part);
            let key = lower(&current);
            if let Some(existing) = self.org_units.get_mut(&key) {
                if index + 1 == parts.len() && !description.is_empty() {
                    existing.description = description.to_owned();
                }
                parent_path = existing.path.clone();
                parent_id = existing.id.clone();
                continue;
            }
            let version = self.next_version();
            let id = format!(
                "id:03{}",
                base36(mix64(hash_str(&key) ^ self.seed) % 36u64.pow(11), 11)
            );
            let unit = OrgUnit {
                id: id.clone(),
                path: current.clone(),
                name: (*part).to_owned(),
                description: if index + 1 == parts.len() {
                    description.to_owned()
                } else {
                    String::new()
                },
                parent_path: Some(parent_path.clone()),
                parent_id: Some(parent_id.clone()),
                version,
            };
            self.org_units.insert(key, unit);
            parent_path = current.clone();
            parent_id = id;
        }
        Ok(current)
    }
}
