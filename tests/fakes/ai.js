#!/usr/bin/env node
// Fake of Google's Gemini generateContent API and of an OpenAI-compatible chat completions server, on one port.
// No npm dependencies.
//
//   node tests/fakes/ai.js --port-file FILE     listens on 127.0.0.1:0 and writes the port to FILE
//
// Gemini:  POST /v1beta/models/{model}:generateContent   header x-goog-api-key: test-gemini-key
//          POST /v1beta/models/{model}:streamGenerateContent?alt=sse   (the same, streamed as Server-Sent Events)
// OpenAI:  POST /v1/chat/completions                     header Authorization: Bearer test-openai-key
//          ("stream": true: streamed as Server-Sent Events, chunks with choices[0].delta, then data: [DONE])
// Bodies are validated like the real services do (roles, empty texts, shapes) and answered in their real
// response and error shapes. The reply text is "fake-gemini: " / "fake-openai: " + the last user text.
// Like the real services: Gemini answers a missing key 403 PERMISSION_DENIED, a wrong key 400 INVALID_ARGUMENT
// (reason API_KEY_INVALID), a model it does not serve 404 NOT_FOUND; OpenAI a missing or wrong key 401 and an
// unknown model 404 model_not_found. Models served: GEMINI_MODELS and OPENAI_MODELS below (the worker's
// default GEMINI_MODEL, the current Gemini ids, and "fake-model", which the e2e scripts set as OPENAI_MODEL).
//
// Directives inside the last user text (a test's message content):
//   [[fail:429,503]]  the first requests carrying this exact text fail with these statuses in order, later ones
//                     succeed; a status that no retry can fix (4xx other than 408/429) fails every time.
//                     Gemini's 429 carries its wait only in the body (RetryInfo retryDelay, "1s"; no Retry-After
//                     header, as Google sends it); the OpenAI-compatible 429 carries retry-after: 1.
//   [[retrydelay:3s]] Gemini: the RetryInfo retryDelay of those 429s
//   [[delay:800]]     answer after 800 ms (added to the global latency)
//   [[blocked]]       Gemini: prompt blocked (promptFeedback.blockReason SAFETY, no candidates)
//   [[safety]]        finishReason SAFETY / finish_reason content_filter, no text
//   [[empty]]         Gemini: finishReason MAX_TOKENS with no content; OpenAI: content null
//   [[garbage]]       200 with a body that is not JSON
//   [[huge]]          200 with a 3 MiB body (over the worker's ceiling)
//   [[pad:1500000]]   the answer ends with a space and that many "x" (one word: one piece when streamed)
// Streamed answers (the text is cut into pieces at word boundaries, one event each):
//   [[chunks:5]]      this many pieces (default 3, or the chunks knob)
//   [[chunkms:300]]   wait this long before each piece after the first (default 0, or the chunk_ms knob)
//   [[cut:2]]         the first 2 requests with this exact text stop after the first piece, without a finish
//                     reason (the stream ends early); later ones stream completely
//   [[linger]]        the whole answer (OpenAI: up to the finish reason, without [DONE]), then the connection is
//                     kept open without another byte (closed after 120 s)
//   [[rst]]           the whole answer, then the connection is reset (no end of the chunked body)
// Control:
//   POST /__control {"latency_ms":500}   global latency for every model call
//   POST /__control {"chunk_ms":50,"chunks":4}   default pacing and piece count of streamed answers
//   GET  /__requests                     recorded model calls: [{seq, time, method, path, status, headers (no
//                                        keys), body (parsed JSON or null)}]; status is null while the answer
//                                        is pending and "client_gone" when the caller hung up before it
//   POST /__reset                        forget requests, attempt counters and knobs
//   GET  /__health                       {"ok":true}
'use strict';

const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

const GEMINI_KEY = 'test-gemini-key';
const OPENAI_KEY = 'test-openai-key';
// gemini-3.5-flash is the worker's default GEMINI_MODEL (the tests leave it unset); the retired 2.0 ids are not here.
const GEMINI_MODELS = new Set(['gemini-3.5-flash', 'gemini-3.5-flash-lite', 'gemini-3.6-flash', 'gemini-3.7-flash',
  'gemini-3.8-flash', 'gemini-3.1-flash-lite', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-2.5-pro']);
const OPENAI_MODELS = new Set(['fake-model']);
const MAX_BODY = 8 * 1024 * 1024;
const MAX_LOG = 50000;

let knobs = { latency_ms: 0, chunk_ms: 0, chunks: 3 };
let requests = [];
let seq = 0;
const attempts = new Map(); // provider + '\0' + text -> requests seen

function send(res, status, obj, headers) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, Object.assign({
    'Content-Type': typeof obj === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(body),
  }, headers || {}));
  res.end(body);
}

