//! Queries the proxy runs on a server connection itself (restoring session state, asking
//! what a session left, resetting): simple queries whose answers never reach a client.

use super::server::{ServerConn, ServerError};
use crate::wire::messages::{self, ErrorFields};

impl ServerConn {
    /// Runs an internal simple query and waits for `ReadyForQuery`; returns the first error
    /// the server reported, if any, and the final transaction status.
    pub async fn run_internal(
        &mut self,
        sql: &str,
    ) -> Result<(Option<ErrorFields>, u8), ServerError> {
        let mut out = Vec::with_capacity(sql.len() + 6);
        messages::query(&mut out, sql);
        let mut first_error = None;
        let status = self
            .exchange(&out, |tag, body| {
                if tag == b'E' && first_error.is_none() {
                    first_error = Some(ErrorFields::parse(body));
                }
            })
            .await?;
        match first_error.transpose() {
            Ok(first_error) => Ok((first_error, status)),
            Err(e) => Err(self.protocol(&e.to_string())),
        }
    }

    /// Runs an internal simple query and returns its rows as text (NULL as `None`), the
    /// first error and the final transaction status.
    pub async fn query_rows(&mut self, sql: &str) -> Result<InternalAnswer, ServerError> {
        let mut out = Vec::with_capacity(sql.len() + 6);
        messages::query(&mut out, sql);
        let mut rows = Vec::new();
        let mut first_error = None;
        let status = self
            .exchange(&out, |tag, body| match tag {
                b'D' => rows.push(text_row(body)),
                b'E' if first_error.is_none() => first_error = Some(ErrorFields::parse(body)),
                _ => {}
            })
            .await?;
        match first_error.transpose() {
            Ok(error) => Ok(InternalAnswer {
                rows,
                error,
                status,
            }),
            Err(e) => Err(self.protocol(&e.to_string())),
        }
    }

    /// Runs each statement as its own simple query, all sent at once; returns each one's
    /// error (so one failing does not stop the others) and the final transaction status.
    pub async fn run_each(
        &mut self,
        statements: &[&str],
    ) -> Result<(Vec<Option<ErrorFields>>, u8), ServerError> {
        let mut out = Vec::new();
        for sql in statements {
            messages::query(&mut out, sql);
        }
        self.write(&out).await?;
        let mut errors = Vec::with_capacity(statements.len());
        let mut status = b'I';
        for _ in statements {
            let mut error = None;
            loop {
                let (tag, body) = self.read_message().await?;
                match tag {
                    b'E' if error.is_none() => {
                        error = Some(
                            ErrorFields::parse(&body).map_err(|e| self.protocol(&e.to_string()))?,
                        )
                    }
                    b'Z' => {
                        status = body.first().copied().unwrap_or(b'I');
                        break;
                    }
                    _ => {}
                }
            }
            errors.push(error);
        }
        Ok((errors, status))
    }
}

/// The answer to [`ServerConn::query_rows`].
#[derive(Debug)]
pub struct InternalAnswer {
    /// Each row's values as text; `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The first error, if any.
    pub error: Option<ErrorFields>,
    /// The final transaction status byte.
    pub status: u8,
}

/// The text values of a `DataRow` body (a malformed row reads as the values before it).
fn text_row(body: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    let Some(count) = body.get(..2) else {
        return values;
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    let mut rest = &body[2..];
    for _ in 0..count {
        let Some(len) = rest.get(..4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        if len < 0 {
            values.push(None);
            continue;
        }
        let Some(value) = rest.get(..len as usize) else {
            break;
        };
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &rest[len as usize..];
    }
    values
}
