//! One ntex worker's chat subscribers: WebSocket rooms by group, `/subscribe/user` polls by the
//! groups of their user, `/subscribe/status` polls by notification group. The first subscriber
//! starts the worker's dispatcher, which takes every event the process's [`Fanout`] receives
//! and hands it to the subscribers it is for — a room socket gets the event's frame (through
//! the shared send-buffer bound), a poll is woken once and answers.
//!
//! Subscribers leave when their guard ([`RoomSeat`], [`Waiting`]) is dropped, however the
//! socket or request ended. When the replica stops, the dispatcher closes every room socket with
//! 1001; polls watch the stop signal themselves.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use crate::ws::Sink;
use ntex::web::ws::{CloseCode, Message};
use tokio::sync::{broadcast, oneshot};

use super::fanout::Fanout;
use super::model::{Event, EventKind, GroupId, NotifyGroup, Target};
use crate::lifecycle::Shutdown;
use crate::ops::metrics;
use crate::ws;

/// What woke a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A message was posted to this group (`/subscribe/user`).
    Message(GroupId),
    /// `/notify/{group}` reached this poll (`/subscribe/status`).
    Notified,
}

struct Poll {
    wake: Option<oneshot::Sender<Wake>>,
    /// The groups a user poll is listed under, so leaving touches only those.
    groups: Vec<GroupId>,
}

#[derive(Default)]
struct Subscribers {
    /// group → socket key → sink.
    rooms: HashMap<GroupId, HashMap<u64, Sink>>,
    /// group → keys of the user polls waiting on it (a set: thousands of polls on one busy
    /// group leave it one by one when they time out).
    user_polls: HashMap<GroupId, HashSet<u64>>,
    /// status poll key → its notification group.
    status_polls: HashMap<u64, NotifyGroup>,
    polls: HashMap<u64, Poll>,
}

struct Inner {
    fanout: Fanout,
    shutdown: Shutdown,
    max_pending: usize,
    subscribers: RefCell<Subscribers>,
    next_key: Cell<u64>,
    dispatching: Cell<bool>,
}

/// One worker's subscribers. Cheap to clone (an `Rc`).
#[derive(Clone)]
pub struct Hub(Rc<Inner>);

impl Hub {
    pub fn new(fanout: Fanout, shutdown: Shutdown, max_pending: usize) -> Self {
        Self(Rc::new(Inner {
            fanout,
            shutdown,
            max_pending,
            subscribers: RefCell::default(),
            next_key: Cell::new(0),
            dispatching: Cell::new(false),
        }))
    }

    pub fn fanout(&self) -> &Fanout {
        &self.0.fanout
    }

    fn key(&self) -> u64 {
        let key = self.0.next_key.get();
        self.0.next_key.set(key + 1);
        key
    }

    /// Starts the dispatcher on this worker's runtime if it is not running. Its receiver is
    /// taken here, before the caller registers, so no event published after that is missed.
    fn dispatch(&self) {
        if self.0.dispatching.replace(true) {
            return;
        }
        let events = self.0.fanout.subscribe();
        ntex::rt::spawn(dispatcher(self.clone(), events)).detach();
    }

    /// Seats a room socket of `group`; the seat leaves when dropped.
    pub fn join_room(&self, group: GroupId, sink: Sink) -> RoomSeat {
        self.dispatch();
        let key = self.key();
        if self.0.shutdown.is_stopping() {
            ws::close(&sink, CloseCode::Away, ws::GOING_AWAY);
        }
        self.0
            .subscribers
            .borrow_mut()
            .rooms
            .entry(group)
            .or_default()
            .insert(key, sink);
        RoomSeat {
            hub: self.clone(),
            group,
            key,
            _open: metrics::websocket_open("room"),
        }
    }

    /// Registers a `/subscribe/user` poll woken by a new message in any of `groups`.
    pub fn wait_for_messages(&self, groups: &[GroupId]) -> Waiting {
        self.dispatch();
        let (key, waiting) = self.poll("user", groups.to_vec());
        let mut subs = self.0.subscribers.borrow_mut();
        for group in groups {
            subs.user_polls.entry(*group).or_default().insert(key);
        }
        waiting
    }

    /// Registers a `/subscribe/status` poll woken by `/notify/` of `group` or of `all`.
    pub fn wait_for_notify(&self, group: NotifyGroup) -> Waiting {
        self.dispatch();
        let (key, waiting) = self.poll("status", Vec::new());
        self.0
            .subscribers
            .borrow_mut()
            .status_polls
            .insert(key, group);
        waiting
    }

