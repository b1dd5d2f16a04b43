//! Freezing a server instead of crashing it: SIGSTOP to the postmaster and every one of its
//! processes (what a stalled machine or a long pause looks like from outside), SIGCONT to
//! resume. The guard resumes it when dropped, so a failing test leaves no frozen server.

use crate::Pg;

/// A frozen server; dropping it resumes the server.
pub struct Frozen {
    pids: Vec<String>,
}

/// Stops every process of `pg` with SIGSTOP.
pub fn freeze(pg: &Pg) -> Frozen {
    let pid_file = std::fs::read_to_string(pg.data_dir.join("postmaster.pid"))
        .expect("postmaster.pid of a running server");
    let postmaster = pid_file.lines().next().expect("pid line").trim().to_owned();
    let children = std::process::Command::new("pgrep")
        .args(["-P", &postmaster])
        .output()
        .expect("pgrep runs");
    let mut pids = vec![postmaster];
    pids.extend(
        String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned),
    );
    signal("-STOP", &pids);
    Frozen { pids }
}

impl Frozen {
    /// Resumes the server now.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.pids);
    }
}

fn signal(which: &str, pids: &[String]) {
    let status = std::process::Command::new("kill")
        .arg(which)
        .args(pids)
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pids:?}");
}
