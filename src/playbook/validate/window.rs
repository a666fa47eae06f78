//! The `window` checks: a time zone the embedded database knows, slots
//! that parse (days, times, not empty), real blackout dates; each error at
//! the part of the value that is wrong, with "did you mean" for day and
//! time zone names. The rules themselves are in [`crate::window`].

use super::Checker;
use crate::playbook::diagnostic::Diagnostic;
use crate::window::{self, Slot};

impl Checker<'_> {
    pub(super) fn window(&mut self) {
        let Some(w) = &self.pb.window else {
            return;
        };
        let w = &w.value;
        if let Err(e) = window::parse_tz(&w.tz.value) {
            self.push(Diagnostic::new(e.message, w.tz.loc).maybe_hint(e.hint));
        }
        if w.slots.is_empty() && !self.left_out("window.slots") {
            self.push(
                Diagnostic::new(
                    "the window has no slot: it would never open",
                    self.pb
                        .window
                        .as_ref()
                        .map_or_else(Default::default, |w| w.loc),
                )
                .hint("add one, e.g. `slots: [\"Sat 02:00-05:00\"]`, or remove `window`"),
            );
        }
        for slot in &w.slots {
            if let Err(e) = Slot::parse(&slot.value) {
                let loc = if e.len == 0 {
                    slot.loc
                } else {
                    self.sub_loc(slot.loc, &slot.value, e.offset, e.len)
                };
                self.push(Diagnostic::new(e.message, loc).maybe_hint(e.hint));
            }
        }
        for date in &w.blackout {
            if let Err(e) = window::parse_date(&date.value) {
                self.push(
                    Diagnostic::new(format!("blackout date: {}", e.message), date.loc)
                        .maybe_hint(e.hint),
                );
            }
        }
    }
}
