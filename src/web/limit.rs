//! A per-client limit on requests that cost a write but prove nothing, such
//! as the anonymous passkey challenge (`/login/passkey/options`: each one is
//! a session row). In memory, per instance, in fixed one-minute windows; it
//! forgets everyone when it holds too many clients, so it never grows
//! without bound (a flood from many addresses is for the edge's own limits).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Client;
use crate::error::AppError;

const WINDOW: Duration = Duration::from_secs(60);
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug)]
pub struct PerClient {
    per_minute: u32,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl PerClient {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` while `client` is within its limit this minute; `429` past it.
    pub fn check(&self, client: &Client) -> Result<(), AppError> {
        self.check_key(client.throttle_bucket())
    }

    fn check_key(&self, key: String) -> Result<(), AppError> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_CLIENTS && !seen.contains_key(&key) {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if seen.len() >= MAX_CLIENTS {
                seen.clear();
            }
        }
        let (start, count) = seen.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(*start));
            return Err(AppError::TooManyRequests {
                retry_after_secs: left.as_secs().max(1),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_allowance() {
        let limit = PerClient::new(3);
        for _ in 0..3 {
            assert!(limit.check_key("192.0.2.1".into()).is_ok());
        }
        assert!(matches!(
            limit.check_key("192.0.2.1".into()),
            Err(AppError::TooManyRequests { .. })
        ));
        assert!(limit.check_key("192.0.2.2".into()).is_ok());
    }
}
