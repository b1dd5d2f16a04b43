//! The durable statement journal: every statement a client ran (SQL, bound parameters,
//! session, transaction, timing, rows, a checksum of the results, the error) appended to
//! segmented, checksummed files by a writer thread, off the sessions' critical path and in
//! the order they were queued. After a crash the journal opens cleanly: a torn record at the
//! tail is cut off and every earlier record verifies. [`Reader`] iterates a time window for
//! time-travel replay and the shadow comparator.

pub mod record;
pub mod redact;
pub mod result_sum;
pub mod segment;
mod writer;

use writer::Writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::SystemTime;

pub use record::Record;
pub use result_sum::ResultSum;
pub use segment::Reader;

use crate::config::{FsyncPolicy, JournalConfig};
use segment::{Frame, HEADER, MAGIC, SegmentReader};

/// A journal failure.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bytes that are not a journal.
    #[error("{0}")]
    Format(String),
    /// A record in the middle of the journal does not verify.
    #[error("{path} at byte {offset}: {why}")]
    Corrupt {
        /// Segment.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        why: String,
    },
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Counters.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Records queued.
    pub queued: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records written.
    pub written: AtomicU64,
    /// fsync calls.
    pub fsyncs: AtomicU64,
    /// Bytes cut off a torn tail when the journal opened.
    pub torn_bytes: AtomicU64,
    /// Bytes of records queued and not yet written.
    pub queued_bytes: AtomicU64,
}

pub(crate) enum Msg {
    Record(Box<Record>),
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The journal: a handle sessions append through; the writer thread owns the files.
pub struct Journal {
    tx: Option<SyncSender<Msg>>,
    queue_bytes: u64,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<JournalStats>,
    /// Directory.
    pub dir: PathBuf,
}

impl Journal {
    /// Opens (creating when needed) the journal, cutting off a torn tail, and starts the
    /// writer thread.
    pub fn open(config: &JournalConfig) -> Result<Journal, JournalError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::io(&dir, e))?;
        restrict(&dir).map_err(|e| JournalError::io(&dir, e))?;
        let stats = Arc::new(JournalStats::default());
        let mut writer = Writer::open(config, stats.clone())?;
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_records);
        let handle = std::thread::Builder::new()
            .name("helios-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::io(&dir, e))?;
        Ok(Journal {
            tx: Some(tx),
            queue_bytes: config.queue_bytes as u64,
            writer: Some(handle),
            stats,
            dir,
        })
    }

    /// Queues a record; never blocks. A full queue drops the record and counts it.
    pub fn append(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        // Bounded in bytes as well as records: a burst of huge statements cannot make the
        // queue hold more than `queue_bytes`.
        let size = record.approx_size() as u64;
        if self.stats.queued_bytes.fetch_add(size, Relaxed) + size > self.queue_bytes {
            self.stats.queued_bytes.fetch_sub(size, Relaxed);
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        }
        match tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queued_bytes.fetch_sub(size, Relaxed);
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Waits until every record queued before this call is written (and synced under
    /// `fsync = "always"`).
    pub fn barrier(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if tx.send(Msg::Barrier(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Records that started within the window, oldest segment first.
    pub fn read(&self, from: SystemTime, to: SystemTime) -> Result<Reader, JournalError> {
        Reader::open(&self.dir, unix_us(from), unix_us(to))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Only the proxy's user may read the journal: the directory becomes 0700 and every
/// segment already in it 0600 (new segments are created 0600).
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Microseconds since the Unix epoch.
pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn config(dir: &Path) -> JournalConfig {
        JournalConfig {
            dir: dir.to_owned(),
            segment_bytes: 4096,
            retention_bytes: 1 << 30,
            fsync: FsyncPolicy::Never,
            ..JournalConfig::default()
        }
    }

    fn rec(i: u64) -> Record {
        Record {
            session_id: i % 3,
            sql: format!("insert into t values ({i})"),
            started_at_us: 1_000_000 + i,
            rows: 1,
            ..Record::default()
        }
    }

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "helios-journal-{label}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let dir = temp("bytes");
        let j = Journal::open(&JournalConfig {
            queue_bytes: 4096,
            ..config(&dir)
        })
        .unwrap();
        j.append(Record {
            sql: "x".repeat(8192),
            ..rec(1)
        });
        assert_eq!(j.stats.dropped.load(Relaxed), 1, "larger than the queue");
        j.append(rec(2));
        j.barrier();
        assert_eq!(j.stats.written.load(Relaxed), 1);
        assert_eq!(
            j.stats.queued_bytes.load(Relaxed),
            0,
            "given back when written"
        );
    }

    #[test]
    fn files_are_private_to_the_proxy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("modes");
        let j = Journal::open(&config(&dir)).unwrap();
        for i in 0..50 {
            j.append(rec(i));
        }
        j.barrier();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut segments = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
            segments += 1;
        }
        assert!(segments > 0);
    }

    #[test]
    fn writes_in_order_across_segments_and_reopens() {
        let dir = temp("order");
        {
            let j = Journal::open(&config(&dir)).unwrap();
            for i in 0..500 {
                j.append(rec(i));
            }
        }
        assert!(segment::list(&dir).unwrap().len() > 3, "segments rolled");
        let j = Journal::open(&config(&dir)).unwrap();
        j.append(rec(500));
        j.barrier();
        let all: Vec<Record> = Reader::open(&dir, 0, u64::MAX)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 501);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.sql, format!("insert into t values ({i})"));
        }
        let window: Vec<Record> = Reader::open(&dir, 1_000_100, 1_000_199)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(window.len(), 100);
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_verify() {
        let dir = temp("torn");
        {
            let j = Journal::open(&config(&dir)).unwrap();
            for i in 0..10 {
                j.append(rec(i));
            }
        }
        let (_, last) = segment::list(&dir).unwrap().pop().unwrap();
        // Half a record at the end, as a crash mid-write leaves it.
        let mut half = Vec::new();
        rec(99).encode_framed(&mut half);
        half.truncate(half.len() / 2);
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(&half)
            .unwrap();
        let j = Journal::open(&config(&dir)).unwrap();
        assert_eq!(j.stats.torn_bytes.load(Relaxed), half.len() as u64);
        j.append(rec(10));
        j.barrier();
        let all: Vec<Record> = Reader::open(&dir, 0, u64::MAX)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 11);
        assert_eq!(all[10].seq, 11);
    }

    #[test]
    fn corruption_in_the_middle_is_reported() {
        let dir = temp("corrupt");
        {
            let j = Journal::open(&config(&dir)).unwrap();
            for i in 0..200 {
                j.append(rec(i));
            }
        }
        let (_, first) = segment::list(&dir).unwrap().remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER as usize + 20] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let errors = Reader::open(&dir, 0, u64::MAX)
            .unwrap()
            .filter(Result::is_err)
            .count();
        assert_eq!(errors, 1);
    }

    #[test]
    fn retention_removes_the_oldest_segments() {
        let dir = temp("retention");
        let mut c = config(&dir);
        c.retention_bytes = 16 << 10;
        let j = Journal::open(&c).unwrap();
        for i in 0..2000 {
            j.append(rec(i));
        }
        j.barrier();
        drop(j);
        let total: u64 = segment::list(&dir)
            .unwrap()
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= (16 << 10) + 4096 + 1024, "total {total}");
        let first = Reader::open(&dir, 0, u64::MAX)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert!(first.seq > 1, "oldest records were removed");
    }
}
