//! The open sockets of one ntex worker, and the one way anything is written to them.
//!
//! A socket's row is written by [`Sockets::record`], which hands back a [`Recorded`] that
//! deletes the row if dropped; the socket joins the registry when its session starts (the
//! `Recorded` becomes its [`Membership`]) and leaves it when the session is dropped — which ntex
//! does however the connection ended (close frame, reset, error), so that is also where its
//! `connected_users` row is deleted. No path from insert to close leaves a row behind. The
//! first socket of a worker starts the worker's clock (`clock.rs`), which ticks and refreshes
//! through this registry.
//!
//! Every frame goes through [`crate::ws::deliver`] and its send-buffer bound.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::ws::Sink;
use ntex::util::ByteString;
use ntex::web::ws::{CloseCode, Message};
use uuid::Uuid;

use super::clock;
use super::model::FibError;
use super::store::{self, Row};
use crate::error::ErrorChain;
use crate::lifecycle::Shutdown;
use crate::ws::{close, deliver, Delivery, GOING_AWAY};

struct Open {
    sink: Sink,
    // Kept whole, not just its id: the refresh writes the row back if it has gone.
    row: Row,
}

/// The rows of the sockets open at one moment, for a refresh; `keys[i]` is the registry key of
/// `rows[i]`, so the refresh can tell which of them closed while it ran.
pub struct Snapshot {
    keys: Vec<u64>,
    pub rows: Vec<Row>,
}

struct Inner {
    open: RefCell<HashMap<u64, Open>>,
    next_key: Cell<u64>,
    clock_started: Cell<bool>,
    max_pending: usize,
    pg: deadpool_postgres::Pool,
    instance: Rc<str>,
    shutdown: Shutdown,
}

/// One worker's open sockets. Cheap to clone (an `Rc`): the worker's state, every session and
/// the clock share it.
#[derive(Clone)]
pub struct Sockets(Rc<Inner>);

impl Sockets {
    pub fn new(
        pg: deadpool_postgres::Pool,
        instance: &str,
        max_pending: usize,
        shutdown: Shutdown,
    ) -> Self {
        Self(Rc::new(Inner {
            open: RefCell::default(),
            next_key: Cell::new(0),
            clock_started: Cell::new(false),
            max_pending,
            pg,
            instance: instance.into(),
            shutdown,
        }))
    }

    pub fn max_pending(&self) -> usize {
        self.0.max_pending
    }