function safeHeaders(h) {
  const out = {};
  for (const k of Object.keys(h)) {
    if (k === 'x-goog-api-key' || k === 'authorization') continue;
    out[k] = h[k];
  }
  return out;
}

function directives(text) {
  const d = { fail: [], delay: 0, retryDelay: '1s', flags: new Set(), chunks: knobs.chunks, chunkMs: knobs.chunk_ms, cut: 0,
    pad: 0 };
  const re = /\[\[([a-z]+)(?::([^\]]*))?\]\]/g;
  let m;
  while ((m = re.exec(text || '')) !== null) {
    if (m[1] === 'fail') d.fail = (m[2] || '').split(',').map((s) => parseInt(s, 10)).filter((n) => n >= 100 && n < 600);
    else if (m[1] === 'delay') d.delay = Math.max(0, Math.min(600000, parseInt(m[2], 10) || 0));
    else if (m[1] === 'retrydelay' && /^[0-9]+(\.[0-9]+)?s$/.test(m[2] || '')) d.retryDelay = m[2];
    else if (m[1] === 'chunks') d.chunks = Math.max(1, Math.min(1000, parseInt(m[2], 10) || 1));
    else if (m[1] === 'chunkms') d.chunkMs = Math.max(0, Math.min(60000, parseInt(m[2], 10) || 0));
    else if (m[1] === 'cut') d.cut = Math.max(0, Math.min(100, parseInt(m[2], 10) || 1));
    else if (m[1] === 'pad') d.pad = Math.max(0, Math.min(4 * 1024 * 1024, parseInt(m[2], 10) || 0));
    else d.flags.add(m[1]);
  }
  return d;
}

// Which failure (if any) this request gets, counting requests per exact text.
function failureFor(provider, text, d) {
  if (!d.fail.length) return 0;
  const key = provider + '\0' + text;
  const n = attempts.get(key) || 0;
  attempts.set(key, n + 1);
  if (n < d.fail.length) return d.fail[n];
  const last = d.fail[d.fail.length - 1];
  const fixable = last === 408 || last === 429 || last >= 500;
  return fixable ? 0 : last;
}

// Does this request get its stream cut short ([[cut:N]]: the first N requests with this text)?
const cuts = new Map();
function cutFor(provider, text, d) {
  if (!d.cut) return false;
  const key = provider + '\0' + text;
  const n = cuts.get(key) || 0;
  cuts.set(key, n + 1);
  return n < d.cut;
}

// What a streamed answer's connection does after its last event ([[linger]], [[rst]]; '' it ends).
function afterOf(d) {
  return d.flags.has('linger') ? 'linger' : d.flags.has('rst') ? 'rst' : '';
}

// The answer in n pieces at word boundaries (each piece keeps its trailing space), concatenating back to it.
function pieces(text, n) {
  const words = text.match(/\S+\s*|\s+/g) || [text];
  const out = [];
  const per = Math.max(1, Math.ceil(words.length / n));
  for (let i = 0; i < words.length; i += per) out.push(words.slice(i, i + per).join(''));
  return out.length ? out : [text];
}

// Send events (objects, or the raw string '[DONE]') as Server-Sent Events, chunkMs apart after the first; then
// end the response, or (after) keep it open ('linger') or reset the connection ('rst').
function streamOut(rec, res, events, chunkMs, crlf, after) {
  const gone = () => res.destroyed || res.writableEnded || (res.socket && res.socket.destroyed);
  if (gone()) { if (rec) rec.status = 'client_gone'; return; }
  if (rec) rec.status = 200;
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const eol = crlf ? '\r\n' : '\n';
  let i = 0;
  // the events that carry the answer: a caller that hangs up after them (a worker stops reading at the finish
  // reason, before an OpenAI [DONE]) got it whole
  const answered = events.length - (events[events.length - 1] === '[DONE]' ? 1 : 0);
  const next = () => {
    if (gone()) { if (rec && i < answered) rec.status = 'client_gone'; return; }
    if (i >= events.length) {
      if (after === 'linger') return setTimeout(() => res.end(), 120000).unref();
      if (after === 'rst') return setTimeout(() => res.socket && res.socket.destroy(), 50);
      return res.end();
    }
    const ev = events[i++];
    res.write('data: ' + (typeof ev === 'string' ? ev : JSON.stringify(ev)) + eol + eol);
    if (chunkMs > 0 && i < events.length) setTimeout(next, chunkMs);
    else setImmediate(next);
  };
  next();
}

