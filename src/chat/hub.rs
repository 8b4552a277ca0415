//! One ntex worker's chat subscribers: WebSocket rooms by group, `/subscribe/user` polls by the
//! groups of their user, `/subscribe/status` polls by notification group. The first subscriber
//! starts the worker's dispatcher, which takes every event the process's [`Fanout`] receives
//! and hands it to the subscribers it is for — a room socket gets the event's frame (through
//! the shared send-buffer bound), a poll is woken once and answers.
//!
//! Rooms lose nothing and keep order (docs/API.md §5). Each group with seats here has a
//! [`Feed`]: `last`, the id of the newest event of the group every live seat has been given.
//! Messages and deletions carry their id and the id of the group's event before them
//! ([`Position`]); one whose `prev` is `last` is released to the seats, one that arrives ahead
//! of a gap (an event lost with a broker outage, or one still on its way from another replica)
//! is held while the feed re-reads PostgreSQL from `last` — where, within a group, id order is
//! commit order (sql/V7) — and the held ones follow in order. A feed also re-reads when the
//! broker link comes back or the worker fell behind, and every [`CHECK_EVERY`] compares its
//! `last` with the group's newest id in PostgreSQL, so even an outage's last event arrives.
//!
//! A seat that asks for `since` first catches up from PostgreSQL page by page at the pace its
//! client reads, then turns live in one step once it has everything the feed has released; from
//! then on it gets only events after the last it was sent, so the seam has no gap and no
//! duplicate.
//!
//! Subscribers leave when their guard ([`RoomSeat`], [`Waiting`]) is dropped, however the
//! socket or request ended. When the replica stops, the dispatcher closes every room socket with
//! 1001; polls watch the stop signal themselves.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ws::Sink;
use deadpool_postgres::Pool;
use ntex::util::ByteString;
use ntex::web::ws::{CloseCode, Message};
use tokio::sync::{broadcast, oneshot};

use super::fanout::Fanout;
use super::model::{Event, EventKind, GroupId, NotifyGroup, Since, Target};
use super::store;
use crate::lifecycle::Shutdown;
use crate::ops::metrics;
use crate::ws;

/// How often a worker compares its feeds with PostgreSQL: an event whose broker message was
/// lost, and after which nothing else was posted to its group, waits at most two of these.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often every room socket gets a ping frame. A quiet room sends nothing, and a proxy
/// closes a connection that stays silent past its read timeout (nginx: 75 s, nginx/nginx.conf);
/// the ping also finds a peer that vanished without closing.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Events a feed holds ahead of a gap; past it they are dropped here and re-read with the gap.
const HELD_MAX: usize = 1024;
/// A re-read that failed (PostgreSQL unreachable) is tried again after this, doubling up to
/// [`RETRY_MAX`].
const RETRY: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// A catching-up client may leave a page unread this long before it is closed as too slow.
const CATCH_UP_STALL: Duration = Duration::from_secs(30);
/// Close reason of a socket whose history could not be read.
const NO_HISTORY: &str = "could not read the group's history; reconnect with since";

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

/// One room socket: where it writes, and whether it is live (with the id of the last
/// positioned event it was sent) or still catching up from PostgreSQL.
struct Seat {
    sink: Sink,
    live: Option<i64>,
    /// Which catch-up is current: a resume starts a new one and the old one stops.
    epoch: u64,
}

/// A group's seats on this worker and what they have been given (see the module's notes).
struct Feed {
    last: i64,
    held: BTreeMap<i64, Arc<Event>>,
    syncing: bool,
    /// The group's newest id in PostgreSQL at the previous check: still ahead of `last` one
    /// check later, it was not merely on its way through the broker.
    suspect: i64,
    /// Tells a re-read task of an earlier feed of the same group (emptied, then seated again)
    /// that it is no longer wanted.
    generation: u64,
    seats: HashMap<u64, Seat>,
}

/// Frames to write once the registry's borrow is given back (a write can close a socket, whose
/// seat then leaves the registry).
type Outbox = Vec<(Sink, ByteString)>;

impl Feed {
    /// Gives `event` (the group's next) to every live seat that has not had it.
    fn release(&mut self, event: &Event, out: &mut Outbox) {
        let Some(at) = event.position else { return };
        self.last = self.last.max(at.seq);
        for seat in self.seats.values_mut() {
            if let Some(sent) = seat.live.as_mut().filter(|sent| **sent < at.seq) {
                *sent = at.seq;
                out.push((seat.sink.clone(), event.frame.clone()));
            }
        }
    }

