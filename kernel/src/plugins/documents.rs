//! Documents a component reads through the `documents` host interface: files its own
//! `[[plugins]]` entry names (`documents = { jwks = "/etc/heliosproxy/jwks.json" }`), so key
//! sets and key lists change without a restart. The kernel owns the I/O: a file is looked at
//! at most once a second and read again only when it changed; one that disappears or grows
//! past 1 MiB keeps its last good copy (and says so in the log, once).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The largest document served.
pub const MAX_BYTES: u64 = 1 << 20;

/// How often a file is looked at.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Copy {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    bytes: Option<Arc<Vec<u8>>>,
    failing: bool,
}

/// One component's documents.
#[derive(Default)]
pub struct Documents {
    files: HashMap<String, (PathBuf, Mutex<Copy>)>,
}

impl Documents {
    /// The documents `entries` (name → file) name.
    pub fn new(entries: &std::collections::BTreeMap<String, PathBuf>) -> Documents {
        Documents {
            files: entries
                .iter()
                .map(|(name, path)| (name.clone(), (path.clone(), Mutex::default())))
                .collect(),
        }
    }

    /// The current contents of `name`, `None` when it is not one of this component's
    /// documents or has never been readable.
    pub fn get(&self, name: &str) -> Option<Arc<Vec<u8>>> {
        let (path, copy) = self.files.get(name)?;
        let mut copy = copy.lock().expect("documents lock");
        if copy.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return copy.bytes.clone();
        }
        copy.checked = Some(Instant::now());
        let result = std::fs::metadata(path).and_then(|m| {
            if m.len() > MAX_BYTES {
                return Err(std::io::Error::other(format!(
                    "{} bytes, more than {MAX_BYTES}",
                    m.len()
                )));
            }
            let modified = m.modified().ok();
            if copy.bytes.is_some() && modified.is_some() && modified == copy.modified {
                return Ok(None);
            }
            Ok(Some((modified, std::fs::read(path)?)))
        });
        match result {
            Ok(Some((modified, bytes))) => {
                copy.modified = modified;
                copy.bytes = Some(Arc::new(bytes));
                copy.failing = false;
            }
            Ok(None) => {}
            Err(e) => {
                if !copy.failing {
                    tracing::warn!(document = name, path = %path.display(), "cannot read the document ({e}); keeping its last good copy");
                }
                copy.failing = true;
            }
        }
        copy.bytes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_read_again_and_a_missing_one_keeps_its_copy() {
        let dir = std::env::temp_dir().join(format!("helios-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, b"one").unwrap();
        let docs = Documents::new(&[("keys".to_owned(), path.clone())].into_iter().collect());
        assert_eq!(docs.get("keys").unwrap().as_slice(), b"one");
        assert!(docs.get("other").is_none());
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, b"two, longer").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(docs.get("keys").unwrap().as_slice(), b"two, longer");
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(docs.get("keys").unwrap().as_slice(), b"two, longer");
    }
}