// ---- Gemini ----

const G_STATUS = {
  400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
  408: 'DEADLINE_EXCEEDED', 409: 'ABORTED', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 501: 'UNIMPLEMENTED',
  502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
};

function geminiError(code, message, details) {
  return { error: { code, message, status: G_STATUS[code] || 'UNKNOWN', details: details || [] } };
}

function geminiValidate(b) {
  const bad = (msg) => msg;
  if (!b || typeof b !== 'object' || Array.isArray(b)) return bad('Invalid JSON payload received. Expected an object.');
  if (!Array.isArray(b.contents) || b.contents.length === 0) return bad('* GenerateContentRequest.contents: contents is not specified');
  for (let i = 0; i < b.contents.length; i++) {
    const c = b.contents[i];
    if (!c || typeof c !== 'object' || Array.isArray(c)) return bad(`Invalid value at 'contents[${i}]'`);
    if (c.role !== undefined && c.role !== 'user' && c.role !== 'model') {
      return bad(`Please use a valid role: user, model.`);
    }
    if (!Array.isArray(c.parts) || c.parts.length === 0) return bad(`* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`);
    for (let j = 0; j < c.parts.length; j++) {
      const p = c.parts[j];
      if (!p || typeof p !== 'object' || Array.isArray(p)) return bad(`Invalid value at 'contents[${i}].parts[${j}]'`);
      if (typeof p.text !== 'string') return bad(`* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field`);
      if (p.text.length === 0) return bad('Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.');
    }
  }
  const last = b.contents[b.contents.length - 1];
  if ((last.role || 'user') !== 'user') return bad('Please ensure that the last turn is a user turn.');
  const si = b.systemInstruction !== undefined ? b.systemInstruction : b.system_instruction;
  if (si !== undefined) {
    if (!si || typeof si !== 'object' || Array.isArray(si) || !Array.isArray(si.parts) || si.parts.length === 0) {
      return bad("Invalid value at 'system_instruction'");
    }
    for (const p of si.parts) {
      if (!p || typeof p.text !== 'string' || p.text.length === 0) return bad("Invalid value at 'system_instruction.parts'");
    }
  }
  const gc = b.generationConfig !== undefined ? b.generationConfig : b.generation_config;
  if (gc !== undefined) {
    if (!gc || typeof gc !== 'object' || Array.isArray(gc)) return bad("Invalid value at 'generation_config'");
    if (gc.maxOutputTokens !== undefined && (!Number.isInteger(gc.maxOutputTokens) || gc.maxOutputTokens <= 0)) {
      return bad("Invalid value at 'generation_config.max_output_tokens'");
    }
  }
  return null;
}

function geminiLastUserText(b) {
  for (let i = b.contents.length - 1; i >= 0; i--) {
    const c = b.contents[i];
    if ((c.role || 'user') === 'user') return c.parts[c.parts.length - 1].text;
  }
  return '';
}

function words(s) {
  return Math.max(1, String(s).split(/\s+/).filter(Boolean).length);
}

