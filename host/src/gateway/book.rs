//! What is written when a call ends: its access line, and its settlement
//! when billing holds a ticket for it.

use crate::billing::{Delivered, Ticket};
use crate::telemetry::AccessLog;

pub struct CallBook {
    pub log: AccessLog,
    pub ticket: Option<Ticket>,
}

impl CallBook {
    pub fn new(log: AccessLog) -> Self {
        CallBook { log, ticket: None }
    }

    /// Writes the access line and settles the call on what it delivered.
    pub fn close(mut self, delivered: Delivered) {
        self.log.emit();
        if let Some(ticket) = self.ticket.take() {
            ticket.settle(&self.log, delivered);
        }
    }
}
