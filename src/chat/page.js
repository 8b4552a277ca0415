// Arena chat in a browser: the same API any client uses (docs/API.md §4 and §5), no framework
// and no build step. URLs are root-relative, so the page works through nginx on any port and on
// one replica's own port alike.
'use strict';

const $ = (id) => document.getElementById(id);

/** Reconnect delays: 0.5 s doubling up to 15 s, so a replica that is restarting is not hammered. */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15000;
/** nginx closes a proxied socket that stays quiet for proxy_read_timeout (75 s), and a room
 * only speaks when something happens; a frame from us restarts that timer (the server ignores
 * it). */
const KEEPALIVE_MS = 30000;
/** The newest page read when a room opens or its socket comes back. */
const PAGE_SIZE = 50;

// sessionStorage, not localStorage: each tab keeps its own login, so two tabs can be two users.
const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem('arena.chat.session')); } catch { return null; }
  },
  set(value) {
    if (value) sessionStorage.setItem('arena.chat.session', JSON.stringify(value));
    else sessionStorage.removeItem('arena.chat.session');
  },
};

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function api(method, path, body) {
  const headers = {};
  const me = session.get();
  if (me) headers.Authorization = `Bearer ${me.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'no answer from the server (network error)');
  }
  // Every error of the API is JSON ({"error", "field"?}); anything else still gets its status shown.
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`, data?.field);
  }
  return data;
}

function showError(what, e) {
  const box = $('error');
  box.className = '';
  if (!e) {
    box.hidden = true;
    return;
  }
  const where = [e.field && `field ${e.field}`, e.status && `HTTP ${e.status}`].filter(Boolean).join(', ');
  box.textContent = `${what}: ${e.message}${where ? ` (${where})` : ''}`;
  box.hidden = false;
}

function showWarning(text) {
  showError();
  $('error').textContent = text;
  $('error').className = 'warning';
  $('error').hidden = false;
}

/** Runs a user's action, showing what went wrong instead of failing silently. */
async function attempt(what, action) {
  showError();
  try {
    return await action();
  } catch (e) {
    // A token that stopped working (expired, or its user deleted) cannot be fixed by retrying.
    if (e.status === 401 && session.get()) signOut();
    showError(what, e);
  }
}

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// ---- signing in -------------------------------------------------------------------------

function credentials() {
  return { username: $('username').value.trim(), password: $('password').value };
}

async function logIn({ username, password }) {
  const r = await api('POST', '/login', { username, password });
  session.set({ token: r.token, userId: r.user_id, username });
  $('password').value = '';
  enter();
}

$('auth-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  attempt('Log in failed', () => logIn(credentials()));
});

$('register').addEventListener('click', () => {
  if (!$('auth-form').reportValidity()) return;
  attempt('Registration failed', async () => {
    const c = credentials();
    await api('POST', '/register', c);
    await logIn(c);
  });
});

$('logout').addEventListener('click', () => { showError(); signOut(); });

function signOut() {
  closeRoom();
  session.set(null);
  sessionStorage.removeItem('arena.chat.room');
  $('app').hidden = true;
  $('logout').hidden = true;
  $('whoami').textContent = '';
  $('auth').hidden = false;
}

function enter() {
  const me = session.get();
  $('auth').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  $('whoami').textContent = `${me.username} (#${me.userId})`;
  attempt('Loading your groups failed', async () => {
    await loadGroups();
    const last = Number(sessionStorage.getItem('arena.chat.room'));
    if (last) openRoom(last);
  });
}

// ---- groups -----------------------------------------------------------------------------

let groups = [];

async function loadGroups() {
  const r = await api('GET', `/chats?userId=${session.get().userId}`);
  groups = r.chats;
  renderGroups();
}

function renderGroups() {
  $('groups').replaceChildren(...groups.map((g) => {
    const open = element('button', { type: 'button' }, g.name, element('span', { class: 'muted' }, ` #${g.id} · ${g.members.length} members`));
    open.addEventListener('click', () => openRoom(g.id));
    return element('li', { 'data-id': g.id, class: room?.id === g.id ? 'current' : '' }, open);
  }));
}

$('reload-groups').addEventListener('click', () => attempt('Loading your groups failed', loadGroups));