function gemini(req, res, rec, model, body, streamed) {
  const key = req.headers['x-goog-api-key'] || new URL(req.url, 'http://x').searchParams.get('key');
  if (!key) {
    return finish(rec, res, 403, geminiError(403, "Method doesn't allow unregistered callers (callers without " +
      'established identity). Please use API Key or other form of API consumer identity to call this API.'));
  }
  if (key !== GEMINI_KEY) {
    return finish(rec, res, 400, geminiError(400, 'API key not valid. Please pass a valid API key.', [
      { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com',
        metadata: { service: 'generativelanguage.googleapis.com' } },
      { '@type': 'type.googleapis.com/google.rpc.LocalizedMessage', locale: 'en-US',
        message: 'API key not valid. Please pass a valid API key.' },
    ]));
  }
  if (!GEMINI_MODELS.has(model)) {
    return finish(rec, res, 404, geminiError(404, `models/${model} is not found for API version v1beta, or is not ` +
      'supported for generateContent. Call ListModels to see the list of available models and their supported methods.'));
  }
  if (body === undefined) {
    return finish(rec, res, 400, geminiError(400, 'Invalid JSON payload received. Unexpected token.'));
  }
  const invalid = geminiValidate(body);
  if (invalid) return finish(rec, res, 400, geminiError(400, invalid));
  const text = geminiLastUserText(body);
  const d = directives(text);
  later(d.delay, () => {
    const st = failureFor('gemini', text, d);
    if (st) {
      if (st === 429) {
        return finish(rec, res, 429, geminiError(429, 'Resource has been exhausted (e.g. check quota).', [
          { '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
            violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
              quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier' }] },
          { '@type': 'type.googleapis.com/google.rpc.Help', links: [{ description: 'Learn more', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }] },
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: d.retryDelay },
        ]));
      }
      const msg = st === 503 ? 'The model is overloaded. Please try again later.' : `Fake failure ${st}.`;
      return finish(rec, res, st, geminiError(st, msg));
    }
    if (d.flags.has('garbage')) return finish(rec, res, 200, '<html><body>upstream proxy page</body></html>');
    // streamed: every 200 below goes out as events (one per piece; a one-chunk answer is one event)
    const out = (obj) => streamed ? streamOut(rec, res, [obj], 0, true) : finish(rec, res, 200, obj);
    if (d.flags.has('huge')) return out({ candidates: [{ content: { role: 'model', parts: [{ text: 'x'.repeat(3 * 1024 * 1024) }] }, finishReason: 'STOP', index: 0 }] });
    const usage = { promptTokenCount: words(JSON.stringify(body.contents)), candidatesTokenCount: 0, totalTokenCount: 0,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: 1 }] };
    const base = { usageMetadata: usage, modelVersion: model, responseId: crypto.randomBytes(9).toString('base64url') };
    if (d.flags.has('blocked')) {
      return out(Object.assign({ promptFeedback: { blockReason: 'SAFETY', safetyRatings: [
        { category: 'HARM_CATEGORY_HARASSMENT', probability: 'HIGH' }] } }, base));
    }
    if (d.flags.has('safety')) {
      return out(Object.assign({ candidates: [{ finishReason: 'SAFETY', index: 0, safetyRatings: [
        { category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }] }] }, base));
    }
    if (d.flags.has('empty')) {
      usage.thoughtsTokenCount = 4090;
      return out(Object.assign({ candidates: [{ content: { role: 'model' }, finishReason: 'MAX_TOKENS', index: 0 }] }, base));
    }
    const answer = 'fake-gemini: ' + text + (d.pad ? ' ' + 'x'.repeat(d.pad) : '');
    usage.candidatesTokenCount = words(answer);
    usage.totalTokenCount = usage.promptTokenCount + usage.candidatesTokenCount;
    if (streamed) {
      const ps = pieces(answer, d.chunks);
      const cut = cutFor('gemini', text, d);
      const events = ps.map((p, i) => {
        const c = { content: { parts: [{ text: p }], role: 'model' }, index: 0 };
        if (i === ps.length - 1) c.finishReason = 'STOP';
        return Object.assign({ candidates: [c] }, i === ps.length - 1 ? base : { modelVersion: model, responseId: base.responseId });
      });
      return streamOut(rec, res, cut ? events.slice(0, 1).map((e) => { delete e.candidates[0].finishReason; return e; }) : events, d.chunkMs, true,
        afterOf(d));
    }
    finish(rec, res, 200, Object.assign({
      candidates: [{ content: { parts: [{ text: answer }], role: 'model' }, finishReason: 'STOP', index: 0 }],
    }, base));
  });
}

// ---- OpenAI-compatible ----

function openaiError(message, type, code, param) {
  return { error: { message, type, param: param === undefined ? null : param, code: code === undefined ? null : code } };
}

