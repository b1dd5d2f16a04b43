//! Documents a component reads through the `documents` host interface: files or URLs its
//! own `[[plugins]]` entry names (`documents = { jwks = "/etc/heliosproxy/jwks.json" }`, or
//! `"https://idp.example.com/.well-known/jwks.json"`), so key sets and key lists change
//! without a restart. The kernel owns the I/O:
//! - a file is looked at at most once a second and read again only when it changed;
//! - a URL is fetched at load, every [`URL_REFRESH`], and when the component asks
//!   (`refresh`, e.g. for a key id it does not know) at most once per [`MIN_REFETCH`], in
//!   the background (a hook never waits on the network), within [`FETCH_TIMEOUT`];
//! - anything that fails, or grows past 1 MiB, keeps its last good copy (and says so in the
//!   log, once).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The largest document served.
pub const MAX_BYTES: u64 = 1 << 20;

/// How often a file is looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// How often a URL is fetched again on its own.
pub const URL_REFRESH: Duration = Duration::from_secs(300);

/// The least time between two fetches of one URL.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);

/// The longest a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Copy {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    bytes: Option<Arc<Vec<u8>>>,
    failing: bool,
}

/// A URL document: the last good copy and when it was last fetched.
#[derive(Default)]
struct Fetched {
    bytes: Option<Arc<Vec<u8>>>,
    started: Option<Instant>,
    failing: bool,
}

/// One component's documents.
#[derive(Default)]
pub struct Documents {
    files: HashMap<String, (PathBuf, Mutex<Copy>)>,
    urls: HashMap<String, (String, Arc<Mutex<Fetched>>)>,
}

impl Documents {
    /// The documents `entries` (name → file path or `http(s)://` URL) name; URLs are fetched
    /// right away, in the background.
    pub fn new(entries: &std::collections::BTreeMap<String, String>) -> Documents {
        let mut docs = Documents::default();
        for (name, source) in entries {
            if source.starts_with("http://") || source.starts_with("https://") {
                let fetched = Arc::new(Mutex::new(Fetched::default()));
                docs.urls.insert(name.clone(), (source.clone(), fetched));
                docs.fetch(name, Duration::ZERO);
            } else {
                docs.files
                    .insert(name.clone(), (PathBuf::from(source), Mutex::default()));
            }
        }
        docs
    }

    /// Asks for `name` to be fetched again now (a URL, not fetched within [`MIN_REFETCH`]).
    pub fn refresh(&self, name: &str) {
        self.fetch(name, MIN_REFETCH);
    }

    /// Starts a background fetch of the URL document `name` unless one started within `gap`.
    fn fetch(&self, name: &str, gap: Duration) {
        let Some((url, fetched)) = self.urls.get(name) else {
            return;
        };
        {
            let mut f = fetched.lock().expect("documents lock");
            if !gap.is_zero() && f.started.is_some_and(|t| t.elapsed() < gap) {
                return;
            }
            f.started = Some(Instant::now());
        }
        let (name, url, fetched) = (name.to_owned(), url.clone(), fetched.clone());
        // Its own thread and runtime: callers are hooks on any thread, in any context.
        let _ = std::thread::Builder::new()
            .name("helios-document-fetch".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| rt.block_on(download(&url)));
                let mut f = fetched.lock().expect("documents lock");
                match result {
                    Ok(bytes) => {
                        f.bytes = Some(Arc::new(bytes));
                        f.failing = false;
                    }
                    Err(e) => {
                        if !f.failing {
                            tracing::warn!(document = %name, %url, "cannot fetch the document ({e}); keeping its last good copy");
                        }
                        f.failing = true;
                    }
                }
            });
    }

    /// The current contents of `name`, `None` when it is not one of this component's
    /// documents or has never been readable.
    pub fn get(&self, name: &str) -> Option<Arc<Vec<u8>>> {
        if let Some((_, fetched)) = self.urls.get(name) {
            let (bytes, stale) = {
                let f = fetched.lock().expect("documents lock");
                (
                    f.bytes.clone(),
                    f.started.is_none_or(|t| t.elapsed() >= URL_REFRESH),
                )
            };
            if stale {
                self.fetch(name, URL_REFRESH);
            }
            return bytes;
        }
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

/// GETs `url` within [`FETCH_TIMEOUT`] and [`MAX_BYTES`].
async fn download(url: &str) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MAX_BYTES as usize {
            return Err(format!("more than {MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        let docs = Documents::new(
            &[("keys".to_owned(), path.display().to_string())]
                .into_iter()
                .collect(),
        );
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