    /// Releases the held events that now follow `last`; drops those it already passed.
    fn drain_held(&mut self, out: &mut Outbox) {
        while let Some(entry) = self.held.first_entry() {
            let at = entry
                .get()
                .position
                .expect("BUG: only positioned events are held");
            if at.seq <= self.last {
                entry.remove();
            } else if at.prev <= self.last {
                let event = entry.remove();
                self.release(&event, out);
            } else {
                break;
            }
        }
    }

    /// Whether a re-read has caught up with everything this feed was told of.
    fn in_order(&self) -> bool {
        self.held.is_empty()
    }

    /// Marks a re-read as started and names it for [`resync_feed`]; `None` while one runs.
    fn begin_sync(&mut self) -> Option<u64> {
        (!std::mem::replace(&mut self.syncing, true)).then_some(self.generation)
    }
}

#[derive(Default)]
struct Subscribers {
    /// group → its feed (present while it has seats).
    rooms: HashMap<GroupId, Feed>,
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
    pg: Pool,
    max_pending: usize,
    subscribers: RefCell<Subscribers>,
    next_key: Cell<u64>,
    dispatching: Cell<bool>,
    checking: Cell<bool>,
}

/// One worker's subscribers. Cheap to clone (an `Rc`).
#[derive(Clone)]
pub struct Hub(Rc<Inner>);