function openaiValidate(b) {
  if (!b || typeof b !== 'object' || Array.isArray(b)) return ['We could not parse the JSON body of your request.', null];
  if (typeof b.model !== 'string' || b.model.length === 0) return ['you must provide a model parameter', 'model'];
  if (!Array.isArray(b.messages) || b.messages.length === 0) return ["[] is too short - 'messages'", 'messages'];
  for (let i = 0; i < b.messages.length; i++) {
    const m = b.messages[i];
    if (!m || typeof m !== 'object' || Array.isArray(m)) return [`Invalid type for 'messages[${i}]'`, `messages[${i}]`];
    if (!['system', 'user', 'assistant'].includes(m.role)) {
      return [`Invalid value: '${m.role}'. Supported values are: 'system', 'assistant', 'user'.`, `messages[${i}].role`];
    }
    if (typeof m.content !== 'string' || m.content.length === 0) return [`Invalid 'messages[${i}].content': empty or not a string.`, `messages[${i}].content`];
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') return ["Invalid type for 'stream': expected a boolean.", 'stream'];
  return null;
}

function openai(req, res, rec, body) {
  const auth = req.headers.authorization || '';
  if (auth !== 'Bearer ' + OPENAI_KEY) {
    const shown = auth.startsWith('Bearer ') ? auth.slice(7, 10) + '****' + auth.slice(-4) : '';
    return finish(rec, res, 401, openaiError(auth ? `Incorrect API key provided: ${shown}.` :
      "You didn't provide an API key.", 'invalid_request_error', auth ? 'invalid_api_key' : null));
  }
  if (body === undefined) return finish(rec, res, 400, openaiError('We could not parse the JSON body of your request.', 'invalid_request_error'));
  const invalid = openaiValidate(body);
  if (invalid) return finish(rec, res, 400, openaiError(invalid[0], 'invalid_request_error', null, invalid[1]));
  if (!OPENAI_MODELS.has(body.model)) {
    return finish(rec, res, 404, openaiError(`The model \`${body.model}\` does not exist or you do not have access to it.`,
      'invalid_request_error', 'model_not_found'));
  }
  let text = '';
  for (let i = body.messages.length - 1; i >= 0; i--) if (body.messages[i].role === 'user') { text = body.messages[i].content; break; }
  const d = directives(text);
  later(d.delay, () => {
    const st = failureFor('openai', text, d);
    if (st) {
      if (st === 429) {
        return finish(rec, res, 429, openaiError('Rate limit reached for requests. Please try again in 1s.', 'requests', 'rate_limit_exceeded'),
          { 'retry-after': '1', 'x-ratelimit-remaining-requests': '0' });
      }
      return finish(rec, res, st, openaiError(`Fake failure ${st}.`, st >= 500 ? 'server_error' : 'invalid_request_error'));
    }
    if (d.flags.has('garbage')) return finish(rec, res, 200, '<html><body>upstream proxy page</body></html>');
    const id = 'chatcmpl-' + crypto.randomBytes(12).toString('hex');
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta, reason) => ({ id, object: 'chat.completion.chunk', created, model: body.model,
      system_fingerprint: 'fp_fake', choices: [{ index: 0, delta, logprobs: null, finish_reason: reason }] });
    if (d.flags.has('huge')) {
      if (body.stream) return streamOut(rec, res, [chunk({ content: 'x'.repeat(3 * 1024 * 1024) }, 'stop'), '[DONE]'], 0, false);
      return finish(rec, res, 200, { choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(3 * 1024 * 1024) }, finish_reason: 'stop' }] });
    }
    let content = 'fake-openai: ' + text + (d.pad ? ' ' + 'x'.repeat(d.pad) : '');
    let reason = 'stop';
    if (d.flags.has('safety')) { content = null; reason = 'content_filter'; }
    if (d.flags.has('empty')) { content = null; reason = 'length'; }
    const pt = words(JSON.stringify(body.messages));
    const ct = content ? words(content) : 0;
    if (body.stream) {
      const events = [chunk({ role: 'assistant', content: '' }, null)];
      for (const p of content ? pieces(content, d.chunks) : []) events.push(chunk({ content: p }, null));
      if (cutFor('openai', text, d)) return streamOut(rec, res, events.slice(0, 2), 0, false);
      events.push(chunk({}, reason));
      if (!d.flags.has('linger')) events.push('[DONE]');
      return streamOut(rec, res, events, d.chunkMs, false, afterOf(d));
    }
    finish(rec, res, 200, {
      id: 'chatcmpl-' + crypto.randomBytes(12).toString('hex'),
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: reason }],
      usage: { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct },
      system_fingerprint: 'fp_fake',
    });
  });
}

