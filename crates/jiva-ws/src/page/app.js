// JivaChat's built-in chat page. Plain JavaScript, no build step, no dependencies.
//
// It speaks protocol v1 (docs/PROTOCOL-v1.md, subprotocol "jivachat.v1"): one socket per open
// chat at ws(s)://<this host>/?agentID=..&secondaryID=.., a {"type":"ping"} keepalive every 30 s.
// - Resume: the page keeps the highest sequence number shown and reconnects with &since=<it>, so
//   the server sends exactly what came after (nothing twice, nothing missed); a `reload` frame
//   clears the view and the `latest` page after it fills it again. Messages are ordered by `seq`
//   and de-duplicated by message_id.
// - Sending: each message gets a client id and shows at once as pending; the server's `ack`
//   marks it sent. A message typed while disconnected stays pending and is sent (with the same
//   client id: the server stores it once) when the socket is back.
// - History: the newest 50 come first (`latest`); scrolling to the top asks the `page` before the
//   oldest shown.
// - Presence and typing: who is in the chat (header), "… is typing" under the messages.
// - Copilot: `chunk` frames grow a bubble for their question, with a Stop button (`cancel`);
//   `turn_end` closes it; the stored answer arrives as a message.
// Message text is only ever set with textContent.
//
// When the server asks for a token (GET /auth-mode says {"token":"required"}), a token field is
// shown; the token is kept in sessionStorage (never in the URL fragment) and sent as ?token= on
// the socket URL. A browser cannot read why an upgrade failed, so before each socket the page
// makes a plain GET of the same URL: the server answers it 401/403 with a one-line reason when
// it would refuse the socket (shown to the user, and no retry), and 426 otherwise.
'use strict';

