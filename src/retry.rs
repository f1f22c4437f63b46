//! What regfs does when a database reports a transient conflict (a lock held by another
//! process, a serialization failure, a deadlock, a duplicate key from a concurrent insert; see
//! [`crate::sql::is_retryable`]): the attempt runs again after a pause, within a bound, and
//! past the bound the caller gets EIO with a log line saying why. One policy and one loop,
//! [`run`], for every store and for the user-management tables: each attempt is a future the
//! caller makes anew, which takes its own connection (or the SQLite writer) and runs its
//! transaction on it.

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::err;
use crate::error::{Error, Result};

/// How long an operation keeps trying.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// At most this many attempts after the first (SQLite, where another process's lock is
    /// already waited for by the busy timeout inside each attempt).
    Retries(u32),
    /// Until this much time has passed since the first attempt, pauses included (servers:
    /// conflicts between nodes are the normal case, and EIO is for a database that is down).
    Within(Duration),
}

/// One operation's retries: `what` it is and which store it runs on, for the log lines.
#[derive(Debug)]
pub struct Retry<'a> {
    store: &'a str,
    what: &'a str,
    bound: Bound,
    started: Instant,
    attempt: u32,
}

impl<'a> Retry<'a> {
    pub fn new(store: &'a str, what: &'a str, bound: Bound) -> Self {
        Self {
            store,
            what,
            bound,
            started: Instant::now(),
            attempt: 0,
        }
    }

    /// How long the next attempt may take (all of it, for a bound in attempts).
    pub fn left(&self) -> Option<Duration> {
        match self.bound {
            Bound::Retries(_) => None,
            Bound::Within(d) => Some(d.saturating_sub(self.started.elapsed())),
        }
    }

    /// After a failed attempt: the pause before the next one when `e` is a transient conflict
    /// and the bound allows another; otherwise the error that stands (a conflict past the
    /// bound becomes EIO, with a log line).
    pub fn after(&mut self, e: Error) -> Result<Duration> {
        if !e.is_transient() {
            return Err(e);
        }
        let pause = pause(self.attempt);
        let more = match self.bound {
            Bound::Retries(max) => self.attempt < max,
            Bound::Within(d) => self.started.elapsed() + pause < d,
        };
        if !more {
            let (attempt, elapsed) = (self.attempt, self.started.elapsed());
            warn!(store = %self.store, op = self.what, "giving up after {attempt} retries in {elapsed:?}: {e}");
            return Err(err!(
                EIO,
                "{}: gave up after {attempt} retries in {elapsed:?}: {}",
                self.what,
                e.message()
            ));
        }
        self.attempt += 1;
        debug!(store = %self.store, op = self.what, attempt = self.attempt, "retrying after conflict: {e}");
        Ok(pause)
    }
}

/// Runs `attempt` (a new future each time) until it succeeds or fails for good, pausing after
/// each transient conflict as `retry` decides. With a bound in time, each attempt only gets
/// what is left of it: an attempt still running then (a server that stopped answering) gives
/// EIO. An EIO that stands is logged with the store and the operation.
pub async fn run<T, F, Fut>(mut retry: Retry<'_>, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    loop {
        let result = match (retry.left(), retry.bound) {
            (Some(left), Bound::Within(total)) => {
                match tokio::time::timeout(left, attempt()).await {
                    Ok(r) => r,
                    Err(_) => Err(err!(
                        EIO,
                        "{}: the database did not answer within {total:?}",
                        retry.what
                    )),
                }
            }
            _ => attempt().await,
        };
        match result {
            Err(e) if e.is_transient() => match retry.after(e) {
                Ok(pause) => tokio::time::sleep(pause).await,
                Err(e) => return Err(e),
            },
            Err(e) if e.errno() == libc::EIO => {
                warn!(store = %retry.store, op = retry.what, "{e}");
                return Err(e);
            }
            other => return other,
        }
    }
}

/// The pause before retry `attempt + 1`: exponential from 2 ms, capped at 100 ms, with full
/// jitter, so that writers which collided do not collide again in step.
fn pause(attempt: u32) -> Duration {
    let cap = (2u64 << attempt.min(6)).min(100);
    let r = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    Duration::from_micros(500 + r % (cap * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Error {
        err!(EIO, "database is locked").transient()
    }

    #[test]
    fn a_bound_in_attempts_allows_that_many_then_eio() {
        let mut r = Retry::new("s", "write", Bound::Retries(3));
        for _ in 0..3 {
            let p = r.after(conflict()).unwrap();
            assert!(p <= Duration::from_millis(101));
        }
        let e = r.after(conflict()).unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.message().contains("gave up after 3 retries"), "{e}");
    }

    #[test]
    fn other_errors_stand_at_once() {
        let mut r = Retry::new("s", "write", Bound::Retries(3));
        let e = r.after(err!(ENOENT, "no such resource")).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(!e.message().contains("gave up"));
    }

    #[test]
    fn a_bound_in_time_ends_before_the_time_is_up() {
        let mut r = Retry::new("s", "write", Bound::Within(Duration::from_millis(30)));
        let mut slept = Duration::ZERO;
        let e = loop {
            match r.after(conflict()) {
                Ok(p) => {
                    std::thread::sleep(p);
                    slept += p;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(e.errno(), libc::EIO);
        assert!(slept < Duration::from_millis(30));
        assert!(r.left().unwrap() < Duration::from_millis(30));
    }

    #[tokio::test]
    async fn run_retries_conflicts_until_an_attempt_succeeds() {
        let mut attempts = 0;
        let r = run(Retry::new("s", "write", Bound::Retries(5)), || {
            attempts += 1;
            let n = attempts;
            async move { if n < 3 { Err(conflict()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test]
    async fn run_gives_other_errors_back_after_one_attempt() {
        let mut attempts = 0;
        let r: Result<()> = run(Retry::new("s", "write", Bound::Retries(5)), || {
            attempts += 1;
            async { Err(err!(ENOENT, "gone")) }
        })
        .await;
        assert_eq!(r.unwrap_err().errno(), libc::ENOENT);
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn run_ends_an_attempt_that_outlives_the_time_bound_with_eio() {
        let bound = Duration::from_millis(50);
        let started = Instant::now();
        let r: Result<()> = run(Retry::new("s", "read", Bound::Within(bound)), || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.message().contains("did not answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
