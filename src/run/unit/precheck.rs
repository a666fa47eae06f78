//! The status read just before a mutating call of a fan-out whose
//! compensation reads `failed.changed_items`, or of a compensation step,
//! journaled as a `precheck` attempt.
//!
//! It records what the resource looked like before this run changed it, so
//! the changed set of a failed step ([`crate::run::changed`]) leaves out the
//! items that were already in the call's target state (a node already
//! `PAUSE` is not restarted by the rollback of a stop). Before a
//! compensation's call, it also waits for the resource to leave a
//! transitional status (`KILLING`), in which the call would be refused.

use std::time::Duration;

use tokio::time::Instant;

use super::{Unit, UnitError, humanize};
use crate::cloud::ActionRequest;
use crate::run::retry::{Backoff, READ_LIMIT};
use crate::run::status::AttemptKind;

impl Unit<'_> {
    /// Reads the status `req` would change. A read that cannot be made does
    /// not hold the call back: the prior state is then unknown, and the item
    /// counts as changed if the call takes effect.
    pub(super) async fn precheck(&self, req: &ActionRequest) -> Result<(), UnitError> {
        let Some((effect, status_req)) = req.status_request() else {
            return Ok(());
        };
        let mut backoff = Backoff::seeded(&self.step.retry, self.seed.wrapping_add(2));
        let scale = self.scale();
        let interval = scale.apply(
            Duration::from_millis(self.step.retry.delay_millis)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
        );
        let limit = scale.apply(READ_LIMIT);
        let started = Instant::now();
        let mut check = 0u32;
        loop {
            check += 1;
            let body = match self.send(&status_req, AttemptKind::Precheck, check).await? {
                Ok(resp) => resp.body,
                Err(e) if e.retryable() => match backoff.next() {
                    Some(delay) => {
                        self.attempt_failed(&status_req, check, &e, Some(delay));
                        let after = e.retry_after.unwrap_or_default();
                        self.sleep(scale.apply(delay.max(after))).await?;
                        continue;
                    }
                    None => return Ok(()),
                },
                Err(_) => return Ok(()),
            };
            let observed = effect.observed(&body);
            // Only a compensation waits: it undoes a change that may still
            // be under way (a stop still `KILLING` refuses a start).
            if !(self.step.compensation && effect.is_settling(&observed)) {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(UnitError::Failed(format!(
                    "{} still reports {observed} after {}; {} was not sent",
                    status_req.action,
                    humanize(started.elapsed()),
                    req.action
                )));
            }
            self.sleep(interval).await?;
        }
    }
}
