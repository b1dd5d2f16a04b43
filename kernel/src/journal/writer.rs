//! The writer thread: appends records to the current segment, rolls segments over, applies
//! retention and the fsync policy, and on open cuts off a torn tail left by a crash.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::*;

pub(super) struct Writer {
    redaction: super::redact::Redaction,
    config: JournalConfig,
    stats: Arc<JournalStats>,
    file: BufWriter<File>,
    path: PathBuf,
    size: u64,
    next_seq: u64,
    last_sync: Instant,
    dirty: bool,
    buf: Vec<u8>,
    /// Records encoded in `buf`.
    buffered: u64,
}

impl Writer {
    pub(super) fn open(
        config: &JournalConfig,
        stats: Arc<JournalStats>,
    ) -> Result<Writer, JournalError> {
        let dir = &config.dir;
        let segments = segment::list(dir)?;
        let (path, size, next_seq) = match segments.last() {
            None => {
                let path = segment::path_for(dir, 1);
                create_segment(&path, 1)?;
                (path, HEADER, 1)
            }
            Some((first, path)) => {
                let (good_end, last_seq) = recover(path, *first, &stats)?;
                (path.clone(), good_end, last_seq + 1)
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        let writer = Writer {
            redaction: super::redact::Redaction::new(
                &config.redact_settings,
                &config.redact_statements,
            ),
            config: config.clone(),
            stats,
            file: BufWriter::with_capacity(256 << 10, file),
            path,
            size,
            next_seq,
            last_sync: Instant::now(),
            dirty: false,
            buf: Vec::with_capacity(64 << 10),
            buffered: 0,
        };
        writer.enforce_retention();
        Ok(writer)
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
        let tick = Duration::from_millis(self.config.fsync_interval_ms.max(1));
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut barriers = Vec::new();
            let mut batch = first.into_iter().chain(rx.try_iter().take(4096));
            for msg in &mut batch {
                match msg {
                    Msg::Record(mut rec) => {
                        self.stats
                            .queued_bytes
                            .fetch_sub(rec.approx_size() as u64, Relaxed);
                        self.redaction.apply(&mut rec);
                        rec.seq = self.next_seq;
                        self.next_seq += 1;
                        rec.encode_framed(&mut self.buf);
                        self.buffered += 1;
                        if self.size + self.buf.len() as u64 >= self.config.segment_bytes
                            && let Err(e) = self.write_batch()
                        {
                            tracing::error!("journal write failed: {e}");
                        }
                    }
                    Msg::Barrier(done) => barriers.push(done),
                }
            }
            if let Err(e) = self.write_batch() {
                tracing::error!("journal write failed: {e}");
            }
            for b in barriers {
                let _ = b.send(());
            }
        }
        let _ = self.write_batch();
        let _ = self.file.flush();
        let _ = self.file.get_ref().sync_data();
    }

    fn write_batch(&mut self) -> Result<(), JournalError> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .and_then(|_| self.file.flush())
                .map_err(|e| JournalError::io(&self.path, e))?;
            self.size += self.buf.len() as u64;
            self.buf.clear();
            self.dirty = true;
            self.stats
                .written
                .fetch_add(std::mem::take(&mut self.buffered), Relaxed);
        }
        let sync = match self.config.fsync {
            FsyncPolicy::Always => self.dirty,
            FsyncPolicy::Interval => {
                self.dirty
                    && self.last_sync.elapsed()
                        >= Duration::from_millis(self.config.fsync_interval_ms)
            }
            FsyncPolicy::Never => false,
        };
        if sync {
            self.file
                .get_ref()
                .sync_data()
                .map_err(|e| JournalError::io(&self.path, e))?;
            self.stats.fsyncs.fetch_add(1, Relaxed);
            self.last_sync = Instant::now();
            self.dirty = false;
        }
        if self.size >= self.config.segment_bytes {
            self.roll()?;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        self.file
            .flush()
            .and_then(|_| self.file.get_ref().sync_data())
            .map_err(|e| JournalError::io(&self.path, e))?;
        let path = segment::path_for(&self.config.dir, self.next_seq);
        create_segment(&path, self.next_seq)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        self.file = BufWriter::with_capacity(256 << 10, file);
        self.path = path;
        self.size = HEADER;
        self.dirty = false;
        self.enforce_retention();
        Ok(())
    }

    /// Deletes the oldest closed segments while the journal is over its size, and closed
    /// segments last written before the retention time.
    fn enforce_retention(&self) {
        let Ok(segments) = segment::list(&self.config.dir) else {
            return;
        };
        let sizes: Vec<(PathBuf, u64, Option<SystemTime>)> = segments
            .iter()
            .map(|(_, p)| {
                let meta = std::fs::metadata(p).ok();
                (
                    p.clone(),
                    meta.as_ref().map(|m| m.len()).unwrap_or(0),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(_, s, _)| s).sum();
        let max_age = Duration::from_secs(self.config.retention_s);
        for (path, size, modified) in &sizes {
            if *path == self.path {
                break;
            }
            let too_old = modified
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if total > self.config.retention_bytes || too_old {
                if std::fs::remove_file(path).is_ok() {
                    total -= size;
                    tracing::debug!(segment = %path.display(), "journal segment removed by retention");
                }
            } else {
                break;
            }
        }
    }
}

fn create_segment(path: &Path, first_seq: u64) -> Result<(), JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| JournalError::io(path, e))?;
    let mut header = Vec::with_capacity(HEADER as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&first_seq.to_le_bytes());
    f.write_all(&header)
        .and_then(|_| f.sync_all())
        .map_err(|e| JournalError::io(path, e))
}

/// Verifies the newest segment, cuts a torn tail off, and returns the good length and the
/// last sequence number.
fn recover(path: &Path, first_seq: u64, stats: &JournalStats) -> Result<(u64, u64), JournalError> {
    let mut reader = SegmentReader::open(path)?;
    let mut last_seq = first_seq.saturating_sub(1);
    loop {
        match reader.next_frame() {
            Frame::Record(rec) => last_seq = rec.seq,
            Frame::End => break,
            Frame::Bad(why) => {
                let len = std::fs::metadata(path)
                    .map_err(|e| JournalError::io(path, e))?
                    .len();
                let torn = len - reader.good_end;
                tracing::warn!(
                    segment = %path.display(),
                    bytes = torn,
                    "journal: dropping a torn record at the tail ({why})"
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(reader.good_end).and_then(|_| f.sync_all()))
                    .map_err(|e| JournalError::io(path, e))?;
                stats.torn_bytes.fetch_add(torn, Relaxed);
                break;
            }
        }
    }
    Ok((reader.good_end, last_seq))
}
