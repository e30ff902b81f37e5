//! Staging and writing a tenant's files. Everything is first written into a hidden folder
//! inside `tenants_dir` (same filesystem, so the final step is a rename, and the config loader
//! only reads `*.toml` files at the top level, so a daemon never sees a staged tenant). The
//! key or token file is created with mode 0600 before a byte of it is written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SetupError;

pub struct Staged {
    dir: PathBuf,
    tenants_dir: PathBuf,
    tenant_file: PathBuf,
    secret_file: Option<PathBuf>,
    done: bool,
}

impl Staged {
    /// Writes `<tenant>.toml` and the secret file into a fresh staging folder.
    pub fn new(
        tenants_dir: &Path,
        tenant: &str,
        toml: &str,
        secret: Option<(&str, &[u8])>,
    ) -> Result<Self, SetupError> {
        fs::create_dir_all(tenants_dir).map_err(|err| {
            SetupError::Write(format!(
                "cannot create tenants_dir {}: {err}",
                tenants_dir.display()
            ))
        })?;
        remove_stale(tenants_dir, tenant);
        let dir = tenants_dir.join(format!(".setup-{tenant}.{}", std::process::id()));
        fs::create_dir(&dir)
            .map_err(|err| SetupError::Write(format!("cannot create {}: {err}", dir.display())))?;
        let mut staged = Self {
            tenant_file: dir.join(format!("{tenant}.toml")),
            secret_file: None,
            tenants_dir: tenants_dir.to_owned(),
            dir,
            done: false,
        };
        write_new(&staged.tenant_file, toml.as_bytes(), 0o644)?;
        if let Some((name, bytes)) = secret {
            let path = staged.dir.join(name);
            write_new(&path, bytes, 0o600)?;
            staged.secret_file = Some(path);
        }
        Ok(staged)
    }

    /// The staged tenant file (load it to validate).
    pub fn tenant_file(&self) -> &Path {
        &self.tenant_file
    }

    /// Moves the files into `tenants_dir`: the secret first, so the tenant file never names a
    /// file that is not there yet. Returns the tenant file's final path.
    pub fn commit(mut self) -> Result<PathBuf, SetupError> {
        if let Some(secret) = &self.secret_file {
            move_into(secret, &self.tenants_dir)?;
        }
        let path = move_into(&self.tenant_file, &self.tenants_dir)?;
        self.done = true;
        let _ = fs::remove_dir_all(&self.dir);
        Ok(path)
    }

    pub fn discard(self) {
        // Drop removes the folder.
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Staging folders of this tenant left by a setup that was interrupted (Ctrl-C skips `Drop`).
/// One whose process still runs is another setup of the same tenant at work: left alone.
fn remove_stale(tenants_dir: &Path, tenant: &str) {
    let prefix = format!(".setup-{tenant}.");
    let Ok(entries) = fs::read_dir(tenants_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        let running = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
        });
        if !running {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn move_into(file: &Path, dir: &Path) -> Result<PathBuf, SetupError> {
    let target = dir.join(file.file_name().unwrap_or_default());
    fs::rename(file, &target).map_err(|err| {
        SetupError::Write(format!(
            "cannot move {} to {}: {err}",
            file.display(),
            target.display()
        ))
    })?;
    Ok(target)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SetupError> {
    let fail =
        |err: std::io::Error| SetupError::Write(format!("cannot write {}: {err}", path.display()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    // The umask can only take bits away; set the mode exactly anyway.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commit_moves_both_files_with_the_secret_private() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = dir.path().join("tenants");
        let staged = Staged::new(
            &tenants,
            "acme",
            "schedule = \"x\"\n",
            Some(("acme-service-account.json", b"{}")),
        )
        .unwrap();
        // Nothing visible to the loader yet.
        assert!(!tenants.join("acme.toml").exists());
        let path = staged.commit().unwrap();
        assert_eq!(path, tenants.join("acme.toml"));
        let mode = fs::metadata(tenants.join("acme-service-account.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = fs::read_dir(&tenants).unwrap().collect();
        assert_eq!(left.len(), 2, "the staging folder is gone");
    }

    #[test]
    fn an_interrupted_setup_leaves_no_folder_behind() {
        let dir = tempfile::tempdir().unwrap();
        // No process has this id (above the kernel's pid_max).
        fs::create_dir(dir.path().join(".setup-acme.4999999")).unwrap();
        fs::create_dir(dir.path().join(".setup-other.4999999")).unwrap();
        Staged::new(dir.path(), "acme", "", None).unwrap().discard();
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![".setup-other.4999999".to_owned()]);
    }

    #[test]
    fn discard_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staged = Staged::new(dir.path(), "acme", "", None).unwrap();
        staged.discard();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