impl Hub {
    pub fn new(fanout: Fanout, shutdown: Shutdown, pg: Pool, max_pending: usize) -> Self {
        Self(Rc::new(Inner {
            fanout,
            shutdown,
            pg,
            max_pending,
            subscribers: RefCell::default(),
            next_key: Cell::new(0),
            dispatching: Cell::new(false),
            checking: Cell::new(false),
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

    /// Seats a room socket of `group`; the seat leaves when dropped. `newest` is the group's
    /// newest event id when membership was checked; with `since` the socket first gets every
    /// event after it, else it is live from now.
    pub fn join_room(
        &self,
        group: GroupId,
        sink: Sink,
        newest: i64,
        since: Option<Since>,
    ) -> RoomSeat {
        self.dispatch();
        let key = self.key();
        if self.0.shutdown.is_stopping() {
            ws::close(&sink, CloseCode::Away, ws::GOING_AWAY);
        }
        {
            let mut subs = self.0.subscribers.borrow_mut();
            let generation = self.key();
            let feed = subs.rooms.entry(group).or_insert_with(|| Feed {
                last: newest,
                held: BTreeMap::new(),
                syncing: false,
                suspect: newest,
                generation,
                seats: HashMap::new(),
            });
            let live = since.is_none().then_some(feed.last);
            feed.seats.insert(
                key,
                Seat {
                    sink,
                    live,
                    epoch: 0,
                },
            );
        }
        if let Some(since) = since {
            ntex::rt::spawn(catch_up(self.clone(), group, key, 0, since)).detach();
        }
        RoomSeat {
            hub: self.clone(),
            group,
            key,
            _open: metrics::websocket_open("room"),
        }
    }

    /// Restarts a seat's stream from `since` (the client's resume frame).
    fn resume(&self, group: GroupId, key: u64, since: Since) {
        let epoch = {
            let mut subs = self.0.subscribers.borrow_mut();
            let Some(seat) = subs
                .rooms
                .get_mut(&group)
                .and_then(|feed| feed.seats.get_mut(&key))
            else {
                return;
            };
            seat.live = None;
            seat.epoch += 1;
            seat.epoch
        };
        ntex::rt::spawn(catch_up(self.clone(), group, key, epoch, since)).detach();
    }

    /// The sink of a seat if it still exists and is in catch-up `epoch`.
    fn catching_up(&self, group: GroupId, key: u64, epoch: u64) -> Option<Sink> {
        let subs = self.0.subscribers.borrow();
        let seat = subs.rooms.get(&group)?.seats.get(&key)?;
        (seat.epoch == epoch && seat.live.is_none()).then(|| seat.sink.clone())
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

    /// Hands one event from the fan-out to the subscribers it is for.
    fn deliver(&self, event: Arc<Event>) {
        let mut out = Outbox::new();
        let mut wakes = Vec::new();
        let mut resync = None;
        {
            let mut subs = self.0.subscribers.borrow_mut();
            let subs = &mut *subs;
            match &event.target {
                Target::Group(group, kind) => {
                    if *kind == EventKind::MessageCreated {
                        for key in subs.user_polls.remove(group).unwrap_or_default() {
                            if let Some(tx) = subs.polls.get_mut(&key).and_then(|p| p.wake.take()) {
                                wakes.push((tx, Wake::Message(*group)));
                            }
                        }
                    }
                    if let Some(feed) = subs.rooms.get_mut(group) {
                        match event.position {
                            // A live hint (member.joined): every seat, in no particular order.
                            None => out.extend(
                                feed.seats
                                    .values()
                                    .map(|seat| (seat.sink.clone(), event.frame.clone())),
                            ),
                            Some(at) if at.seq <= feed.last => {}
                            Some(at) if at.prev <= feed.last => {
                                feed.release(&event, &mut out);
                                feed.drain_held(&mut out);
                            }
                            Some(at) => {
                                if feed.held.len() < HELD_MAX {
                                    feed.held.insert(at.seq, event.clone());
                                }
                                resync = feed.begin_sync().map(|generation| (*group, generation));
                            }
                        }
                    }
                }
                Target::Notify(notified) => {
                    let room = notified.room();
                    out.extend(
                        subs.rooms
                            .iter()
                            .filter(|(group, _)| notified.is_all() || Some(**group) == room)
                            .flat_map(|(_, feed)| feed.seats.values())
                            .map(|seat| (seat.sink.clone(), event.frame.clone())),
                    );
                    for (key, group) in &subs.status_polls {
                        if notified.reaches(group.as_str()) {
                            if let Some(tx) = subs.polls.get_mut(key).and_then(|p| p.wake.take()) {
                                wakes.push((tx, Wake::Notified));
                            }
                        }
                    }
                }
            }
        }
        self.write(out);
        for (tx, wake) in wakes {
            // The poll may have ended meanwhile (its timeout); then nobody listens.
            let _ = tx.send(wake);
        }
        self.resync(resync);
    }

    /// Runs the re-reads just begun ([`Feed::begin_sync`]).
    fn resync(&self, begun: impl IntoIterator<Item = (GroupId, u64)>) {
        for (group, generation) in begun {
            ntex::rt::spawn(resync_feed(self.clone(), group, generation)).detach();
        }
    }

    fn write(&self, out: Outbox) {
        for (sink, frame) in out {
            ws::deliver(&sink, Message::Text(frame), self.0.max_pending);
        }
    }

    /// Starts a re-read of every feed that is not already re-reading (the broker link came
    /// back, or this worker fell behind the fan-out).
    fn resync_all(&self) {
        let begun: Vec<(GroupId, u64)> = self
            .0
            .subscribers
            .borrow_mut()
            .rooms
            .iter_mut()
            .filter_map(|(group, feed)| feed.begin_sync().map(|generation| (*group, generation)))
            .collect();
        self.resync(begun);
    }

    /// Compares every feed's `last` with its group's newest id in PostgreSQL (one query) and
    /// re-reads those still behind what the previous check saw (an event merely in flight
    /// through the broker is not a reason to read).
    async fn check_feeds(self) {
        if self.0.checking.replace(true) {
            return;
        }
        let groups: Vec<GroupId> = self.0.subscribers.borrow().rooms.keys().copied().collect();
        if !groups.is_empty() {
            match store::newest_events(&self.0.pg, &groups).await {
                Ok(newest) => {
                    let behind: Vec<(GroupId, u64)> = {
                        let mut subs = self.0.subscribers.borrow_mut();
                        newest
                            .into_iter()
                            .filter_map(|(group, newest)| {
                                let feed = subs.rooms.get_mut(&group)?;
                                let suspect = std::mem::replace(&mut feed.suspect, newest);
                                (suspect > feed.last)
                                    .then(|| {
                                        feed.begin_sync().map(|generation| (group, generation))
                                    })
                                    .flatten()
                            })
                            .collect()
                    };
                    for _ in &behind {
                        metrics::chat_event("behind");
                    }
                    self.resync(behind);
                }
                Err(e) => {
                    tracing::debug!(error = %crate::error::ErrorChain(&e), "chat feed check failed")
                }
            }
        }
        self.0.checking.set(false);
    }

    fn room_sinks(&self) -> Vec<Sink> {
        self.0
            .subscribers
            .borrow()
            .rooms
            .values()
            .flat_map(|feed| feed.seats.values().map(|seat| seat.sink.clone()))
            .collect()
    }

    fn close_rooms(&self) {
        for sink in &self.room_sinks() {
            ws::close(sink, CloseCode::Away, ws::GOING_AWAY);
        }
    }

    /// A ping on every room socket, through the same send bound as events.
    fn ping_rooms(&self) {
        for sink in &self.room_sinks() {
            ws::deliver(sink, Message::Ping(Default::default()), self.0.max_pending);
        }
    }
}

/// Re-reads a feed's group from PostgreSQL after its `last` until it has caught up with
/// everything it was told of, releasing in id order; retries while PostgreSQL is unreachable.
async fn resync_feed(hub: Hub, group: GroupId, generation: u64) {
    let current = |subs: &Subscribers| {
        subs.rooms
            .get(&group)
            .filter(|feed| feed.generation == generation)
            .map(|feed| feed.last)
    };
    let mut retry = RETRY;
    loop {
        let Some(after) = current(&hub.0.subscribers.borrow()) else {
            return;
        };
        let page = match store::events_after(&hub.0.pg, &[group], Since::new(after), i64::MAX).await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), group = group.get(), retry_in = ?retry, "chat feed re-read failed");
                if hub.0.shutdown.is_stopping() {
                    return;
                }
                ntex::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let mut out = Outbox::new();
        let done = {
            let mut subs = hub.0.subscribers.borrow_mut();
            let Some(feed) = subs
                .rooms
                .get_mut(&group)
                .filter(|feed| feed.generation == generation)
            else {
                return;
            };
            for event in &page {
                if event.position.is_some_and(|at| at.seq > feed.last) {
                    metrics::chat_event("reread");
                    feed.release(event, &mut out);
                }
            }
            feed.drain_held(&mut out);
            let done = (page.len() as i64) < store::EVENT_PAGE && feed.in_order();
            if done {
                feed.syncing = false;
            }
            done
        };
        hub.write(out);
        if done {
            return;
        }
    }
}

/// Sends a seat the events of its group after `since`, page by page at the pace its client
/// reads, then turns it live in one step (no await between the last check and the switch).
async fn catch_up(hub: Hub, group: GroupId, key: u64, epoch: u64, mut cursor: Since) {
    loop {
        let page = match store::events_after(&hub.0.pg, &[group], cursor, i64::MAX).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), group = group.get(), "chat catch-up failed");
                if let Some(sink) = hub.catching_up(group, key, epoch) {
                    ws::close(&sink, CloseCode::Error, NO_HISTORY);
                }
                return;
            }
        };
        for event in &page {
            let Some(sink) = hub.catching_up(group, key, epoch) else {
                return;
            };
            if !paced(&sink, event.frame.clone(), hub.0.max_pending).await {
                return;
            }
            metrics::chat_event("replayed");
            if let Some(at) = event.position {
                cursor = Since::new(at.seq);
            }
        }
        let mut subs = hub.0.subscribers.borrow_mut();
        let Some(feed) = subs.rooms.get_mut(&group) else {
            return;
        };
        let full = page.len() as i64 >= store::EVENT_PAGE;
        let last = feed.last;
        let Some(seat) = feed.seats.get_mut(&key).filter(|s| s.epoch == epoch) else {
            return;
        };
        if !full && cursor.get() >= last {
            seat.live = Some(cursor.get());
            return;
        }
    }
}

