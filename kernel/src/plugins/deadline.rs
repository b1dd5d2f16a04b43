//! Bounding a component call's CPU: the epoch deadline callback, which counts CPU the
//! component used rather than time its thread waited for a CPU.

use wasmtime::UpdateDeadline;

use super::TICK;
use super::host::HostState;

/// How far past its wall-clock deadline a call may run when the thread was not running it
/// (CPU oversubscription), in deadline windows.
const MAX_DEADLINE_WINDOWS: u32 = 10;

/// What the deadline callback knows about the call in progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeadlineWatch {
    /// Thread CPU time when the wall-clock deadline was first reached, in microseconds.
    cpu_at_deadline_us: Option<u64>,
    /// Windows granted past the deadline.
    extensions: u32,
}

/// The epoch deadline of a call was reached (`window` ticks of wall-clock time). The deadline
/// counts CPU the component used, not time its thread spent descheduled: the first time, the
/// call gets another window and the thread's CPU time is noted; after that it is interrupted
/// once it used at least half of a window's CPU since, or after [`MAX_DEADLINE_WINDOWS`]. A
/// component that loops is stopped after about two windows; a busy machine does not fail
/// calls that merely waited for a CPU.
pub(super) fn deadline_reached(state: &mut HostState, window: u64) -> UpdateDeadline {
    let now = thread_cpu_us();
    let watch = &mut state.deadline;
    watch.extensions += 1;
    match watch.cpu_at_deadline_us {
        None => {
            watch.cpu_at_deadline_us = Some(now);
            UpdateDeadline::Continue(window)
        }
        Some(start) => {
            let used_us = now.saturating_sub(start);
            let window_us =
                window * TICK.as_micros() as u64 * watch.extensions.saturating_sub(1) as u64;
            if used_us * 2 >= window_us || watch.extensions > MAX_DEADLINE_WINDOWS {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(window)
            }
        }
    }
}

/// CPU time consumed by the calling thread, in microseconds.
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
