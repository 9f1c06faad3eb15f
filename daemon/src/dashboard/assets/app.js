// The dashboard's script: reads the /v1 API with the login's cookie, sends the login's CSRF
// token with every change, and redraws its tables every few seconds; the clients' table also
// at once when the daemon's event stream tells of a change. No library, no build.
'use strict';

const csrf = document.querySelector('meta[name=csrf-token]').content;
const CLIENTS_PAGE = 25;
// The clients' states come with the event stream; this poll is for what has no event: the
// rates and the data and time left.
const CLIENTS_EVERY_MS = 5000;
// Rates are measured over at least this long: a refresh an event asked for may come a moment
// after the last one, when the counters have not moved yet.
const RATE_OVER_MS = 1500;
const HEALTH_EVERY_MS = 5000;
const LISTS_EVERY_MS = 10000;
const CHARTS_EVERY_MS = 60000;
const TYPES = ['time', 'data', 'time_or_data'];

// ---- helpers ---------------------------------------------------------------------------

// An element with attributes and children (text is set as text, never parsed as HTML).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === 'onclick') node.addEventListener('click', value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ''));
  }
  return node;
}

function problem(message) {
  const box = document.getElementById('problem');
  box.textContent = message || '';
  box.hidden = !message;
}

// Calls the API; answers the parsed JSON (or the text, or the response for headers).
async function api(method, path, body, want = 'json') {
  const headers = { 'X-CSRF-Token': csrf };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.href = '/dashboard/login';
    throw new Error('the login ended');
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  if (want === 'response') return response;
  if (want === 'text') return response.text();
  return response.status === 204 ? null : response.json();
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}`;
}

function rate(bytesPerSecond) {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(0)} kbit/s`;
  return `${bits.toFixed(0)} bit/s`;
}

function stateBadge(state) {
  return el('span', { class: `state ${state}` }, state);
}

// What a session has left: seconds when its time counts, MB when its data counts.
function left(session) {
  const kind = TYPES[session.type] || session.type;
  return {
    seconds: kind === 'data' ? null : Math.max(0, session.time_secs - session.time_cons),
    mb: kind === 'time' ? null : Math.max(0, session.data_mb - session.data_cons),
  };
}

function timeCell(remaining) {
  return remaining && remaining.seconds !== null
    ? el('td', { class: 'num time-left', 'data-seconds': remaining.seconds }, duration(remaining.seconds))
    : el('td', { class: 'num time-left' }, '–');
}

function dataCell(remaining) {
  return remaining && remaining.mb !== null
    ? el('td', { class: 'num data-left', 'data-mb': remaining.mb.toFixed(3) }, `${remaining.mb.toFixed(2)} MB`)
    : el('td', { class: 'num data-left' }, '–');
}

// ---- clients ---------------------------------------------------------------------------

// `shown`: the MACs in the table, and whether the page had room for more.
const clients = { offset: 0, total: 0, seen: new Map(), asked: 0, shown: new Set(), full: false };

// The rates down and up (bytes a second) of `client`, measured since the refresh before.
function rates(client, now) {
  const before = clients.seen.get(client.mac);
  if (before && now - before.at < RATE_OVER_MS) return before;
  const seconds = before ? (now - before.at) / 1000 : 0;
  const measured = {
    down: before && seconds > 0 ? Math.max(0, (client.down_bytes - before.downBytes) / seconds) : 0,
    up: before && seconds > 0 ? Math.max(0, (client.up_bytes - before.upBytes) / seconds) : 0,
    downBytes: client.down_bytes, upBytes: client.up_bytes, at: now,
  };
  clients.seen.set(client.mac, measured);
  return measured;
}