/// Queues `frame` once the client has read at least half of what it may leave unread; `false`
/// when the socket is gone, or was closed because the client stopped reading.
async fn paced(sink: &Sink, frame: ByteString, max_pending: usize) -> bool {
    let started = Instant::now();
    loop {
        match sink.io().with_write_buf(|buf| buf.len()) {
            Err(_) => return false,
            Ok(pending) if pending <= max_pending / 2 => break,
            Ok(_) if started.elapsed() > CATCH_UP_STALL => {
                ws::close(sink, CloseCode::Policy, ws::TOO_SLOW);
                return false;
            }
            Ok(_) => ntex::time::sleep(Duration::from_millis(10)).await,
        }
    }
    ws::deliver(sink, Message::Text(frame), max_pending) == ws::Delivery::Queued
}

/// Hands every event the process receives to this worker's subscribers until the replica stops,
/// then closes its room sockets with 1001. Also re-reads the feeds when the broker link comes
/// back or this worker fell behind, and checks them every [`CHECK_EVERY`].
async fn dispatcher(hub: Hub, mut events: broadcast::Receiver<Arc<Event>>) {
    let shutdown = hub.0.shutdown.clone();
    let _guard = shutdown.guard();
    let stopped = shutdown.stopped();
    tokio::pin!(stopped);
    let mut links = hub.0.fanout.links();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            event = events.recv() => match event {
                Ok(event) => hub.deliver(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::chat_events_lost(missed);
                    tracing::warn!(missed, "chat events skipped: this worker fell behind; re-reading its rooms");
                    hub.resync_all();
                }
                // The fan-out lives as long as the process; gone means stopping.
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = links.changed() => {
                if changed.is_err() {
                    break;
                }
                hub.resync_all();
            }
            _ = check.tick() => {
                ntex::rt::spawn(hub.clone().check_feeds()).detach();
            }
            _ = ping.tick() => hub.ping_rooms(),
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

impl RoomSeat {
    /// The client's resume frame: replay from `since`, then live again.
    pub fn resume(&self, since: Since) {
        self.hub.resume(self.group, self.key, since);
    }
}

impl Drop for RoomSeat {
    fn drop(&mut self) {
        let mut subs = self.hub.0.subscribers.borrow_mut();
        if let Some(feed) = subs.rooms.get_mut(&self.group) {
            feed.seats.remove(&self.key);
            if feed.seats.is_empty() {
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
