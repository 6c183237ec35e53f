//! Files chogate creates hold households' numbers and names, or secrets: they are the
//! owner's alone (mode 0600), whatever the process umask, set as each file is created
//! (`OpenOptionsExt::mode`) and again on files found with wider permissions.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read and write, nothing for group and others.
pub const PRIVATE_MODE: u32 = 0o600;

/// Creates (or truncates) a file for writing, mode 0600.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_MODE).open(path)?;
    // An existing file keeps its mode through `open`: narrow it.
    file.set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    Ok(file)
}

/// Creates a new file, mode 0600; fails if it exists (no race with another creator).
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(PRIVATE_MODE).open(path)
}

/// Makes sure a file exists with mode 0600, leaving its content alone: created empty when
/// absent, narrowed when wider.
pub fn ensure_private(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).create(true).truncate(false).mode(PRIVATE_MODE).open(path)?;
    narrow(&file)
}

/// Narrows an existing file to 0600 if it is wider; absent is fine.
pub fn narrow_if_present(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => narrow(&file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn narrow(file: &File) -> io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o777 != PRIVATE_MODE {
        file.set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_should_be_created_and_narrowed_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        create_private(&a).unwrap();
        assert_eq!(mode(&a), 0o600);
        std::fs::set_permissions(&a, Permissions::from_mode(0o644)).unwrap();
        create_private(&a).unwrap();
        assert_eq!(mode(&a), 0o600);

        let b = dir.path().join("b");
        std::fs::write(&b, "keep").unwrap();
        std::fs::set_permissions(&b, Permissions::from_mode(0o664)).unwrap();
        ensure_private(&b).unwrap();
        assert_eq!((mode(&b), std::fs::read_to_string(&b).unwrap().as_str()), (0o600, "keep"));
        narrow_if_present(&dir.path().join("absent")).unwrap();

        let c = dir.path().join("c");
        create_new_private(&c).unwrap();
        assert_eq!(mode(&c), 0o600);
        assert!(create_new_private(&c).is_err());
    }
}