async function loadClients() {
  // Refreshes overlap (the poll, an event, a click): only the latest asked draws the table, so
  // a slower, older answer never puts back a state the page already moved past.
  const asked = ++clients.asked;
  const query = new URLSearchParams({ offset: clients.offset, limit: CLIENTS_PAGE });
  const search = document.getElementById('search').value.trim();
  const state = document.getElementById('state').value;
  if (search) query.set('search', search);
  if (state) query.set('state', state);
  const response = await api('GET', `/v1/clients?${query}`, undefined, 'response');
  const list = await response.json();
  clients.total = Number(response.headers.get('X-Total-Count') || list.length);
  // Only the page's clients with a session are asked about: a page, not the crowd. A connected
  // client's is the one it runs; a paused client's, the one it would resume (shown paused).
  const sessions = await Promise.all(list.map((client) => client.state === 'disconnected'
    ? null
    : api('GET', `/v1/sessions?state=live&mac=${encodeURIComponent(client.mac)}`)
      .then((all) => all.find((session) => (client.session_id === null
        ? session.state === 'paused'
        : session.id === client.session_id)) || null)
      .catch(() => null)));
  if (asked !== clients.asked) return;
  clients.shown = new Set(list.map((client) => client.mac));
  clients.full = list.length >= CLIENTS_PAGE;
  const now = performance.now();
  const rows = list.map((client, at) => {
    const { down, up } = rates(client, now);
    const remaining = sessions[at] ? left(sessions[at]) : null;
    const actions = el('td', {},
      el('button', { type: 'button', class: 'sell', onclick: () => sellTo(client.mac) }, 'Sell'));
    if (client.state === 'connected') {
      actions.append(' ', el('button', { type: 'button', class: 'pause', onclick: () => clientAction(client.mac, 'pause') }, 'Pause'));
    } else if (client.state === 'paused') {
      actions.append(' ', el('button', { type: 'button', class: 'connect', onclick: () => clientAction(client.mac, 'connect') }, 'Resume'));
    }
    return el('tr', { 'data-mac': client.mac, 'data-state': client.state },
      el('td', {}, el('code', {}, client.mac)),
      el('td', {}, client.ips.join(', ')),
      el('td', {}, stateBadge(client.state)),
      timeCell(remaining),
      dataCell(remaining),
      el('td', { class: 'num' }, rate(down)),
      el('td', { class: 'num' }, rate(up)),
      el('td', {}, client.down_mbits === null ? '–' : `${client.down_mbits}/${client.up_mbits} Mbit/s`),
      actions);
  });
  document.getElementById('clients-rows').replaceChildren(...rows);
  document.getElementById('clients-total').textContent = `${clients.total} in all`;
  const last = Math.min(clients.offset + list.length, clients.total);
  document.getElementById('page').textContent =
    clients.total ? `${clients.offset + 1}–${last} of ${clients.total}` : 'no clients';
  document.getElementById('previous').disabled = clients.offset === 0;
  document.getElementById('next').disabled = last >= clients.total;
}

async function clientAction(mac, action) {
  try {
    await api('POST', `/v1/clients/${encodeURIComponent(mac)}/${action}`);
    problem('');
  } catch (error) {
    problem(`${action} ${mac}: ${error.message}`);
  }
  refresh(loadClients);
}

function sellTo(mac) {
  document.getElementById('sell-mac').value = mac;
  document.getElementById('sessions-mac').value = mac;
  document.getElementById('sessions').scrollIntoView();
  document.getElementById('sell-minutes').focus();
  refresh(loadSessions);
}

// ---- live: the event stream -----------------------------------------------------------

// After a drop (the daemon restarts) the page reconnects after this, doubled at each failure
// up to the most; the browser's own retry would not back off, and gives up after a refusal.
const LIVE_RETRY_FIRST_MS = 500;
const LIVE_RETRY_MOST_MS = 10000;
// Events come in bursts (a session started, the client connected): one refresh for a burst.
const EVENTS_SETTLE_MS = 100;
const live = { retryMs: LIVE_RETRY_FIRST_MS, soon: null };

function liveState(state) {
  const badge = document.getElementById('live');
  badge.textContent = state;
  badge.dataset.state = state;
}

