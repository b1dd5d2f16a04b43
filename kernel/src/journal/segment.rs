//! Segment files: `<first seq, 20 digits>.hpj`, a 12-byte header (`HPJ1` + first seq) and
//! framed records. Reading verifies every record's CRC; an incomplete or corrupt record at the
//! very end of the newest segment is a torn write and is cut off when the journal opens.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::JournalError;
use super::record::{FRAME_HEADER, MAX_PAYLOAD, Record};

/// Magic bytes at the start of every segment.
pub const MAGIC: &[u8; 4] = b"HPJ1";
/// Header size.
pub const HEADER: u64 = 12;

/// The path of the segment starting at `first_seq`.
pub fn path_for(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.hpj"))
}

/// Every segment in `dir` with its first sequence number, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let path = entry.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".hpj"))
        else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// What reading one frame gave.
pub enum Frame {
    /// A verified record.
    Record(Box<Record>),
    /// Clean end of file.
    End,
    /// Bytes that are not a whole, verified record (torn write or corruption).
    Bad(String),
}

/// Reads a segment's records in order.
pub struct SegmentReader {
    reader: BufReader<File>,
    /// Byte offset just past the last good record.
    pub good_end: u64,
    path: PathBuf,
}

impl SegmentReader {
    /// Opens a segment and checks its header.
    pub fn open(path: &Path) -> Result<SegmentReader, JournalError> {
        let file = File::open(path).map_err(|e| JournalError::io(path, e))?;
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut header = [0u8; HEADER as usize];
        reader
            .read_exact(&mut header)
            .map_err(|e| JournalError::io(path, e))?;
        if &header[..4] != MAGIC {
            return Err(JournalError::Format(format!(
                "{} is not a journal segment",
                path.display()
            )));
        }
        Ok(SegmentReader {
            reader,
            good_end: HEADER,
            path: path.to_owned(),
        })
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> Frame {
        let mut head = [0u8; FRAME_HEADER];
        match read_full(&mut self.reader, &mut head) {
            Ok(0) => return Frame::End,
            Ok(n) if n < FRAME_HEADER => return Frame::Bad("truncated record header".into()),
            Ok(_) => {}
            Err(e) => return Frame::Bad(e.to_string()),
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4"));
        if len == 0 || len > MAX_PAYLOAD {
            return Frame::Bad(format!("implausible record length {len}"));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut self.reader, &mut payload) {
            Ok(n) if n == len => {}
            Ok(_) => return Frame::Bad("truncated record".into()),
            Err(e) => return Frame::Bad(e.to_string()),
        }
        if crc32fast::hash(&payload) != crc {
            return Frame::Bad("checksum mismatch".into());
        }
        match Record::decode(&payload) {
            Ok(rec) => {
                self.good_end += (FRAME_HEADER + len) as u64;
                Frame::Record(Box::new(rec))
            }
            Err(e) => Frame::Bad(e.to_string()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads records from a journal directory, oldest first, verifying each.
pub struct Reader {
    segments: Vec<(u64, PathBuf)>,
    current: Option<SegmentReader>,
    next_segment: usize,
    from_us: u64,
    to_us: u64,
}

impl Reader {
    /// Records that started within `[from_us, to_us]` (microseconds since the epoch).
    pub fn open(dir: &Path, from_us: u64, to_us: u64) -> Result<Reader, JournalError> {
        Ok(Reader {
            segments: list(dir)?,
            current: None,
            next_segment: 0,
            from_us,
            to_us,
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Record, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let (_, path) = self.segments.get(self.next_segment)?;
                self.next_segment += 1;
                match SegmentReader::open(path) {
                    Ok(r) => self.current = Some(r),
                    Err(e) => return Some(Err(e)),
                }
            }
            let reader = self.current.as_mut().expect("open segment");
            match reader.next_frame() {
                Frame::Record(rec) => {
                    if rec.started_at_us < self.from_us || rec.started_at_us > self.to_us {
                        continue;
                    }
                    return Some(Ok(*rec));
                }
                Frame::End => self.current = None,
                Frame::Bad(why) => {
                    let last = self.next_segment == self.segments.len();
                    let path = reader.path().to_owned();
                    let offset = reader.good_end;
                    self.current = None;
                    if last {
                        // A write in progress or a torn tail: the end of the journal.
                        return None;
                    }
                    return Some(Err(JournalError::Corrupt { path, offset, why }));
                }
            }
        }
    }
}
