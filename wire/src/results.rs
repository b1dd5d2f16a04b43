//! Encoders for a result set the proxy answers itself: `RowDescription`, `DataRow`,
//! `CommandComplete`, and the extended protocol's `ParameterDescription`, `BindComplete` and
//! `PortalSuspended`. Every column is of type `text`, whose binary format is its text, so
//! the same `DataRow` bytes serve both result formats; only the format codes differ.

use crate::frame::write_message;

/// `BindComplete`.
pub const BIND_COMPLETE: [u8; 5] = [b'2', 0, 0, 0, 4];
/// `PortalSuspended`.
pub const PORTAL_SUSPENDED: [u8; 5] = [b's', 0, 0, 0, 4];
/// `NoData`.
pub const NO_DATA: [u8; 5] = [b'n', 0, 0, 0, 4];

/// OID of the `text` type.
pub const TEXT_OID: u32 = 25;

/// The format code of column `i` under a `Bind`'s result format codes: none means text,
/// one applies to every column.
pub fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// Appends a `RowDescription` of `text` columns with the given result format codes.
pub fn row_description<S: AsRef<str>>(out: &mut Vec<u8>, columns: &[S], formats: &[i16]) {
    write_message(out, b'T', |b| {
        b.extend_from_slice(&(columns.len() as i16).to_be_bytes());
        for (i, c) in columns.iter().enumerate() {
            b.extend_from_slice(c.as_ref().as_bytes());
            b.push(0);
            b.extend_from_slice(&0i32.to_be_bytes()); // table OID
            b.extend_from_slice(&0i16.to_be_bytes()); // column number
            b.extend_from_slice(&TEXT_OID.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes()); // type size
            b.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
            b.extend_from_slice(&format_of(formats, i).to_be_bytes());
        }
    });
}

/// Appends a `DataRow` of `width` columns (missing values are NULL).
pub fn data_row<S: AsRef<str>>(out: &mut Vec<u8>, width: usize, values: &[Option<S>]) {
    write_message(out, b'D', |b| {
        b.extend_from_slice(&(width as i16).to_be_bytes());
        for i in 0..width {
            match values.get(i).and_then(|v| v.as_ref()) {
                Some(v) => {
                    let v = v.as_ref().as_bytes();
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    });
}

/// Appends a `CommandComplete` with `tag`.
pub fn command_complete(out: &mut Vec<u8>, tag: &str) {
    write_message(out, b'C', |b| {
        b.extend_from_slice(tag.as_bytes());
        b.push(0);
    });
}

/// Appends a `ParameterDescription` with the parameter type OIDs.
pub fn parameter_description(out: &mut Vec<u8>, oids: &[u32]) {
    write_message(out, b't', |b| {
        b.extend_from_slice(&(oids.len() as i16).to_be_bytes());
        for oid in oids {
            b.extend_from_slice(&oid.to_be_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::split_message;

    #[test]
    fn a_result_set_frames_as_postgresql_sends_it() {
        let mut out = Vec::new();
        row_description(&mut out, &["a", "b"], &[1]);
        data_row(&mut out, 2, &[Some("42"), None]);
        command_complete(&mut out, "SELECT 1");
        parameter_description(&mut out, &[23]);
        let mut rest = &out[..];
        let mut tags = Vec::new();
        while let Some((tag, body)) = split_message(rest, 1000).unwrap() {
            tags.push(tag);
            if tag == b'T' {
                // Both columns report binary, as the single format code says.
                assert_eq!(&body[body.len() - 2..], &1i16.to_be_bytes());
            }
            rest = &rest[5 + body.len()..];
        }
        assert_eq!(tags, b"TDCt");
        assert_eq!(format_of(&[0, 1], 1), 1);
        assert_eq!(format_of(&[], 3), 0);
    }
}