// Refreshes the clients' page shortly, once for however many events arrive meanwhile.
function clientsSoon() {
  if (live.soon !== null) return;
  live.soon = setTimeout(() => {
    live.soon = null;
    refresh(loadClients);
  }, EVENTS_SETTLE_MS);
}

// Whether an event can change the table: it names a client shown, or the page had room for
// one more (a client sold its first session appears), or the page is filtered by state (a
// client enters or leaves it), or events were missed. The listing is in MAC order, so a
// change of state moves nobody on an unfiltered page; at 10,000 clients the events of the
// others do not refresh the page (the poll counts them in).
function concernsTable(message) {
  let record;
  try { record = JSON.parse(message.data); } catch (_) { return true; }
  if (record.event === 'missed' || !clients.full) return true;
  if (document.getElementById('state').value) return true;
  return [record.mac, record.from, record.to].some((mac) => mac && clients.shown.has(mac));
}

function listen() {
  const source = new EventSource('/dashboard/events');
  source.addEventListener('open', () => {
    live.retryMs = LIVE_RETRY_FIRST_MS;
    liveState('live');
    // What changed while the stream was down.
    clientsSoon();
  });
  source.addEventListener('message', (message) => {
    if (concernsTable(message)) clientsSoon();
  });
  source.addEventListener('error', () => {
    // Dropped, refused (too many streams) or sent to the login form (the stream cannot
    // tell which): a refresh of the table shows the daemon's problem, or finds the login
    // ended and goes to the form; then the stream is tried again, less and less often.
    source.close();
    liveState('reconnecting');
    clientsSoon();
    setTimeout(listen, live.retryMs);
    live.retryMs = Math.min(live.retryMs * 2, LIVE_RETRY_MOST_MS);
  });
}

// ---- sessions --------------------------------------------------------------------------

const SESSIONS_SHOWN = 200;
// A Remove asked for (first click) and when: the list re-renders every few seconds, and the
// question must survive that, or the operator's second click only asks again.
const removalsAsked = new Map();
const REMOVAL_ASKED_MS = 10000;

function removalAsked(id) {
  const at = removalsAsked.get(id);
  if (at !== undefined && Date.now() - at < REMOVAL_ASKED_MS) return true;
  removalsAsked.delete(id);
  return false;
}

async function loadSessions() {
  const mac = document.getElementById('sessions-mac').value.trim();
  // The live sessions first, then the history, most recently ended first (the server's order).
  const query = new URLSearchParams({ limit: SESSIONS_SHOWN });
  if (mac) query.set('mac', mac);
  const response = await api('GET', `/v1/sessions?${query}`, undefined, 'response');
  const shown = await response.json();
  const total = Number(response.headers.get('X-Total-Count') || shown.length);
  const rows = shown.map((session) => {
    const remaining = left(session);
    const asked = removalAsked(session.id);
    const remove = el('button', { type: 'button', class: 'remove', 'data-sure': asked ? 'yes' : 'no' },
      asked ? 'Remove, sure?' : 'Remove');
    remove.addEventListener('click', async () => {
      // Two clicks: the first asks, the second removes.
      if (!removalAsked(session.id)) {
        removalsAsked.set(session.id, Date.now());
        remove.dataset.sure = 'yes';
        remove.textContent = 'Remove, sure?';
        return;
      }
      removalsAsked.delete(session.id);
      try {
        await api('DELETE', `/v1/sessions/${session.id}`);
        problem('');
      } catch (error) {
        problem(`remove session ${session.id}: ${error.message}`);
      }
      refresh(loadSessions);
      refresh(loadClients);
    });
    return el('tr', { 'data-session': session.id },
      el('td', { class: 'num' }, session.id),
      el('td', {}, el('code', {}, session.mac)),
      el('td', {}, session.provider),
      el('td', {}, TYPES[session.type] || session.type),
      el('td', {}, stateBadge(session.state)),
      timeCell(remaining),
      dataCell(remaining),
      el('td', {}, new Date(session.created_at).toLocaleString()),
      // History (ended and saved) is kept, not removed: it is pruned after history.daily_days.
      el('td', {}, session.ended_at ? '' : remove));
  });
  document.getElementById('sessions-rows').replaceChildren(...rows);
  document.getElementById('sessions-total').textContent =
    total > shown.length ? `${shown.length} of ${total}` : `${total}`;
}

