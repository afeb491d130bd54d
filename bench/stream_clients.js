#!/usr/bin/env node
// bench/stream_clients.js: N open reply streams and the time from a published piece to the client.
//   node bench/stream_clients.js BASE_URL TOKEN ROOM IDS_FILE REDIS_SOCK [SAMPLES]
// Opens GET /chatroom/ROOM/messages/ID/stream for every id of IDS_FILE at once (one connection each), prints
// "open N in MS ms" when every response's headers are in, then waits for a line on stdin (the caller measures
// memory meanwhile), then publishes SAMPLES deltas (XADD into the replies' event streams, like the worker, over
// one Redis connection, 50 ms apart, each to another stream) and prints the latency from publishing to the client's receipt:
// "latency n=.. p50=.. p99=.. max=.. ms". No npm dependencies.
'use strict';
const http = require('http');
const fs = require('fs');
const net = require('net');

const [base, token, room, idsFile, redisSock, samplesArg] = process.argv.slice(2);
const ids = fs.readFileSync(idsFile, 'utf8').split(/\s+/).filter(Boolean);
const samples = Math.min(parseInt(samplesArg || '100', 10), ids.length);
const sentAt = new Map(); // reply id -> ms the delta was published
const lat = [];
let open = 0;
let failed = 0;
const why = {}; // failure reason -> count (an HTTP status, or the connection error's code)
function fail(reason) { failed++; why[reason] = (why[reason] || 0) + 1; }
const t0 = Date.now();
let done = null;

for (const id of ids) {
  const req = http.request(`${base}/chatroom/${room}/messages/${id}/stream`, {
    agent: false, headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
  }, (res) => {
    if (res.statusCode !== 200) { fail(`HTTP ${res.statusCode}`); res.resume(); return; }
    if (++open === ids.length) console.log(`open ${open} in ${Date.now() - t0} ms`);
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (ev.includes('event: delta') && sentAt.has(id)) {
          lat.push(Date.now() - sentAt.get(id));
          sentAt.delete(id);
          if (lat.length === samples && done) done();
        }
      }
    });
  });
  req.on('error', (e) => { fail(e.code || e.message); });
  req.end();
}

const timer = setInterval(() => {
  if (failed) { console.log(`FAIL: ${failed} streams failed (${open} open): ${JSON.stringify(why)}`); process.exit(1); }
}, 200);

// One Redis connection of our own (RESP written by hand), so that a sample times the publish, not a process start.
const redis = net.createConnection(redisSock);
redis.on('data', () => {});
redis.on('error', (e) => { console.log(`FAIL: redis: ${e.message}`); process.exit(1); });
function resp(args) {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}
function xadd(id) {
  sentAt.set(id, Date.now());
  redis.write(resp(['XADD', `replyev:${id}`, '*', 'e', 'delta', 't', 'x']));
  return Promise.resolve();
}

process.stdin.once('data', async () => {
  const finished = new Promise((resolve) => { done = resolve; });
  for (let k = 0; k < samples; k++) {
    await xadd(ids[Math.floor((k * ids.length) / samples)]);
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 10000))]);
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  console.log(`latency n=${lat.length} p50=${q(0.5)} p99=${q(0.99)} max=${lat[lat.length - 1]} ms`);
  clearInterval(timer);
  process.exit(lat.length === samples ? 0 : 1);
});