// ---- plumbing ----

function later(extraMs, fn) {
  const ms = (knobs.latency_ms || 0) + (extraMs || 0);
  if (ms > 0) setTimeout(fn, ms);
  else setImmediate(fn);
}

function finish(rec, res, status, obj, headers) {
  const gone = res.destroyed || res.writableEnded || (res.socket && res.socket.destroyed);
  if (rec) rec.status = gone ? 'client_gone' : status;
  if (gone) return;
  send(res, status, obj, headers);
}

function record(req, body) {
  const rec = { seq: ++seq, time: Date.now(), method: req.method, path: req.url, status: null,
    headers: safeHeaders(req.headers), body: body === undefined ? null : body };
  requests.push(rec);
  if (requests.length > MAX_LOG) requests.splice(0, requests.length - MAX_LOG);
  return rec;
}

function readBody(req, res, cb) {
  const chunks = [];
  let size = 0;
  let over = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) { over = true; return; }
    chunks.push(c);
  });
  req.on('end', () => {
    if (over) return send(res, 413, { error: { code: 413, message: 'Request payload size exceeds the limit.', status: 'INVALID_ARGUMENT' } });
    const raw = Buffer.concat(chunks).toString('utf8');
    let parsed;
    try { parsed = raw.length ? JSON.parse(raw) : undefined; } catch (e) { parsed = undefined; }
    cb(parsed, raw);
  });
  req.on('error', () => {});
}

const GEMINI_PATH = /^\/v1beta\/models\/([A-Za-z0-9._-]+):(generateContent|streamGenerateContent)$/;

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  readBody(req, res, (body) => {
    if (path === '/__control' && req.method === 'POST') {
      if (!body || typeof body !== 'object') return send(res, 400, { error: 'expected a JSON object' });
      if (body.latency_ms !== undefined) knobs.latency_ms = Math.max(0, Math.min(600000, Number(body.latency_ms) || 0));
      if (body.chunk_ms !== undefined) knobs.chunk_ms = Math.max(0, Math.min(60000, Number(body.chunk_ms) || 0));
      if (body.chunks !== undefined) knobs.chunks = Math.max(1, Math.min(1000, Number(body.chunks) || 1));
      return send(res, 200, knobs);
    }
    if (path === '/__requests' && req.method === 'GET') return send(res, 200, requests);
    if (path === '/__reset' && req.method === 'POST') {
      requests = [];
      attempts.clear();
      cuts.clear();
      knobs = { latency_ms: 0, chunk_ms: 0, chunks: 3 };
      return send(res, 200, { reset: true });
    }
    if (path === '/__health') return send(res, 200, { ok: true });
    const gm = GEMINI_PATH.exec(path);
    if (gm) {
      if (req.method !== 'POST') return send(res, 405, geminiError(405, 'Method not allowed.'));
      // streamGenerateContent without alt=sse answers a JSON array in Google's API; only the SSE form is faked
      const streamed = gm[2] === 'streamGenerateContent';
      if (streamed && new URL(req.url, 'http://x').searchParams.get('alt') !== 'sse') {
        return send(res, 400, geminiError(400, 'The fake serves streamGenerateContent only with alt=sse.'));
      }
      return gemini(req, res, record(req, body), gm[1], body, streamed);
    }
    if (path === '/v1/chat/completions') {
      if (req.method !== 'POST') return send(res, 405, openaiError('Method not allowed.', 'invalid_request_error'));
      return openai(req, res, record(req, body), body);
    }
    if (path.startsWith('/v1beta/')) return send(res, 404, geminiError(404, `Requested entity was not found.`));
    return send(res, 404, { error: { message: `Unknown request URL: ${req.method} ${path}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
  });
});

server.keepAliveTimeout = 65000;
server.headersTimeout = 70000;
server.requestTimeout = 0;
server.maxConnections = 20000;

let portFile = null;
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--port-file') portFile = process.argv[++i];
}

server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const port = server.address().port;
  if (portFile) {
    const tmp = portFile + '.tmp' + process.pid;
    fs.writeFileSync(tmp, String(port));
    fs.renameSync(tmp, portFile);
  } else {
    process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
  }
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