(() => {
  const KEEPALIVE_MS = 30000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const TOOL_STATUS = 'Processing Results\n';
  const AGENT_ID = /^[A-Za-z0-9._~-]{1,200}$/;
  const TOKEN_KEY = 'jiva.token';
  const SUBPROTOCOL = 'jivachat.v1';
  /** Messages asked per `page` request (the server caps it at 100). */
  const PAGE_LIMIT = 50;
  /** A `typing` is sent at most this often while the user types (the server relays one a second). */
  const TYPING_EVERY_MS = 1000;
  /** An indicator not renewed for this long is hidden. */
  const TYPING_TTL_MS = 5000;
  /** Close code of a socket whose token expired (jiva_ws::CLOSE_TOKEN_EXPIRED). */
  const CLOSE_TOKEN_EXPIRED = 4001;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    setup: $('setup'),
    agent: $('agent'),
    token: $('token'),
    tokenField: $('token-field'),
    refused: $('refused'),
    newAgent: $('new-agent'),
    toggleSetup: $('toggle-setup'),
    kind: $('kind'),
    as: $('as'),
    asField: $('as-field'),
    chat: $('chat'),
    list: $('messages'),
    empty: $('empty'),
    composer: $('composer'),
    text: $('text'),
    send: $('send'),
    presence: $('presence'),
    typing: $('typing'),
  };

  /** A random (v4) UUID, also outside secure contexts where crypto.randomUUID is missing. */
  function randomUuid() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function compareKeys(a, b) {
    return a[0] - b[0] || a[1] - b[1];
  }

  function formatTime([secs, nanos]) {
    const d = new Date(secs * 1000 + Math.floor(nanos / 1e6));
    const sameDay = d.toDateString() === new Date().toDateString();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
  }

  /** A new client id for a `send`: 1–64 bytes of [A-Za-z0-9._:-]. */
  function newClientId() {
    return `p-${randomUuid()}`;
  }

  /** The short form of a member id shown in the header. */
  function short(id) {
    return String(id).slice(0, 8);
  }

  /** One open chat: its socket, keepalive, reconnects, resume point and what it shows. */
  class ChatView {
    constructor({ agent, kind, as, keepaliveMs, token }) {
      this.agent = agent;
      this.token = token;
      this.kind = kind;
      this.as = kind === 'copilot' ? 'agent' : as;
      this.keepaliveMs = keepaliveMs;
      this.ws = null;
      this.stopped = false;
      this.attempt = 0;
      this.retryTimer = null;
      this.keepaliveTimer = null;
      /** The highest seq shown: the `since` of the next socket (null: none yet). */
      this.lastSeq = null;
      /** Stored messages in chat order: { key: [seq or -1, order], node, sender? }. */
      this.items = [];
      this.order = 0;
      /** message_id -> item, to drop replayed copies. */
      this.byId = new Map();
      /** client_id -> { node, text, frame, matched } of sends not acknowledged yet, oldest first. */
      this.pending = new Map();
      /** Whether older messages exist, and the `page` request in flight. */
      this.hasOlder = false;
      this.paging = null;
      /** question_id -> the copilot bubble growing for it. */
      this.turns = new Map();
      /** member key -> { member } present now; member key -> hide timer of a typing indicator. */
      this.members = new Map();
      this.typists = new Map();
      this.me = null;
      this.lastTypingSent = 0;
      this.everOpen = false;
      ui.list.replaceChildren();
      ui.presence.textContent = '';
      ui.typing.textContent = '';
      this.updateEmpty();
      this.onScroll = () => this.maybePage();
      ui.chat.addEventListener('scroll', this.onScroll);
      this.connect();
    }

    /** The chat's URL: `?agentID=..&secondaryID=..` (and `&token=..` when there is one). */
    query() {
      // Not URL-encoded, as the deployed client does; the id is checked to need no encoding.
      const chat = `/?agentID=${this.agent}&secondaryID=${this.kind}`;
      return this.token ? `${chat}&token=${encodeURIComponent(this.token)}` : chat;
    }

    url() {
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      const since = this.lastSeq === null ? '' : `&since=${this.lastSeq}`;
      return `${scheme}://${location.host}${this.query()}${since}`;
    }

    /**
     * With a token required: asks the server with a plain GET whether it would take the socket.
     * Resolves true to go on; false when refused (the reason is shown) or the check failed.
     */
    async admitted() {
      if (!authRequired) return true;
      let response;
      try {
        response = await fetch(this.query(), { cache: 'no-store', credentials: 'omit' });
      } catch (e) {
        this.scheduleReconnect(`cannot reach the server: ${e.message}`);
        return false;
      }
      if (this.stopped) return false;
      if ([400, 401, 403].includes(response.status)) {
        const reason = (await response.text()).trim() || `HTTP ${response.status}`;
        this.refuse(response.status, reason);
        return false;
      }
      if (response.status !== 426) {
        this.scheduleReconnect(`server answered ${response.status}`);
        return false;
      }
      return true;
    }

    /** The server refused this chat: say why, and wait for the user (a retry cannot help). */
    refuse(status, reason) {
      const what = status === 401 ? 'Not signed in' : status === 403 ? 'Not allowed' : 'Refused';
      setStatus('refused', `${what}: ${reason}`);
      ui.refused.textContent = `${what} (${status}): ${reason}`;
      ui.refused.hidden = false;
      this.setComposer(false);
      showSetup(true);
    }

    async connect() {
      this.retryTimer = null;
      if (this.stopped) return;
      setStatus('connecting', 'connecting…');
      if (!(await this.admitted()) || this.stopped) return;
      ui.refused.hidden = true;
      let ws;
      try {
        ws = new WebSocket(this.url(), [SUBPROTOCOL]);
      } catch (e) {
        this.scheduleReconnect(`cannot connect: ${e.message}`);
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        if (ws.protocol !== SUBPROTOCOL) {
          // A server without v1: this page cannot speak to it.
          this.ws = null;
          ws.close(1000);
          this.stopped = true;
          setStatus('refused', 'this server does not speak jivachat.v1');
          return;
        }
        this.attempt = 0;
        this.everOpen = true;
        setStatus('open', `connected · ${this.agent.slice(0, 8)} · ${this.kind}`);
        this.setComposer(true);
        this.keepaliveTimer = setInterval(() => this.keepalive(), this.keepaliveMs);
        // Sends not acknowledged yet go again, with their client ids: stored once whatever.
        for (const p of this.pending.values()) {
          if (!p.failed) ws.send(p.frame);
        }
      };
      ws.onmessage = (event) => {
        if (this.ws !== ws) return;
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (frame && typeof frame === 'object' && !Array.isArray(frame)) this.onFrame(frame);
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        clearInterval(this.keepaliveTimer);
        this.keepaliveTimer = null;
        // Typing to a closed socket queues as pending: the composer stays usable once open.
        this.setComposer(this.everOpen);
        // A stream cut by the close never gets its `turn_end`: drop the half answers. The stored
        // part, if any, comes with the resume.
        this.clearTurns();
        this.paging = null;
        this.members.clear();
        this.renderPresence();
        const why =
          event.code === CLOSE_TOKEN_EXPIRED
            ? 'token expired'
            : event.code === 1000 || event.code === 1005
              ? 'closed'
              : `closed (${event.code})`;
        this.scheduleReconnect(why);
      };
    }

    scheduleReconnect(why) {
      if (this.stopped) return;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
      const delay = Math.round(base / 2 + Math.random() * (base / 2));
      this.attempt += 1;
      setStatus('waiting', `${why}; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s`);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.retryTimer);
      clearInterval(this.keepaliveTimer);
      ui.chat.removeEventListener('scroll', this.onScroll);
      for (const timer of this.typists.values()) clearTimeout(timer);
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close(1000);
      this.setComposer(false);
      setStatus('idle', 'not connected');
    }

    /** Writes `frame` if the socket is open; false otherwise. */
    write(frame) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
      return true;
    }

    keepalive() {
      this.write({ type: 'ping' });
    }

    /** Shows `text` as pending at once and sends it (now, or when the socket is back). */
    send(text) {
      const clientId = newClientId();
      const frame = JSON.stringify({ type: 'send', ref: clientId, client_id: clientId, sender: this.as, text });
      const node = this.messageNode({ sender: this.as, text, mine: true, copilot: false });
      node.dataset.state = 'pending';
      node.dataset.clientId = clientId;
      node.querySelector('.meta').textContent = `${this.as} · sending…`;
      this.pending.set(clientId, { node, text, frame, matched: null, failed: false });
      ui.list.insertBefore(node, this.firstTurnNode());
      this.updateEmpty();
      this.scrollToEnd();
      this.write(frame);
      if (this.lastTypingSent) {
        this.lastTypingSent = 0;
        this.write({ type: 'typing', active: false });
      }
      return true;
    }

    /** The user typed: tell the chat, at most once a second. */
    typed() {
      const now = Date.now();
      if (now - this.lastTypingSent < TYPING_EVERY_MS) return;
      if (this.write({ type: 'typing', active: true })) this.lastTypingSent = now;
    }

    setSender(as) {
      if (this.kind === 'copilot') return;
      this.as = as;
      for (const item of this.items) {
        if (item.sender !== undefined) item.node.classList.toggle('mine', item.sender === as);
      }
    }

    setComposer(enabled) {
      ui.text.disabled = !enabled;
      ui.send.disabled = !enabled;
    }

    advance(seq) {
      if (Number.isInteger(seq) && (this.lastSeq === null || seq > this.lastSeq)) this.lastSeq = seq;
    }

    onFrame(frame) {
      switch (frame.type) {
        case 'welcome':
          this.me = frame.you || null;
          break;
        case 'latest':
          this.addMessages(frame.messages);
          this.hasOlder = frame.has_older === true;
          break;
        case 'message':
          this.addMessages([frame]);
          break;
        case 'live':
          this.advance(frame.seq);
          this.maybePage();
          break;
        case 'reload':
          this.clearView();
          break;
        case 'ack':
          this.acked(frame);
          break;
        case 'page':
          this.paged(frame);
          break;
        case 'chunk':
          this.growTurn(frame);
          break;
        case 'turn_end':
          this.endTurn(frame.question_id);
          break;
        case 'presence':
          this.members.clear();
          for (const m of Array.isArray(frame.members) ? frame.members : []) this.join(m);
          this.renderPresence();
          break;
        case 'presence_join':
          this.join(frame.member);
          this.renderPresence();
          break;
        case 'presence_leave':
          if (frame.member) this.members.delete(`${frame.member.role}:${frame.member.id}`);
          this.showTyping(frame.member, false);
          this.renderPresence();
          break;
        case 'typing':
          this.showTyping(frame.member, frame.active !== false);
          break;
        case 'error':
          this.failed(frame);
          break;
        default:
          break;
      }
    }

    /** A `reload`: the server cannot fill the gap; the `latest` that follows starts again. */
    clearView() {
      for (const item of this.items) item.node.remove();
      this.items = [];
      this.byId.clear();
      this.lastSeq = null;
      this.hasOlder = false;
      this.updateEmpty();
    }

    /** Stored messages (from `latest`, `message` or `page`), each shown once at its place. */
    addMessages(messages, keepScroll = false) {
      if (!Array.isArray(messages)) return;
      const c = ui.chat;
      const fromBottom = c.scrollHeight - c.scrollTop;
      const follow = !keepScroll && this.nearBottom();
      for (const m of messages) {
        if (!m || typeof m.message_id !== 'string') continue;
        if (!keepScroll) this.advance(m.seq);
        if (this.byId.has(m.message_id)) continue;
        this.addStored(m);
      }
      if (keepScroll) c.scrollTop = c.scrollHeight - fromBottom;
      else if (follow) this.scrollToEnd();
    }

    messageNode({ sender, text, mine, copilot, ts }) {
      const node = document.createElement('li');
      node.className = 'msg';
      node.classList.add(copilot ? 'copilot' : `from-${sender === 'supervisor' ? 'supervisor' : 'agent'}`);
      if (mine) node.classList.add('mine');
      node.dataset.sender = sender;
      const bubble = document.createElement('div');
      bubble.className = 'bubble';
      bubble.textContent = typeof text === 'string' ? text : '';
      const meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = ts === undefined ? sender : `${sender} · ${formatTime(ts)}`;
      node.append(bubble, meta);
      return node;
    }

    addStored(m) {
      const copilot = m.kind === 'copilot_answer' || m.sender === 'copilot';
      const sender = copilot ? 'Copilot' : String(m.sender);
      const mine = !copilot && sender === this.as;
      const ms = Number.isFinite(m.ts) ? m.ts : 0;
      const node = this.messageNode({
        sender,
        text: m.text,
        mine,
        copilot,
        ts: [Math.floor(ms / 1000), (ms % 1000) * 1e6],
      });
      node.dataset.id = m.message_id;
      if (Number.isInteger(m.seq)) node.dataset.seq = String(m.seq);
      if (mine) node.dataset.state = 'sent';
      const seq = Number.isInteger(m.seq) ? m.seq : -1;
      const item = { key: [seq, this.order++], node, sender: copilot ? undefined : sender };
      this.byId.set(m.message_id, item);
      // Our own message shown live before its ack: its pending copy steps aside.
      if (mine) {
        for (const p of this.pending.values()) {
          if (!p.matched && !p.failed && p.text === m.text) {
            p.matched = m.message_id;
            p.node.hidden = true;
            break;
          }
        }
      }
      this.insert(item);
    }

    acked(ack) {
      const p = this.pending.get(ack.client_id);
      if (!p) return;
      this.pending.delete(ack.client_id);
      p.node.remove();
      // (A text match with someone else's message hid nothing that is not shown as stored.)
      const item = this.byId.get(ack.message_id);
      if (item) {
        item.node.dataset.state = 'sent';
      } else {
        // Stored but not shown live (the rare store that wrote but failed to answer): show it.
        this.addStored({
          seq: ack.seq,
          message_id: ack.message_id,
          sender: this.as,
          kind: 'text',
          text: p.text,
          ts: Date.now(),
        });
      }
      this.updateEmpty();
    }

    failed(frame) {
      const reason = typeof frame.reason === 'string' ? frame.reason : String(frame.code);
      const p = typeof frame.ref === 'string' ? this.pending.get(frame.ref) : undefined;
      if (p) {
        p.failed = true;
        p.node.hidden = false;
        p.node.dataset.state = 'failed';
        p.node.querySelector('.meta').textContent = `${this.as} · not sent: ${reason}`;
        this.pending.delete(frame.ref);
        return;
      }
      if (this.paging && frame.ref === this.paging) this.paging = null;
      this.addNotice(reason);
      if (typeof frame.question_id === 'string') this.endTurn(frame.question_id);
    }

    /** Near the top with older messages to fetch: ask the page before the oldest shown. */
    maybePage() {
      if (!this.hasOlder || this.paging || ui.chat.scrollTop > 40) return;
      const oldest = this.items.find((i) => i.key[0] >= 0);
      if (!oldest) return;
      const ref = `page-${this.order++}`;
      if (this.write({ type: 'page', ref, before: oldest.key[0], limit: PAGE_LIMIT })) this.paging = ref;
    }

    paged(page) {
      if (page.ref !== this.paging) return;
      this.paging = null;
      this.hasOlder = page.has_older === true;
      this.addMessages(page.messages, true);
      // Still at the top (a short page, a tall window): keep going.
      this.maybePage();
    }

    join(member) {
      if (member && typeof member.id === 'string') this.members.set(`${member.role}:${member.id}`, member);
    }

    renderPresence() {
      const members = [...this.members.values()];
      if (members.length === 0) {
        ui.presence.textContent = '';
        return;
      }
      const names = members.map((m) => {
        const you = this.me && this.me.id === m.id && this.me.role === m.role ? ' (you)' : '';
        return `${m.role} ${short(m.id)}${you}`;
      });
      ui.presence.textContent = `${members.length} here: ${names.join(', ')}`;
    }

    showTyping(member, active) {
      if (!member || typeof member.id !== 'string') return;
      const key = `${member.role}:${member.id}`;
      clearTimeout(this.typists.get(key));
      this.typists.delete(key);
      if (active) {
        this.typists.set(
          key,
          setTimeout(() => this.showTyping(member, false), TYPING_TTL_MS),
        );
      }
      const who = [...this.typists.keys()].map((k) => {
        const [role, id] = k.split(/:(.*)/s);
        return `${role} ${short(id)}`;
      });
      ui.typing.textContent = who.length === 0 ? '' : `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…`;
    }

    addNotice(reason) {
      const node = document.createElement('li');
      node.className = 'msg error';
      node.setAttribute('role', 'alert');
      const bubble = document.createElement('div');
      bubble.className = 'bubble';
      bubble.textContent = `⚠ ${reason}`;
      node.append(bubble);
      ui.list.insertBefore(node, this.firstTurnNode());
      this.updateEmpty();
      this.scrollToEnd();
    }

    growTurn(frame) {
      const question = frame.question_id;
      if (typeof question !== 'string') return;
      let turn = this.turns.get(question);
      if (!turn) {
        const node = document.createElement('li');
        node.className = 'msg copilot typing';
        node.setAttribute('aria-busy', 'true');
        node.dataset.question = question;
        const tool = document.createElement('div');
        tool.className = 'tool';
        tool.hidden = true;
        const bubble = document.createElement('div');
        bubble.className = 'bubble';
        const meta = document.createElement('div');
        meta.className = 'meta';
        const label = document.createElement('span');
        label.textContent = 'Copilot is answering… ';
        const stop = document.createElement('button');
        stop.type = 'button';
        stop.className = 'secondary stop';
        stop.textContent = 'Stop';
        stop.addEventListener('click', () => {
          if (this.write({ type: 'cancel', ref: `cancel-${this.order++}`, question_id: question })) {
            stop.disabled = true;
            label.textContent = 'Stopping… ';
          }
        });
        meta.append(label, stop);
        node.append(tool, bubble, meta);
        turn = { node, tool, bubble, text: '' };
        this.turns.set(question, turn);
      }
      const follow = this.nearBottom();
      const { output } = frame;
      if (output === TOOL_STATUS) {
        turn.tool.hidden = false;
        turn.tool.textContent = output.trim();
      } else if (typeof output === 'string') {
        turn.text += output;
        turn.bubble.textContent = turn.text;
      }
      ui.list.append(turn.node);
      this.updateEmpty();
      if (follow) this.scrollToEnd();
    }

    endTurn(question) {
      const turn = this.turns.get(question);
      if (!turn) return;
      turn.node.remove();
      this.turns.delete(question);
      this.updateEmpty();
    }

    clearTurns() {
      for (const question of [...this.turns.keys()]) this.endTurn(question);
    }

    /** The first node that stays below the stored messages: a pending send or a copilot bubble. */
    firstTurnNode() {
      const turn = this.turns.values().next();
      return turn.done ? null : turn.value.node;
    }

    /** Inserts a stored `item` at its place by key, above pending sends and copilot bubbles. */
    insert(item) {
      const follow = this.nearBottom();
      let i = this.items.length;
      while (i > 0 && compareKeys(this.items[i - 1].key, item.key) > 0) i -= 1;
      let before = i < this.items.length ? this.items[i].node : null;
      if (!before) {
        const firstPending = this.pending.values().next();
        before = firstPending.done ? this.firstTurnNode() : firstPending.value.node;
      }
      this.items.splice(i, 0, item);
      ui.list.insertBefore(item.node, before);
      this.updateEmpty();
      if (follow) this.scrollToEnd();
    }

    updateEmpty() {
      ui.empty.hidden = ui.list.childElementCount > 0;
    }

    nearBottom() {
      const c = ui.chat;
      return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
    }

    scrollToEnd() {
      ui.chat.scrollTop = ui.chat.scrollHeight;
    }
  }

  // ---- settings, kept in the location hash so that a reload reopens the same chat ----

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const keepalive = Number(p.get('keepalive'));
    return {
      agent: p.get('agent') || '',
      kind: p.get('chat') === 'copilot' ? 'copilot' : 'supervisor',
      as: p.get('as') === 'supervisor' ? 'supervisor' : 'agent',
      keepaliveMs: Number.isFinite(keepalive) && keepalive >= 1 ? keepalive * 1000 : KEEPALIVE_MS,
    };
  }

  function writeHash(s) {
    const p = new URLSearchParams({ agent: s.agent, chat: s.kind });
    if (s.kind === 'supervisor') p.set('as', s.as);
    if (s.keepaliveMs !== KEEPALIVE_MS) p.set('keepalive', String(s.keepaliveMs / 1000));
    history.replaceState(null, '', `#${p}`);
  }

  function syncSetup() {
    ui.asField.hidden = ui.kind.value === 'copilot';
  }

  let view = null;
  let keepaliveMs = KEEPALIVE_MS;
  /** Whether the server wants a token (from GET /auth-mode). */
  let authRequired = false;

  /** Asks the server whether callers need a token, and shows the token field if so. */
  async function learnAuthMode() {
    try {
      const response = await fetch('/auth-mode', { cache: 'no-store', credentials: 'omit' });
      if (response.ok) authRequired = (await response.json()).token === 'required';
    } catch {
      // An older server without /auth-mode: no token.
    }
    ui.tokenField.hidden = !authRequired;
    if (authRequired) ui.token.value = sessionStorage.getItem(TOKEN_KEY) || '';
  }

  function open() {
    const agent = ui.agent.value.trim();
    if (!AGENT_ID.test(agent)) {
      ui.agent.setCustomValidity('Use letters, digits and - . _ ~ only (an agent id is a UUID).');
      ui.agent.reportValidity();
      return;
    }
    ui.agent.setCustomValidity('');
    const token = authRequired ? ui.token.value.trim() : '';
    if (authRequired) sessionStorage.setItem(TOKEN_KEY, token);
    const settings = { agent, kind: ui.kind.value, as: ui.as.value, keepaliveMs };
    writeHash(settings);
    if (view) view.stop();
    view = new ChatView({ ...settings, token });
    ui.connect.textContent = 'Reopen';
    document.body.classList.add('chatting');
    showSetup(false);
    ui.text.focus();
  }

  /** On small screens the settings fold away while a chat is open. */
  function showSetup(shown) {
    ui.setup.classList.toggle('open', shown);
    ui.toggleSetup.setAttribute('aria-expanded', String(shown));
  }

  ui.connect = $('connect');
  ui.setup.addEventListener('submit', (e) => {
    e.preventDefault();
    open();
  });
  ui.agent.addEventListener('input', () => ui.agent.setCustomValidity(''));
  ui.newAgent.addEventListener('click', () => {
    ui.agent.value = randomUuid();
  });
  ui.toggleSetup.addEventListener('click', () => showSetup(!ui.setup.classList.contains('open')));
  ui.kind.addEventListener('change', syncSetup);
  ui.as.addEventListener('change', () => {
    if (view && view.kind === 'supervisor') {
      view.setSender(ui.as.value);
      writeHash({ agent: view.agent, kind: view.kind, as: ui.as.value, keepaliveMs });
    }
  });

  ui.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.text.value;
    if (!view || text.trim() === '') return;
    if (view.send(text)) {
      ui.text.value = '';
      ui.text.style.height = '';
    }
  });
  ui.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  ui.text.addEventListener('input', () => {
    if (view && ui.text.value !== '') view.typed();
    ui.text.style.height = '';
    ui.text.style.height = `${ui.text.scrollHeight + 2}px`;
  });

  const initial = readHash();
  keepaliveMs = initial.keepaliveMs;
  ui.agent.value = initial.agent || randomUuid();
  ui.kind.value = initial.kind;
  ui.as.value = initial.as;
  syncSetup();
  learnAuthMode().then(() => {
    if (initial.agent) open();
  });
})();