    pub fn pg(&self) -> &deadpool_postgres::Pool {
        &self.0.pg
    }

    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.0.shutdown
    }

    pub fn len(&self) -> usize {
        self.0.open.borrow().len()
    }

    /// Writes a socket's `connected_users` row; the [`Recorded`] returned deletes it when
    /// dropped, until [`join`](Self::join) hands it to the socket's [`Membership`].
    ///
    /// The insert runs in a task of its own, like a person's creation: if the caller is dropped
    /// meanwhile (the client hung up during the upgrade), the insert still finishes and the
    /// `Recorded` nobody receives is dropped, deleting the row. Dropping the caller's future
    /// mid-query instead would leave a row written after anyone could delete it.
    pub async fn record(&self, row: Row) -> Result<Recorded, FibError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sockets = self.clone();
        ntex::rt::spawn(async move {
            let recorded = store::insert(sockets.pg(), &row, sockets.instance())
                .await
                .map(|()| Recorded {
                    sockets,
                    row: Some(row),
                });
            // Unsent, or sent and never received: either way it is dropped, deleting the row.
            let _ = tx.send(recorded);
        })
        .detach();
        // The task is only ever dropped unfinished when the worker's runtime is stopping.
        rx.await
            .map_err(|_| FibError::ShuttingDown)?
            .map_err(FibError::from)
    }

    /// Adds a socket whose row `recorded` holds; dropping the returned [`Membership`] removes
    /// it and deletes the row. Starts this worker's clock if needed.
    ///
    /// The replica may have begun stopping after the socket's open checked it: then the clock
    /// may already have closed every socket and deleted the replica's rows without this one,
    /// so the socket is closed with 1001 here and deletes its own row when it goes.
    pub fn join(&self, sink: Sink, mut recorded: Recorded) -> Membership {
        let row = recorded
            .row
            .take()
            .expect("BUG: a Recorded holds its row until it joins");
        let id = row.id;
        let late = self.0.shutdown.is_stopping();
        if late {
            close(&sink, CloseCode::Away, GOING_AWAY);
        } else if !self.0.clock_started.replace(true) {
            ntex::rt::spawn(clock::run(self.clone())).detach();
        }
        let key = self.0.next_key.get();
        self.0.next_key.set(key + 1);
        self.0.open.borrow_mut().insert(key, Open { sink, row });
        Membership {
            sockets: self.clone(),
            key,
            id,
            late,
        }
    }

    /// Deletes the row `id` in a task, holding a shutdown guard so a stopping process waits
    /// for it.
    fn delete_later(&self, id: Uuid) {
        let (pg, guard) = (self.0.pg.clone(), self.0.shutdown.guard());
        ntex::rt::spawn(async move {
            let _guard = guard;
            if let Err(e) = store::delete(&pg, id).await {
                // The row stops being refreshed, so readers hide it within 30 s anyway.
                tracing::warn!(error = %ErrorChain(&e), "could not delete a closed socket's row");
            }
        })
        .detach();
    }

    /// Sends the same text frame to every open socket; returns how many got it.
    pub fn broadcast(&self, text: &ByteString) -> usize {
        self.sinks()
            .iter()
            .filter(|sink| {
                deliver(sink, Message::Text(text.clone()), self.0.max_pending) == Delivery::Queued
            })
            .count()
    }

    /// Every open socket's sink, copied out so no RefCell borrow is held while writing (a
    /// write can close a socket, which leaves the registry).
    fn sinks(&self) -> Vec<Sink> {
        self.0
            .open
            .borrow()
            .values()
            .map(|o| o.sink.clone())
            .collect()
    }

    /// The `connected_users` rows of every open socket, for the refresh.
    pub fn snapshot(&self) -> Snapshot {
        let open = self.0.open.borrow();
        let mut snapshot = Snapshot {
            keys: Vec::with_capacity(open.len()),
            rows: Vec::with_capacity(open.len()),
        };
        for (&key, o) in open.iter() {
            snapshot.keys.push(key);
            snapshot.rows.push(o.row.clone());
        }
        snapshot
    }

    /// The rows of `snapshot` whose socket has left since (or all of them once the replica is
    /// stopping, when the clock deletes this replica's rows): a refresh that ran meanwhile may
    /// have written them back after their delete, so they must be deleted again.
    pub fn gone(&self, snapshot: &Snapshot) -> Vec<Uuid> {
        let stopping = self.0.shutdown.is_stopping();
        let open = self.0.open.borrow();
        snapshot
            .keys
            .iter()
            .zip(&snapshot.rows)
            .filter(|(key, _)| stopping || !open.contains_key(key))
            .map(|(_, row)| row.id)
            .collect()
    }

    /// Closes every socket with `code` and `reason`.
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for sink in &self.sinks() {
            close(sink, code, reason);
        }
    }
}

/// A socket's row, written and not yet joined to the registry; see [`Sockets::record`].
pub struct Recorded {
    sockets: Sockets,
    // Taken by `join`; still here when the socket never opened.
    row: Option<Row>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(row) = self.row.take() {
            self.sockets.delete_later(row.id);
        }
    }
}

/// A socket's place in its worker's registry; see [`Sockets::join`].
pub struct Membership {
    sockets: Sockets,
    key: u64,
    id: Uuid,
    /// Joined after the replica began stopping, so not covered by the clock's cleanup.
    late: bool,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.sockets.0.open.borrow_mut().remove(&self.key);
        // While stopping, the clock deletes every row of this replica in one statement.
        if self.sockets.0.shutdown.is_stopping() && !self.late {
            return;
        }
        self.sockets.delete_later(self.id);
    }
}