$('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  attempt('Creating the group failed', async () => {
    const members = $('group-members').value.split(/[\s,]+/).filter(Boolean);
    const r = await api('POST', '/create-chat', {
      groupName: $('group-name').value.trim(),
      creatorId: session.get().userId,
      members,
    });
    $('group-name').value = '';
    $('group-members').value = '';
    await loadGroups();
    openRoom(r.group_id);
    if (r.warning) showWarning(`Group created. ${r.warning}`);
  });
});

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  attempt('Joining the group failed', async () => {
    const id = $('join-id').value.trim();
    if (!/^[1-9][0-9]*$/.test(id)) throw new ApiError(0, 'a group id is a positive whole number', 'group id');
    await api('POST', `/chats/${id}/members`, { userId: session.get().userId });
    $('join-id').value = '';
    await loadGroups();
    openRoom(Number(id));
  });
});

// ---- the open room ----------------------------------------------------------------------

/** The open group: its messages by id, its socket and its reconnect state. */
let room = null;

function openRoom(id) {
  closeRoom();
  showError();
  const group = groups.find((g) => g.id === id);
  // `seq`: the newest event of the group this page has (a message id, or a deletion's seq); a
  // reopened socket asks for what came after it.
  room = { id, messages: new Map(), deleted: new Set(), seq: null, socket: null, failures: 0, timer: 0 };
  sessionStorage.setItem('arena.chat.room', String(id));
  $('room').dataset.group = String(id);
  $('room-title').textContent = group ? `${group.name} #${id}` : `group #${id}`;
  $('room-members').textContent = group ? `members: ${group.members.map((m) => m.username).join(', ')}` : '';
  $('notice').textContent = '';
  $('content').disabled = false;
  $('send').disabled = false;
  renderGroups();
  renderMessages();
  connect(room);
}

function closeRoom() {
  if (!room) return;
  const { socket, timer } = room;
  room = null;
  clearTimeout(timer);
  socket?.close();
  delete $('room').dataset.group;
  $('room-title').textContent = 'No group open';
  $('room-members').textContent = '';
  $('content').disabled = true;
  $('send').disabled = true;
  setStatus('offline');
  renderMessages();
}

function setStatus(text) {
  const status = $('status');
  status.textContent = text;
  status.dataset.state = text.split(' ')[0];
}

// The first socket is opened before the page is read: an event landing between the two is then
// in one or both, and merging by id keeps exactly one copy. A reopened socket asks for every event
// after the newest one held (`?since=`): the server replays them, deletions included, then goes
// live, so nothing is missed however long it was down and nothing needs re-reading.
function connect(r) {
  setStatus(r.failures ? 'reconnecting' : 'connecting');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const token = encodeURIComponent(session.get().token);
  const since = r.seq === null ? '' : `&since=${r.seq}`;
  const ws = new WebSocket(`${scheme}//${location.host}/ws/updates/${r.id}?token=${token}${since}`);
  r.socket = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    r.failures = 0;
    setStatus('live');
    if (r.seq === null) catchUp(r);
  };
  ws.onmessage = (ev) => onEvent(r, JSON.parse(ev.data));
  ws.onclose = async () => {
    if (room !== r || r.socket !== ws) return; // we closed it: another room, or signed out
    r.socket = null;
    setStatus('disconnected');
    // A browser hides why an upgrade was refused; reading the page tells a lasting refusal
    // (not a member, no such group, token expired) from a passing one (replica restarting).
    if (!opened && !(await catchUp(r, true))) {
      setStatus('offline');
      return;
    }
    if (room !== r) return;
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** r.failures);
    r.failures += 1;
    // Jitter, so the tabs of a replica that went away do not all come back at the same instant.
    const wait = delay / 2 + Math.random() * delay / 2;
    setStatus(`reconnecting in ${(wait / 1000).toFixed(1)} s`);
    r.timer = setTimeout(() => { if (room === r) connect(r); }, wait);
  };
}

/** Reads the newest page and merges it; false when retrying cannot help. `probing`: the read
 * only asks why a socket was refused, and a passing failure already shows in the status. */
