//! A result being copied while it passes to the client (a cache miss), stored when its
//! statement completes without error outside a transaction block.

use std::sync::Arc;

use super::{CachedResult, Pending, ResultCache};
use crate::wire::frame::write_message;

/// The frames of one result, as they pass.
#[derive(Debug)]
pub struct Capture {
    pending: Pending,
    cache: Arc<ResultCache>,
    /// The `RowDescription` frame, format codes zeroed; shared so that a portal
    /// `Describe` answered after the `Execute` was sent can still fill it in.
    row_description: Arc<std::sync::Mutex<Vec<u8>>>,
    rows: Vec<u8>,
    row_count: u64,
    complete: Vec<u8>,
    limit: usize,
    overflow: bool,
}

/// Puts a `RowDescription` (body) with zeroed format codes into `slot`.
pub fn set_columns(slot: &std::sync::Mutex<Vec<u8>>, body: &[u8]) {
    let mut frame = Vec::with_capacity(body.len() + 5);
    write_message(&mut frame, b'T', |b| b.extend_from_slice(body));
    let mut zeroed = Vec::with_capacity(frame.len());
    if super::entry::with_formats(&frame, &[], &mut zeroed).is_some() {
        *slot.lock().expect("capture lock") = zeroed;
    }
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultCache")
    }
}

impl Capture {
    /// Starts copying a result that will be stored under `pending`.
    pub fn new(cache: Arc<ResultCache>, pending: Pending) -> Box<Capture> {
        let limit = cache.max_result_bytes();
        Box::new(Capture {
            pending,
            cache,
            row_description: Arc::default(),
            rows: Vec::new(),
            row_count: 0,
            complete: Vec::new(),
            limit,
            overflow: false,
        })
    }

    /// The `RowDescription` (body) of the result.
    pub fn note_columns(&mut self, body: &[u8]) {
        set_columns(&self.row_description, body);
    }

    /// Where the `RowDescription` goes (for a `Describe` answered later).
    pub fn columns_slot(&self) -> Arc<std::sync::Mutex<Vec<u8>>> {
        self.row_description.clone()
    }

    /// Sets the `RowDescription` frame (format codes already zeroed).
    pub fn set_row_description(&self, frame: Vec<u8>) {
        *self.row_description.lock().expect("capture lock") = frame;
    }

    /// A `DataRow` (body).
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        if self.overflow {
            return;
        }
        if self.rows.len() + body.len() + 5 > self.limit {
            self.overflow = true;
            self.rows = Vec::new();
            return;
        }
        write_message(&mut self.rows, b'D', |b| b.extend_from_slice(body));
        self.row_count += 1;
    }

    /// The `CommandComplete` tag; a second one means more than one result: not cached.
    pub fn note_tag(&mut self, tag: &[u8]) {
        if !self.complete.is_empty() {
            self.overflow = true;
            return;
        }
        write_message(&mut self.complete, b'C', |b| {
            b.extend_from_slice(tag);
            b.push(0);
        });
    }

    /// Stores the result when it is whole, came outside a transaction block, and is not to be
    /// `discard`ed (it failed, or a node other than the primary answered it).
    pub fn finish(self, discard: bool, in_transaction: bool) {
        if discard || in_transaction || self.overflow || self.complete.is_empty() {
            return;
        }
        let row_description =
            std::mem::take(&mut *self.row_description.lock().expect("capture lock"));
        if row_description.is_empty() {
            return;
        }
        let result = CachedResult {
            row_description,
            rows: self.rows,
            row_count: self.row_count,
            complete: self.complete,
            tables: self.pending.tables.clone(),
        };
        self.cache.store(self.pending, result);
    }
}