function number(id) {
  const value = document.getElementById(id).value.trim();
  return value === '' ? null : Number(value);
}

// Only the limits the type counts: the API refuses a time on a data session and the reverse.
function limits(body, minutesId, dataId) {
  if (body.type !== 'data') body.time_secs = Math.round((number(minutesId) || 0) * 60);
  if (body.type !== 'time') body.data_mb = number(dataId) || 0;
}

async function sell(event) {
  event.preventDefault();
  const result = document.getElementById('sell-result');
  const down = number('sell-down'), up = number('sell-up');
  const body = {
    mac: document.getElementById('sell-mac').value.trim(),
    type: document.getElementById('sell-type').value,
    connect: document.getElementById('sell-connect').checked,
    provider: 'dashboard',
  };
  limits(body, 'sell-minutes', 'sell-data');
  if (down === null && up === null) body.use_global_speed = true;
  else { body.down_mbits = down || 0; body.up_mbits = up || 0; }
  const price = document.getElementById('sell-price').value.trim();
  if (price) body.price = price;
  try {
    const session = await api('POST', '/v1/sessions', body);
    result.className = 'result';
    result.textContent = `Sold session ${session.id} to ${session.mac} (${session.state}).`;
  } catch (error) {
    result.className = 'result error';
    result.textContent = `Not sold: ${error.message}`;
  }
  refresh(loadClients);
  refresh(loadSessions);
}

// ---- vouchers --------------------------------------------------------------------------

const VOUCHERS_SHOWN = 50;

function plan(plan) {
  const parts = [];
  const kind = TYPES[plan.type] || plan.type;
  if (kind !== 'data') parts.push(duration(plan.time_secs));
  if (kind !== 'time') parts.push(`${plan.data_mb} MB`);
  return parts.join(' or ');
}

async function loadVouchers() {
  const all = await api('GET', '/v1/vouchers');
  all.sort((a, b) => b.id - a.id);
  const rows = all.slice(0, VOUCHERS_SHOWN).map((voucher) => el('tr', {},
    el('td', { class: 'num' }, voucher.id),
    el('td', {}, stateBadge(voucher.state)),
    el('td', { class: 'num' }, `${voucher.devices}/${voucher.max_devices}`),
    el('td', {}, plan(voucher.plan)),
    el('td', {}, voucher.valid_until ? voucher.valid_until.slice(0, 10) : '–'),
    el('td', {}, voucher.mac || '–')));
  document.getElementById('vouchers-rows').replaceChildren(...rows);
  document.getElementById('vouchers-total').textContent =
    `(${Math.min(all.length, VOUCHERS_SHOWN)} of ${all.length})`;
}

async function createVouchers(event) {
  event.preventDefault();
  const result = document.getElementById('voucher-result');
  const body = {
    count: number('voucher-count') || 0,
    type: document.getElementById('voucher-type').value,
    max_devices: number('voucher-devices') || 1,
    use_global_speed: true,
  };
  limits(body, 'voucher-minutes', 'voucher-data');
  const until = document.getElementById('voucher-until').value;
  if (until) body.valid_until = until;
  const price = document.getElementById('voucher-price').value.trim();
  if (price) body.price = price;
  try {
    const sheet = await api('POST', '/dashboard/vouchers/sheet', body, 'text');
    document.getElementById('sheet').srcdoc = sheet;
    document.getElementById('sheet-box').hidden = false;
    result.className = 'result';
    result.textContent = `Created ${body.count} vouchers. Their codes are on this sheet only: print it now.`;
  } catch (error) {
    result.className = 'result error';
    result.textContent = `Not created: ${error.message}`;
  }
  refresh(loadVouchers);
}

// ---- health ----------------------------------------------------------------------------