async function catchUp(r, probing = false) {
  try {
    const page = await api('GET', `/messages?groupId=${r.id}&limit=${PAGE_SIZE}`);
    if (room !== r) return false;
    mergePage(r, page);
    // First read: every event up to the page's newest message is in the page or older than it.
    // Later reads (probing a refused socket) leave `seq` alone: a deletion of a message older
    // than the page may lie between the two, and only the socket's replay brings it.
    if (r.seq === null) {
      r.seq = page.messages.length ? page.messages[page.messages.length - 1].id : 0;
    }
    return true;
  } catch (e) {
    if (room !== r) return false;
    const lasting = [401, 403, 404].includes(e.status);
    if (e.status === 401) signOut();
    if (lasting || !probing) showError('Reading the messages failed', e);
    return !lasting;
  }
}

/** Merges the newest page: within its range (the whole history when `next` is null, else its
 * oldest id up to its newest) the page is the truth, so what is held there but missing from it
 * was deleted while the socket was down. Newer messages held came after the read and stay. */
function mergePage(r, page) {
  const ids = new Set(page.messages.map((m) => m.id));
  if (ids.size) {
    const low = page.next === null ? -Infinity : page.messages[0].id;
    const high = page.messages[page.messages.length - 1].id;
    for (const id of r.messages.keys()) {
      if (id >= low && id <= high && !ids.has(id)) r.messages.delete(id);
    }
  }
  add(r, page.messages);
}

/** Keeps one copy per id, whichever way a message arrived (post answer, event, page). */
function add(r, messages) {
  for (const m of messages) {
    if (!r.deleted.has(m.id)) r.messages.set(m.id, m);
  }
  renderMessages();
}

function onEvent(r, ev) {
  if (room !== r) return;
  if (typeof ev.seq === 'number' && r.seq !== null) r.seq = Math.max(r.seq, ev.seq);
  switch (ev.type) {
    case 'message.created':
      add(r, [ev.message]);
      break;
    case 'message.deleted':
      r.deleted.add(ev.id);
      r.messages.delete(ev.id);
      renderMessages();
      break;
    case 'member.joined': {
      $('notice').textContent = `${ev.user.username} joined`;
      const group = groups.find((g) => g.id === r.id);
      if (group && !group.members.some((m) => m.id === ev.user.id)) {
        group.members.push(ev.user);
        $('room-members').textContent = `members: ${group.members.map((m) => m.username).join(', ')}`;
        renderGroups();
      }
      break;
    }
    case 'notify':
      $('notice').textContent = `notification for group ${ev.group} at ${new Date().toLocaleTimeString()}`;
      break;
  }
}

function renderMessages() {
  const list = $('messages');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
  const me = session.get()?.userId;
  const sorted = room ? [...room.messages.values()].sort((a, b) => a.id - b.id) : [];
  list.replaceChildren(...sorted.map((m) => {
    const when = new Date(m.timestamp);
    const item = element('li', { 'data-id': m.id, class: m.sender.id === me ? 'mine' : '' },
      element('span', { class: 'who' }, m.sender.username),
      element('time', { datetime: m.timestamp, title: when.toLocaleString() },
        when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
      element('p', { class: 'text' }, m.content));
    if (m.sender.id === me) {
      const remove = element('button', { type: 'button', class: 'delete', title: 'delete this message' }, '×');
      remove.addEventListener('click', () => attempt('Deleting the message failed', async () => {
        await api('DELETE', `/messages/${m.id}`);
        if (room) onEvent(room, { type: 'message.deleted', id: m.id });
      }));
      item.append(remove);
    }
    return item;
  }));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

$('compose').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const r = room;
  if (!r) return;
  $('send').disabled = true;
  attempt('Sending failed', async () => {
    const m = await api('POST', '/messages', { userId: session.get().userId, groupId: r.id, content: $('content').value });
    $('content').value = '';
    if (room === r) add(r, [m]);
  }).finally(() => {
    $('send').disabled = !room;
    $('content').focus();
  });
});

setInterval(() => {
  if (room?.socket?.readyState === WebSocket.OPEN) room.socket.send('keepalive');
}, KEEPALIVE_MS);

// For the console and the browser test: drop the socket as a network failure would, and see
// which URL the socket was (re)opened with.
window.arenaChat = {
  dropSocket: () => room?.socket?.close(4000, 'dropped by hand'),
  socketUrl: () => room?.socket?.url ?? null,
};

api('GET', '/ping')
  .then((r) => { $('replica').textContent = `replica ${r.instance}`; })
  .catch(() => {});

if (session.get()) enter();
else $('auth').hidden = false;