    fn poll(&self, kind: &'static str, groups: Vec<GroupId>) -> (u64, Waiting) {
        let key = self.key();
        let (tx, rx) = oneshot::channel();
        self.0.subscribers.borrow_mut().polls.insert(
            key,
            Poll {
                wake: Some(tx),
                groups,
            },
        );
        let waiting = Waiting {
            hub: self.clone(),
            key,
            woken: rx,
            _open: metrics::long_poll_open(kind),
        };
        (key, waiting)
    }

    /// Hands one event to the subscribers it is for.
    fn deliver(&self, event: &Event) {
        // Sinks and wakers are taken out first: a write can close a socket, whose seat then
        // leaves the registry, which needs the borrow.
        let (sinks, wakes) = {
            let mut subs = self.0.subscribers.borrow_mut();
            let subs = &mut *subs;
            match &event.target {
                Target::Group(group, kind) => {
                    let sinks: Vec<Sink> = subs
                        .rooms
                        .get(group)
                        .map(|room| room.values().cloned().collect())
                        .unwrap_or_default();
                    let mut wakes = Vec::new();
                    if *kind == EventKind::MessageCreated {
                        for key in subs.user_polls.remove(group).unwrap_or_default() {
                            if let Some(tx) = subs.polls.get_mut(&key).and_then(|p| p.wake.take()) {
                                wakes.push((tx, Wake::Message(*group)));
                            }
                        }
                    }
                    (sinks, wakes)
                }
                Target::Notify(notified) => {
                    let room = notified.room();
                    let sinks: Vec<Sink> = subs
                        .rooms
                        .iter()
                        .filter(|(group, _)| notified.is_all() || Some(**group) == room)
                        .flat_map(|(_, room)| room.values().cloned())
                        .collect();
                    let mut wakes = Vec::new();
                    for (key, group) in &subs.status_polls {
                        if notified.reaches(group.as_str()) {
                            if let Some(tx) = subs.polls.get_mut(key).and_then(|p| p.wake.take()) {
                                wakes.push((tx, Wake::Notified));
                            }
                        }
                    }
                    (sinks, wakes)
                }
            }
        };
        for sink in &sinks {
            ws::deliver(sink, Message::Text(event.frame.clone()), self.0.max_pending);
        }
        for (tx, wake) in wakes {
            // The poll may have ended meanwhile (its timeout); then nobody listens.
            let _ = tx.send(wake);
        }
    }

    fn close_rooms(&self) {
        let sinks: Vec<Sink> = self
            .0
            .subscribers
            .borrow()
            .rooms
            .values()
            .flat_map(|room| room.values().cloned())
            .collect();
        for sink in &sinks {
            ws::close(sink, CloseCode::Away, ws::GOING_AWAY);
        }
    }
}

/// Hands every event the process receives to this worker's subscribers until the replica stops,
/// then closes its room sockets with 1001.
async fn dispatcher(hub: Hub, mut events: broadcast::Receiver<Arc<Event>>) {
    let shutdown = hub.0.shutdown.clone();
    let _guard = shutdown.guard();
    let stopped = shutdown.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            event = events.recv() => match event {
                Ok(event) => hub.deliver(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::chat_events_lost(missed);
                    tracing::warn!(missed, "chat events skipped: this worker fell behind");
                }
                // The fan-out lives as long as the process; gone means stopping.
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    hub.close_rooms();
}

/// A room socket's seat; leaving the room is dropping it.
pub struct RoomSeat {
    hub: Hub,
    group: GroupId,
    key: u64,
    _open: metrics::Open,
}

impl Drop for RoomSeat {
    fn drop(&mut self) {
        let mut subs = self.hub.0.subscribers.borrow_mut();
        if let Some(room) = subs.rooms.get_mut(&self.group) {
            room.remove(&self.key);
            if room.is_empty() {
                subs.rooms.remove(&self.group);
            }
        }
    }
}

/// A registered poll; [`Waiting::woken`] resolves with what woke it. Dropping it unregisters.
pub struct Waiting {
    hub: Hub,
    key: u64,
    woken: oneshot::Receiver<Wake>,
    _open: metrics::Open,
}

impl Waiting {
    /// What woke the poll, or `None` if it can never be woken (the hub is gone).
    pub async fn woken(&mut self) -> Option<Wake> {
        (&mut self.woken).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut subs = self.hub.0.subscribers.borrow_mut();
        subs.status_polls.remove(&self.key);
        let Some(poll) = subs.polls.remove(&self.key) else {
            return;
        };
        for group in poll.groups {
            if let Some(keys) = subs.user_polls.get_mut(&group) {
                keys.remove(&self.key);
                if keys.is_empty() {
                    subs.user_polls.remove(&group);
                }
            }
        }
    }
}