function card(label, value, bad) {
  return el('div', { class: bad ? 'bad' : '' }, el('b', {}, value), label);
}

async function loadHealth() {
  const status = await api('GET', '/v1/status');
  const kernel = status.kernel;
  const drops = kernel.dropped_no_session_packets + kernel.dropped_budget_packets
    + kernel.dropped_deadline_packets + kernel.dropped_group_destination_packets;
  const degraded = status.storage.state !== 'ok';
  document.getElementById('health-cards').replaceChildren(
    card('store', degraded ? `degraded: ${status.storage.error || ''}` : 'ok', degraded),
    card('LAN interface', status.lan_interface),
    card('clients', status.clients),
    card('sessions', status.sessions),
    card('dropped packets (no session / budget / deadline)',
      `${drops} (${kernel.dropped_no_session_packets} / ${kernel.dropped_budget_packets} / ${kernel.dropped_deadline_packets})`),
    card('malformed, lost events', `${kernel.malformed_packets}, ${kernel.events_lost}`,
      kernel.events_lost > 0),
    card('last poll, last save', `${status.last_poll_ms.toFixed(1)} ms, ${status.last_save_ms.toFixed(1)} ms`),
    card('version', status.version));
  const maps = status.kernel_maps.map((map) => {
    const share = map.capacity ? map.entries / map.capacity : 0;
    return el('tr', {},
      el('td', {}, map.map),
      el('td', { class: 'num' }, map.entries),
      el('td', { class: 'num' }, map.capacity),
      el('td', {}, el('span', { class: map.full ? 'fill full' : 'fill' },
        el('span', { style: `width:${(share * 100).toFixed(1)}%` })), ` ${(share * 100).toFixed(1)} %`));
  });
  document.getElementById('maps-rows').replaceChildren(...maps);
}

// ---- charts ----------------------------------------------------------------------------

function loadCharts() {
  const at = Date.now();
  const traffic = document.getElementById('traffic-days').value;
  const sales = document.getElementById('sales-days').value;
  document.getElementById('traffic-chart').src = `/dashboard/charts/traffic.svg?days=${traffic}&t=${at}`;
  document.getElementById('sales-chart').src = `/dashboard/charts/sales.svg?days=${sales}&t=${at}`;
  return Promise.resolve();
}

// ---- the loop --------------------------------------------------------------------------

// Runs a loader, showing what failed instead of the last good numbers silently.
async function refresh(loader) {
  try {
    await loader();
    document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    problem(error.message);
  }
}

function every(loader, milliseconds) {
  refresh(loader);
  setInterval(() => refresh(loader), milliseconds);
}

document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/dashboard/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' });
  window.location.href = '/dashboard/login';
});
document.getElementById('previous').addEventListener('click', () => {
  clients.offset = Math.max(0, clients.offset - CLIENTS_PAGE);
  refresh(loadClients);
});
document.getElementById('next').addEventListener('click', () => {
  if (clients.offset + CLIENTS_PAGE < clients.total) clients.offset += CLIENTS_PAGE;
  refresh(loadClients);
});
for (const id of ['search', 'state']) {
  document.getElementById(id).addEventListener('input', () => {
    clients.offset = 0;
    refresh(loadClients);
  });
}
document.getElementById('sessions-mac').addEventListener('change', () => refresh(loadSessions));
document.getElementById('sell').addEventListener('submit', sell);
document.getElementById('voucher-form').addEventListener('submit', createVouchers);
document.getElementById('print-sheet').addEventListener('click', () => {
  document.getElementById('sheet').contentWindow.print();
});
for (const id of ['traffic-days', 'sales-days']) {
  document.getElementById(id).addEventListener('change', loadCharts);
}

listen();
every(loadClients, CLIENTS_EVERY_MS);
every(loadHealth, HEALTH_EVERY_MS);
every(loadSessions, LISTS_EVERY_MS);
every(loadVouchers, LISTS_EVERY_MS);
setInterval(loadCharts, CHARTS_EVERY_MS);
