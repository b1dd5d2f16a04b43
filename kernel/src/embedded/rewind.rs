//! Bringing a replaced primary back as a standby of the new one, on this machine: stopped,
//! rewound with `pg_rewind` from the new primary (which also writes the standby settings),
//! and started again with the options it last ran with (`postmaster.opts`), so it keeps
//! its port and sockets.

use std::path::Path;

use super::{EmbeddedError, LocalPostgres, run};

impl LocalPostgres {
    /// Stops the server in `data_dir`, rewinds it from `source` (a libpq connection string
    /// to the new primary) and starts it as that primary's standby.
    pub fn rejoin_as_standby(data_dir: &Path, source: &str) -> Result<(), EmbeddedError> {
        let mut pg = Self::existing(data_dir)?;
        let opts_file = data_dir.join("postmaster.opts");
        let opts = std::fs::read_to_string(&opts_file).map_err(|source| EmbeddedError::Io {
            path: opts_file.clone(),
            source,
        })?;
        let opts = server_options(&opts);
        let mut stop = pg.command("pg_ctl");
        stop.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(data_dir);
        // A server that is down already is what pg_rewind wants.
        let _ = run(stop, "pg_ctl stop");
        let mut rewind = pg.command("pg_rewind");
        rewind
            .arg("-D")
            .arg(data_dir)
            .arg(format!("--source-server={source}"))
            .arg("--write-recovery-conf")
            .arg("--no-sync");
        let log = data_dir.join("server.log");
        let start = |pg: &Self| {
            let mut start = pg.command("pg_ctl");
            start
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(data_dir)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(&opts)
                .stdin(std::process::Stdio::null());
            start
        };
        if let Err(e) = run(rewind, "pg_rewind") {
            // A node left stopped serves no one: start it again as it was, fenced (its
            // read-only setting was written with ALTER SYSTEM), and say so.
            let again = match run(start(&pg), "pg_ctl start") {
                Ok(_) => "it was started again, read-only".to_owned(),
                Err(start_error) => format!("starting it again failed too: {start_error}"),
            };
            pg.running = false;
            return Err(EmbeddedError::Failed {
                program: "pg_rewind".into(),
                output: format!("{e}; {again}"),
            });
        }
        run(start(&pg), "pg_ctl start")?;
        pg.running = false;
        Ok(())
    }
}

/// The options of a `postmaster.opts` line: everything after the program.
fn server_options(line: &str) -> String {
    let line = line.trim();
    let rest = match line.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map_or("", |(_, r)| r),
        None => line.split_once(' ').map_or("", |(_, r)| r),
    };
    rest.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_dropped_and_the_options_kept_as_quoted() {
        assert_eq!(
            server_options("/usr/lib/postgresql/15/bin/postgres \"-D\" \"/d\" \"-c\" \"port=5\"\n"),
            "\"-D\" \"/d\" \"-c\" \"port=5\""
        );
        assert_eq!(
            server_options("\"/opt/pg bin/postgres\" \"-D\" \"/d\""),
            "\"-D\" \"/d\""
        );
        assert_eq!(server_options("/bin/postgres"), "");
    }
}
