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

/// The column names of a `RowDescription` body; `None` when it is malformed.
pub fn column_names(body: &[u8]) -> Option<Vec<String>> {
    let count = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = &body[2..];
    let mut names = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let end = rest.iter().position(|&b| b == 0)?;
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        // NUL, table OID, column number, type OID, size, modifier, format.
        rest = rest.get(end + 1 + 18..)?;
    }
    Some(names)
}

/// The values of a `DataRow` body (`None` = NULL); `None` when it is malformed.
pub fn row_values(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let count = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = &body[2..];
    let mut values = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            values.push(None);
        } else {
            let len = len as usize;
            values.push(Some(rest.get(..len)?));
            rest = &rest[len..];
        }
    }
    Some(values)
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
        let (_, t) = split_message(&out, 1000).unwrap().unwrap();
        assert_eq!(column_names(t).unwrap(), ["a", "b"]);
        let (_, d) = split_message(&out[5 + t.len()..], 1000).unwrap().unwrap();
        assert_eq!(row_values(d).unwrap(), [Some(&b"42"[..]), None]);
        assert!(
            row_values(&d[..d.len() - 1]).is_none(),
            "cut inside a length"
        );
        assert!(row_values(&d[..4]).is_none(), "cut inside a value");
        assert_eq!(format_of(&[0, 1], 1), 1);
        assert_eq!(format_of(&[], 3), 0);
    }
}
