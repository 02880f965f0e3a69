// The reference peer of issue 14: a plain Node `ws` broadcast server that speaks the deployed
// client's protocol v0 (shared/PROTOCOL.md §1–§3) WITHOUT storage, so that `scripts/bench.sh`
// can measure JivaChat against it in the same run, with the same generator (jivachat-bench).
//
// What it does, and only that:
// - upgrades on any path with `?agentID=…&secondaryID=supervisor|copilot` (400 with a one-line
//   reason otherwise; a plain GET gets an HTTP answer, `/readyz` and `/healthz` answer 200);
// - one room per chat (`"{agentID}-{secondaryID}"`);
// - a chat message is echoed to every socket of its chat, the sender included, as the stored
//   frame's JSON shape with a server-made `message_id` (UUID v4) and `timestamp`; the frame is
//   encoded once and the same buffer is written to every socket;
// - keepalives (`{"ping":"pong"}`, `{"action":"ping"}`) are ignored; anything else gets
//   `{"error":"…"}` on that socket only;
// - a socket with more than 4 MiB unwritten is closed with 4008, as JivaChat closes a slow
//   consumer (bounded memory on both sides).
// It keeps no history (the connect + replay row has no Node figure) and has no limits.
//
//   node server.js --listen 127.0.0.1:3131
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { WebSocketServer } = require('ws');

const MAX_FRAME_BYTES = 64 * 1024; // JivaChat's default --max-frame-bytes
const SLOW_CONSUMER_BYTES = 4 * 1024 * 1024;
const CLOSE_SLOW_CONSUMER = 4008;

function listenAddress(argv) {
  const i = argv.indexOf('--listen');
  const raw = i >= 0 ? argv[i + 1] : process.env.LISTEN || '127.0.0.1:3131';
  const at = raw.lastIndexOf(':');
  const host = raw.slice(0, at);
  const port = Number(raw.slice(at + 1));
  if (!host.startsWith('127.') || !Number.isInteger(port)) {
    console.error(`--listen ${raw}: expected a loopback host:port such as 127.0.0.1:3131`);
    process.exit(2);
  }
  return { host, port };
}

/** @type {Map<string, Set<import('ws').WebSocket>>} */
const rooms = new Map();

function chatOf(url) {
  const q = url.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
  const agent = params.get('agentID');
  const kind = params.get('secondaryID');
  if (!agent) return { error: 'agentID is missing or empty' };
  if (kind !== 'supervisor' && kind !== 'copilot') {
    return { error: 'secondaryID must be "supervisor" or "copilot"' };
  }
  return { chat: `${agent}-${kind}` };
}

function errorFrame(reason) {
  return JSON.stringify({ error: reason });
}

/** The inbound rules of JivaChat's `parse_inbound`: a JSON tree per frame, as there. */
function parse(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: 'invalid JSON' };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    return { error: 'expected a JSON object' };
  }
  if (!('message' in v)) {
    if (v.ping === 'pong' || v.action === 'ping') return { keepalive: true };
    return { error: 'not a chat message' };
  }
  if (typeof v.message !== 'string') return { error: 'message must be a string' };
  if (!('sender' in v)) return { error: 'sender is missing' };
  if (typeof v.sender !== 'string') return { error: 'sender must be a string' };
  if (v.sender !== 'agent' && v.sender !== 'supervisor') {
    return { error: 'sender must be "agent" or "supervisor"' };
  }
  if (v.message === '') return { error: 'message is empty' };
  return { sender: v.sender, text: v.message };
}

function broadcast(chat, sender, text) {
  const ms = Date.now();
  const frame = Buffer.from(
    JSON.stringify({
      chat_id: chat,
      message: text,
      message_id: crypto.randomUUID(),
      sender,
      timestamp: {
        secs_since_epoch: Math.floor(ms / 1000),
        nanos_since_epoch: (ms % 1000) * 1e6,
      },
    }),
  );
  const room = rooms.get(chat);
  if (!room) return;
  for (const ws of room) {
    if (ws.bufferedAmount > SLOW_CONSUMER_BYTES) {
      ws.close(CLOSE_SLOW_CONSUMER, 'slow consumer');
      continue;
    }
    ws.send(frame, { binary: false });
  }
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  const ok = path === '/readyz' || path === '/healthz' || path === '/';
  res.writeHead(ok ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(ok ? 'ok\n' : 'not found\n');
});

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: MAX_FRAME_BYTES,
  perMessageDeflate: false,
  clientTracking: false,
});

server.on('upgrade', (req, socket, head) => {
  const { chat, error } = chatOf(req.url);
  if (error) {
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: ${
        Buffer.byteLength(error) + 1
      }\r\nconnection: close\r\n\r\n${error}\n`,
    );
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    let room = rooms.get(chat);
    if (!room) {
      room = new Set();
      rooms.set(chat, room);
    }
    room.add(ws);
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(errorFrame('expected a text frame'));
        return;
      }
      const m = parse(data.toString());
      if (m.keepalive) return;
      if (m.error) {
        ws.send(errorFrame(m.error));
        return;
      }
      broadcast(chat, m.sender, m.text);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      room.delete(ws);
      if (room.size === 0 && rooms.get(chat) === room) rooms.delete(chat);
    });
  });
});

const { host, port } = listenAddress(process.argv);
server.listen({ host, port, backlog: 4096 }, () => {
  console.error(`node-ref listening on ${host}:${port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
