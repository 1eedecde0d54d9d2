//! Writing a file so that a reader sees the old one or the new one, never a
//! part: `mcp-policy apply` and `render --output`. Envoy's hot reload reads
//! the listener file when a file is moved into its directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to a temporary file in `path`'s own directory, flushes it
/// to disk, and renames it over `path` (atomic within one filesystem, and
/// the move Envoy's directory watch reacts to). The temporary file is
/// removed if anything fails.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        // The file it replaces keeps its permissions (Envoy may run as
        // another user than the one applying, whatever the umask).
        if let Ok(existing) = fs::metadata(path) {
            fs::set_permissions(&temporary, existing.permissions())?;
        }
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        // The rename itself, on disk.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place_and_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("mcp-policy-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("listener.yaml");
        fs::write(&path, "old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["listener.yaml"]);
        // Its permissions stay what they were.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            replace_file(&path, b"newer").unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            replace_file(&path, b"newest").unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A directory that does not exist: an error, nothing written.
        assert!(replace_file(&dir.join("missing/listener.yaml"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
