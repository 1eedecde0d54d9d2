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
        // A directory that does not exist: an error, nothing written.
        assert!(replace_file(&dir.join("missing/listener.yaml"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
