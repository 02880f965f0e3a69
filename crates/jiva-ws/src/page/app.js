// JivaChat's built-in chat page. Plain JavaScript, no build step, no dependencies.
//
// It speaks the deployed client's protocol (shared/PROTOCOL.md): one socket per open chat at
// ws(s)://<this host>/?agentID=..&secondaryID=.., keepalives every 30 s, messages sorted by their
// timestamp (secs/nanos) and de-duplicated by message_id, so the history that the server replays
// after a reconnect does not show twice. Copilot frames without a message_id grow a "typing"
// bubble until {"action":"end"} arrives. Message text is only ever set with textContent.
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

  /** [secs, nanos] of a wire timestamp; missing parts count as 0. */
  function stampOf(frame) {
    const t = frame && typeof frame.timestamp === 'object' && frame.timestamp ? frame.timestamp : {};
    const secs = Number.isFinite(t.secs_since_epoch) ? t.secs_since_epoch : 0;
    const nanos = Number.isFinite(t.nanos_since_epoch) ? t.nanos_since_epoch : 0;
    return [secs, nanos];
  }

  function nowStamp() {
    const ms = Date.now();
    return [Math.floor(ms / 1000), (ms % 1000) * 1e6];
  }

  function compareKeys(a, b) {
    return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  }

  function formatTime([secs, nanos]) {
    const d = new Date(secs * 1000 + Math.floor(nanos / 1e6));
    const sameDay = d.toDateString() === new Date().toDateString();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
  }

  /** One open chat: its socket, its keepalive, its reconnects and what it shows. */
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
      this.seq = 0;
      /** Sorted by key: { key: [secs, nanos, seq], node, sender? } */
      this.items = [];
      /** message_id -> item, to drop replayed copies. */
      this.byId = new Map();
      this.typing = null;
      ui.list.replaceChildren();
      this.updateEmpty();
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
      return `${scheme}://${location.host}${this.query()}`;
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
        ws = new WebSocket(this.url());
      } catch (e) {
        this.scheduleReconnect(`cannot connect: ${e.message}`);
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        this.attempt = 0;
        setStatus('open', `connected · ${this.agent.slice(0, 8)} · ${this.kind}`);
        this.setComposer(true);
        this.keepaliveTimer = setInterval(() => this.keepalive(), this.keepaliveMs);
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
        this.setComposer(false);
        // A stream cut by the close never gets its "end": drop the half answer. The stored part,
        // if any, comes back with the history.
        this.clearTyping();
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
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close(1000);
      this.setComposer(false);
      setStatus('idle', 'not connected');
    }

    keepalive() {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify(this.kind === 'copilot' ? { action: 'ping' } : { ping: 'pong' }));
    }

    send(text) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      // The copilot widget always sends "test-copilot"; the server ignores chat_id anyway.
      const chatId = this.kind === 'copilot' ? 'test-copilot' : `${this.agent}-${this.kind}`;
      ws.send(JSON.stringify({ chat_id: chatId, sender: this.as, message: text }));
      return true;
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

    onFrame(frame) {
      if (Object.hasOwn(frame, 'error')) {
        this.addNotice(String(frame.error));
      } else if (typeof frame.message_id === 'string') {
        this.addStored(frame);
      } else if (Object.hasOwn(frame, 'action') || Object.hasOwn(frame, 'output')) {
        if (frame.action === 'end') {
          this.clearTyping();
        } else {
          this.growTyping(frame);
        }
      }
    }

    addStored(frame) {
      if (this.byId.has(frame.message_id)) return;
      const copilot = frame.action === 'Combined' || frame.sender === 'Copilot';
      const text = copilot ? frame.output : frame.message;
      const sender = typeof frame.sender === 'string' ? frame.sender : copilot ? 'Copilot' : '?';
      const [secs, nanos] = stampOf(frame);
      const node = document.createElement('li');
      node.className = 'msg';
      node.classList.add(copilot ? 'copilot' : `from-${sender === 'supervisor' ? 'supervisor' : 'agent'}`);
      if (!copilot && sender === this.as) node.classList.add('mine');
      node.dataset.id = frame.message_id;
      node.dataset.sender = sender;
      const bubble = document.createElement('div');
      bubble.className = 'bubble';
      bubble.textContent = typeof text === 'string' ? text : '';
      const meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = `${sender} · ${formatTime([secs, nanos])}`;
      node.append(bubble, meta);
      const item = { key: [secs, nanos, this.seq++], node, sender: copilot ? undefined : sender };
      this.byId.set(frame.message_id, item);
      if (copilot) this.clearTyping();
      this.insert(item, !copilot && sender === this.as);
    }

    addNotice(reason) {
      const last = this.items.length ? this.items[this.items.length - 1].key : [0, 0];
      const now = nowStamp();
      const stamp = compareKeys([...now, 0], [...last.slice(0, 2), 0]) > 0 ? now : last.slice(0, 2);
      const node = document.createElement('li');
      node.className = 'msg error';
      node.setAttribute('role', 'alert');
      const bubble = document.createElement('div');
      bubble.className = 'bubble';
      bubble.textContent = `⚠ ${reason}`;
      node.append(bubble);
      this.insert({ key: [...stamp, this.seq++], node }, true);
    }

    growTyping(frame) {
      if (!this.typing) {
        const node = document.createElement('li');
        node.className = 'msg copilot typing';
        node.setAttribute('aria-busy', 'true');
        const tool = document.createElement('div');
        tool.className = 'tool';
        tool.hidden = true;
        const bubble = document.createElement('div');
        bubble.className = 'bubble';
        const meta = document.createElement('div');
        meta.className = 'meta';
        meta.textContent = 'Copilot is answering…';
        node.append(tool, bubble, meta);
        this.typing = { node, tool, bubble, text: '' };
      }
      const follow = this.nearBottom();
      const { output } = frame;
      if (output === TOOL_STATUS) {
        this.typing.tool.hidden = false;
        this.typing.tool.textContent = output.trim();
      } else if (typeof output === 'string') {
        this.typing.text += output;
        this.typing.bubble.textContent = this.typing.text;
      }
      ui.list.append(this.typing.node);
      this.updateEmpty();
      if (follow) this.scrollToEnd();
    }

    clearTyping() {
      if (!this.typing) return;
      this.typing.node.remove();
      this.typing = null;
      this.updateEmpty();
    }

    /** Inserts `item` at its place by key; the typing bubble stays last. */
    insert(item, forceScroll) {
      const follow = forceScroll || this.nearBottom();
      let i = this.items.length;
      while (i > 0 && compareKeys(this.items[i - 1].key, item.key) > 0) i -= 1;
      const before = i < this.items.length ? this.items[i].node : this.typing ? this.typing.node : null;
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
