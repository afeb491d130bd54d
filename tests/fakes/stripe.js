#!/usr/bin/env node
// Fake Stripe API for the end-to-end tests. No npm dependencies.
//
//   node stripe.js --port-file DIR/stripe.port
//
// Listens on 127.0.0.1 port 0 and writes the chosen port to the port file once listening.
//
// Stripe-like endpoints:
//   POST /v1/checkout/sessions      create a Checkout Session (form-encoded, bracket keys), with the checks
//                                   real Stripe makes that matter to us: API key, required and unknown
//                                   parameters, known price, customer/customer_email exclusive, metadata
//                                   limits, expires_at 30 min to 24 h ahead (the session's expires_at; 24 h
//                                   when not sent), Idempotency-Key replay/mismatch. Errors use Stripe's shape
//                                   {"error":{"type","code","message","param","doc_url"}}.
//   GET  /v1/checkout/sessions/ID   retrieve one.
//   DELETE /v1/customers/ID         delete a customer (as in the Dashboard): a session created for it afterwards
//                                   is refused, 400 resource_missing on param customer, as for a customer never
//                                   made. Customers are made when a session is completed.
// Test knobs:
//   POST /__control  {"fail_next":{"status":500,"count":1,"error":{...},"body":"raw"}}  the next count
//                    Stripe calls fail with that status (count default 1; "error" default an api_error);
//                    {"delay_ms":N} delays every Stripe answer (timeouts); {"prices":["price_a",...]}
//                    replaces the known prices (default price_test_pro).
//   GET  /__requests recorded Stripe calls: [{method,path,query,headers (no authorization),auth
//                    ("bearer"|"basic"|"none"),auth_ok,form (decoded key/value pairs, in order),params
//                    (nested),status,time}]
//   GET  /__sessions every Checkout Session created (an Idempotency-Key replay creates none), oldest first, as
//                    retrieve shows them: [{id,client_reference_id,customer,status,expires_at,created,...}]
//   POST /__reset    forget requests, sessions, idempotency keys and knobs.
// Events (what real Stripe would send to the webhook; returned unsigned, the test signs and delivers them):
//   POST /__checkout/ID/complete {"payment":"paid"|"delayed"|"no_payment_required","created":N?,
//                    "customer":"cus_..."?}  the customer completes the hosted page of a session created
//                    above: it gets a customer, a subscription (subscription mode) and an invoice, status
//                    complete, payment_status paid / unpaid (a delayed method: SEPA, ACH, ...) /
//                    no_payment_required; answers the checkout.session.completed event.
//   POST /__checkout/ID/async_payment {"outcome":"succeeded"|"failed","created":N?}  the delayed payment of
//                    a completed, unpaid session settles: payment_status paid (succeeded) or still unpaid
//                    (failed); answers the checkout.session.async_payment_succeeded / _failed event.
//   POST /__checkout/ID/expire {"created":N?}  an open session is abandoned (or reaches its expires_at):
//                    status expired; answers the checkout.session.expired event. A session past its expires_at
//                    cannot be completed any more (400), like an expired one.

'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const API_KEY = process.env.FAKE_STRIPE_KEY || 'sk_test_fake';
const DEFAULT_PRICES = ['price_test_pro'];

let state;
function resetState() {
  state = {
    requests: [],
    sessions: new Map(),
    customers: new Map(), // id -> {deleted}
    idempotency: new Map(),
    failNext: null,
    delayMs: 0,
    prices: new Set(DEFAULT_PRICES),
  };
}
resetState();

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function randomId(prefix, n) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(n);
  let s = prefix;
  for (let i = 0; i < n; i++) s += alphabet[bytes[i] % alphabet.length];
  return s;
}

// ---- form decoding -------------------------------------------------------------------------------

function decodeComponent(s) {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

// "a=1&b[c]=2" -> [["a","1"],["b[c]","2"]] (throws on bad percent-encoding)
function decodeForm(body) {
  const pairs = [];
  if (!body) return pairs;
  for (const part of body.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    pairs.push([decodeComponent(k), decodeComponent(v)]);
  }
  return pairs;
}

// "line_items[0][price]" -> ["line_items","0","price"]; null when the brackets are malformed.
function splitKey(key) {
  const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
  if (!m) return null;
  const parts = [m[1]];
  const re = /\[([^[\]]*)\]/g;
  let x;
  while ((x = re.exec(m[2])) !== null) parts.push(x[1]);
  return parts;
}

class ParamError extends Error {
  constructor(message, param, code) {
    super(message);
    this.param = param;
    this.code = code || 'parameter_invalid';
  }
}

// Nest bracket keys: numeric segments make arrays (indices must be dense), others objects.
function nestParams(pairs) {
  const root = {};
  for (const [key, value] of pairs) {
    const parts = splitKey(key);
    if (!parts) throw new ParamError(`Invalid parameter name: ${key}`, key);
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      const last = i === parts.length - 1;
      if (last) {
        if (Array.isArray(node) && p === '') node.push(value);
        else node[p] = value;
        break;
      }
      const nextIsIndex = /^\d+$/.test(parts[i + 1]) || parts[i + 1] === '';
      if (node[p] === undefined) node[p] = nextIsIndex ? [] : {};
      if (typeof node[p] !== 'object') throw new ParamError(`Invalid parameter: ${key}`, key);
      node = node[p];
    }
  }
  return root;
}

// ---- responses -----------------------------------------------------------------------------------

function send(res, status, obj, extraHeaders) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  const headers = Object.assign(
    {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'Request-Id': randomId('req_', 14),
      'Stripe-Version': '2026-10-28.endive',
    },
    extraHeaders || {}
  );
  res.writeHead(status, headers);
  res.end(body);
}

function stripeError(type, message, extra) {
  const error = Object.assign({ type, message }, extra || {});
  if (error.code && !error.doc_url) error.doc_url = `https://stripe.com/docs/error-codes/${error.code.replace(/_/g, '-')}`;
  error.request_log_url = `https://dashboard.stripe.com/test/logs/${randomId('req_', 14)}`;
  return { error };
}

function maskKey(key) {
  if (key.length <= 8) return '*'.repeat(key.length);
  const prefix = key.startsWith('sk_test_') ? 'sk_test_' : key.startsWith('sk_live_') ? 'sk_live_' : '';
  return prefix + '*'.repeat(Math.max(0, key.length - prefix.length - 4)) + key.slice(-4);
}

// Returns [ok, scheme, presentedKey].
function checkAuth(req) {
  const h = req.headers.authorization;
  if (!h) return [false, 'none', null];
  let m = /^Bearer\s+(.+)$/i.exec(h);
  if (m) return [m[1] === API_KEY, 'bearer', m[1]];
  m = /^Basic\s+(.+)$/i.exec(h);
  if (m) {
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const user = decoded.split(':')[0];
    return [user === API_KEY, 'basic', user];
  }
  return [false, 'other', null];
}

// ---- Checkout Sessions ---------------------------------------------------------------------------

const TOP_LEVEL = new Set([
  'mode', 'line_items', 'success_url', 'cancel_url', 'client_reference_id', 'customer', 'customer_email',
  'metadata', 'subscription_data', 'allow_promotion_codes', 'billing_address_collection', 'expand',
  'payment_method_types', 'locale', 'ui_mode', 'expires_at', 'customer_creation', 'automatic_tax',
]);
const SUBSCRIPTION_DATA = new Set(['metadata', 'trial_period_days', 'description', 'trial_end']);
const LINE_ITEM = new Set(['price', 'quantity', 'adjustable_quantity', 'tax_rates']);

function checkMetadata(md, param) {
  if (md === undefined) return;
  if (typeof md !== 'object' || Array.isArray(md)) throw new ParamError(`Invalid object`, param);
  const keys = Object.keys(md);
  if (keys.length > 50)
    throw new ParamError('You can specify up to 50 keys in metadata.', param);
  for (const k of keys) {
    if (k.length > 40)
      throw new ParamError(`Metadata keys can have up to 40 characters. Key \`${k}\` has ${k.length}.`, `${param}[${k}]`);
    if (typeof md[k] !== 'string') throw new ParamError('Invalid metadata value', `${param}[${k}]`);
    if (md[k].length > 500)
      throw new ParamError(`Metadata values can have up to 500 characters, but you passed in a value that is ${md[k].length} characters.`, `${param}[${k}]`);
  }
}

function isUrl(s) {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch (e) {
    return false;
  }
}

function createSession(p) {
  for (const k of Object.keys(p))
    if (!TOP_LEVEL.has(k)) throw new ParamError(`Received unknown parameter: ${k}`, k, 'parameter_unknown');
  if (p.mode === undefined) throw new ParamError('Missing required param: mode.', 'mode', 'parameter_missing');
  if (!['payment', 'setup', 'subscription'].includes(p.mode))
    throw new ParamError(`Invalid mode: must be one of payment, setup, or subscription`, 'mode');
  if (p.customer !== undefined && p.customer_email !== undefined)
    throw new ParamError('You may only specify one of these parameters: customer, customer_email.', 'customer');
  if (p.customer !== undefined && (!state.customers.has(p.customer) || state.customers.get(p.customer).deleted))
    throw new ParamError(`No such customer: '${p.customer}'`, 'customer', 'resource_missing');
  if (p.success_url === undefined)
    throw new ParamError('Missing required param: success_url.', 'success_url', 'parameter_missing');
  if (p.cancel_url === undefined)
    throw new ParamError('Missing required param: cancel_url.', 'cancel_url', 'parameter_missing');
  if (!isUrl(p.success_url)) throw new ParamError('Not a valid URL', 'success_url', 'url_invalid');
  if (!isUrl(p.cancel_url)) throw new ParamError('Not a valid URL', 'cancel_url', 'url_invalid');
  const now = Math.floor(Date.now() / 1000);
  let expiresAt = now + 86400;
  if (p.expires_at !== undefined) {
    if (typeof p.expires_at !== 'string' || !/^\d{1,15}$/.test(p.expires_at))
      throw new ParamError('Invalid integer: expires_at', 'expires_at', 'parameter_invalid_integer');
    expiresAt = Number(p.expires_at);
    if (expiresAt < now + 1800)
      throw new ParamError('The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.', 'expires_at');
    if (expiresAt > now + 86400)
      throw new ParamError('The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.', 'expires_at');
  }
  if (p.client_reference_id !== undefined && (typeof p.client_reference_id !== 'string' || p.client_reference_id.length > 200))
    throw new ParamError('client_reference_id can have up to 200 characters.', 'client_reference_id');
  checkMetadata(p.metadata, 'metadata');
  if (p.subscription_data !== undefined) {
    if (p.mode !== 'subscription')
      throw new ParamError('You can only specify `subscription_data` in `subscription` mode.', 'subscription_data');
    if (typeof p.subscription_data !== 'object' || Array.isArray(p.subscription_data))
      throw new ParamError('Invalid object', 'subscription_data');
    for (const k of Object.keys(p.subscription_data))
      if (!SUBSCRIPTION_DATA.has(k))
        throw new ParamError(`Received unknown parameter: subscription_data[${k}]`, `subscription_data[${k}]`, 'parameter_unknown');
    checkMetadata(p.subscription_data.metadata, 'subscription_data[metadata]');
  }
  const items = p.line_items;
  if (p.mode !== 'setup') {
    if (items === undefined)
      throw new ParamError(`line_items is required in ${p.mode} mode.`, 'line_items', 'parameter_missing');
    if (!Array.isArray(items) || items.length === 0 || items.some((x) => x === undefined))
      throw new ParamError('Invalid array', 'line_items');
    items.forEach((it, i) => {
      if (typeof it !== 'object' || Array.isArray(it)) throw new ParamError('Invalid object', `line_items[${i}]`);
      for (const k of Object.keys(it))
        if (!LINE_ITEM.has(k))
          throw new ParamError(`Received unknown parameter: line_items[${i}][${k}]`, `line_items[${i}][${k}]`, 'parameter_unknown');
      if (it.price === undefined)
        throw new ParamError('Missing required param: line_items[0][price].', `line_items[${i}][price]`, 'parameter_missing');
      if (!state.prices.has(it.price))
        throw new ParamError(`No such price: '${it.price}'`, `line_items[${i}][price]`, 'resource_missing');
      if (it.quantity === undefined || !/^[1-9]\d{0,5}$/.test(it.quantity))
        throw new ParamError('Invalid integer: quantity must be a positive integer.', `line_items[${i}][quantity]`, 'parameter_invalid_integer');
    });
  }

  const id = randomId('cs_test_', 58);
  const amount = 1999 * (items ? items.reduce((a, it) => a + Number(it.quantity), 0) : 0);
  const session = {
    id,
    object: 'checkout.session',
    after_expiration: null,
    allow_promotion_codes: p.allow_promotion_codes === 'true' ? true : null,
    amount_subtotal: amount,
    amount_total: amount,
    billing_address_collection: p.billing_address_collection || null,
    cancel_url: p.cancel_url,
    client_reference_id: p.client_reference_id === undefined ? null : p.client_reference_id,
    created: now,
    currency: 'usd',
    customer: p.customer || null,
    customer_creation: p.customer ? null : 'always',
    customer_details: p.customer_email ? { email: p.customer_email } : null,
    customer_email: p.customer_email || null,
    expires_at: expiresAt,
    invoice: null,
    livemode: false,
    locale: p.locale || null,
    metadata: p.metadata || {},
    mode: p.mode,
    payment_intent: null,
    payment_method_types: ['card'],
    payment_status: 'unpaid',
    status: 'open',
    subscription: null,
    success_url: p.success_url,
    ui_mode: 'hosted',
    url: `https://checkout.stripe.com/c/pay/${id}#${randomId('', 24)}`,
  };
  state.sessions.set(id, session);
  return session;
}

// ---- server --------------------------------------------------------------------------------------

function recordRequest(req, url, body, auth, pairs, params) {
  const headers = Object.assign({}, req.headers);
  delete headers.authorization;
  const rec = {
    method: req.method,
    path: url.pathname,
    query: url.search ? url.search.slice(1) : '',
    headers,
    auth: auth[1],
    auth_ok: auth[0],
    form: pairs ? Object.fromEntries(pairs) : {},
    form_pairs: pairs || [],
    params: params || null,
    body,
    status: null,
    time: Date.now() / 1000,
  };
  state.requests.push(rec);
  if (state.requests.length > 1000) state.requests.shift();
  return rec;
}

function handleStripe(req, res, url, body) {
  const auth = checkAuth(req);
  let pairs = null;
  let params = null;
  let decodeError = null;
  try {
    pairs = decodeForm(body);
    params = nestParams(pairs);
  } catch (e) {
    decodeError = e;
  }
  const rec = recordRequest(req, url, body, auth, pairs, params);
  const reply = (status, obj, headers) => {
    rec.status = status;
    const go = () => send(res, status, obj, headers);
    if (state.delayMs > 0) setTimeout(go, state.delayMs);
    else go();
  };

  if (!auth[0]) {
    if (auth[1] === 'none')
      return reply(401, stripeError('invalid_request_error',
        'You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. \'Authorization: Bearer YOUR_SECRET_KEY\').'));
    return reply(401, stripeError('invalid_request_error',
      `Invalid API Key provided: ${maskKey(auth[2] || '')}`));
  }

  if (state.failNext && state.failNext.count > 0) {
    const f = state.failNext;
    f.count -= 1;
    if (f.count <= 0) state.failNext = null;
    if (f.body !== undefined) return reply(f.status, String(f.body));
    return reply(f.status, { error: f.error || { type: 'api_error', message: 'An unknown error occurred (fake Stripe failure).' } });
  }

  if (decodeError)
    return reply(400, stripeError('invalid_request_error', decodeError.message || 'Invalid request body', { param: decodeError.param }));

  const m = /^\/v1\/checkout\/sessions(?:\/([^/]+))?\/?$/.exec(url.pathname);
  if (m && req.method === 'POST' && !m[1]) {
    const ctype = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (body && ctype !== 'application/x-www-form-urlencoded')
      return reply(400, stripeError('invalid_request_error',
        'Invalid request: the body must be application/x-www-form-urlencoded.'));
    const key = req.headers['idempotency-key'];
    if (key !== undefined) {
      const prev = state.idempotency.get(key);
      if (prev) {
        if (prev.body !== body)
          return reply(400, stripeError('idempotency_error',
            `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`));
        return reply(prev.status, prev.response, { 'Idempotent-Replayed': 'true' });
      }
    }
    let status = 200;
    let response;
    try {
      response = createSession(params);
    } catch (e) {
      if (!(e instanceof ParamError)) throw e;
      status = 400;
      response = stripeError('invalid_request_error', e.message, { code: e.code, param: e.param });
    }
    // A replay answers the first response as it was, not the session as it is now.
    if (key !== undefined) state.idempotency.set(key, { body, status, response: JSON.parse(JSON.stringify(response)) });
    return reply(status, response);
  }
  const cm = /^\/v1\/customers\/([^/]+)\/?$/.exec(url.pathname);
  if (cm && req.method === 'DELETE') {
    const c = state.customers.get(cm[1]);
    if (!c || c.deleted)
      return reply(404, stripeError('invalid_request_error', `No such customer: '${cm[1]}'`,
        { code: 'resource_missing', param: 'id' }));
    c.deleted = true;
    return reply(200, { id: cm[1], object: 'customer', deleted: true });
  }
  if (m && req.method === 'GET' && m[1]) {
    const s = state.sessions.get(m[1]);
    if (!s)
      return reply(404, stripeError('invalid_request_error', `No such checkout.session: '${m[1]}'`,
        { code: 'resource_missing', param: 'session' }));
    return reply(200, withoutPrivate(s));
  }
  return reply(404, stripeError('invalid_request_error',
    `Unrecognized request URL (${req.method}: ${url.pathname}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`));
}

// An event envelope as Stripe delivers it (REFERENCE.md 2.4) around a snapshot of obj.
function makeEvent(type, obj, created) {
  return {
    id: randomId('evt_test_', 24),
    object: 'event',
    api_version: '2026-10-28.endive',
    created: created === undefined ? Math.floor(Date.now() / 1000) : Number(created),
    data: { object: JSON.parse(JSON.stringify(obj)) },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  };
}

// POST /__checkout/ID/(complete|async_payment): [status, body].
function checkoutEvent(id, action, c) {
  const s = state.sessions.get(id);
  if (!s) return [404, { error: `no such checkout session: ${id}` }];
  if (action === 'complete') {
    const payment = c.payment || 'paid';
    if (!['paid', 'delayed', 'no_payment_required'].includes(payment))
      return [400, { error: 'payment must be paid, delayed or no_payment_required' }];
    if (s.status !== 'open') return [400, { error: `the session is ${s.status}, not open` }];
    if (Math.floor(Date.now() / 1000) >= s.expires_at) return [400, { error: 'the session has expired' }];
    s.status = 'complete';
    s.payment_status = payment === 'delayed' ? 'unpaid' : payment;
    s.customer = s.customer || c.customer || randomId('cus_test_', 14);
    if (!state.customers.has(s.customer)) state.customers.set(s.customer, { deleted: false });
    if (s.mode === 'subscription') {
      s.subscription = randomId('sub_test_', 24);
      s.invoice = randomId('in_test_', 24);
    }
    s.payment_method_types = payment === 'delayed' ? ['sepa_debit'] : ['card'];
    s.delayed = payment === 'delayed';
    return [200, makeEvent('checkout.session.completed', withoutPrivate(s), c.created)];
  }
  if (action === 'async_payment') {
    if (c.outcome !== 'succeeded' && c.outcome !== 'failed')
      return [400, { error: 'outcome must be succeeded or failed' }];
    if (s.status !== 'complete' || !s.delayed || s.settled)
      return [400, { error: 'only a completed session with an unsettled delayed payment settles' }];
    s.settled = true;
    if (c.outcome === 'succeeded') s.payment_status = 'paid';
    return [200, makeEvent(`checkout.session.async_payment_${c.outcome}`, withoutPrivate(s), c.created)];
  }
  if (action === 'expire') {
    if (s.status !== 'open') return [400, { error: `the session is ${s.status}, not open` }];
    s.status = 'expired';
    s.url = null; // Stripe clears the URL of an expired session
    return [200, makeEvent('checkout.session.expired', withoutPrivate(s), c.created)];
  }
  return [404, { error: 'unknown checkout action' }];
}

// The session as Stripe shows it (without the fake's own bookkeeping).
function withoutPrivate(s) {
  const o = Object.assign({}, s);
  delete o.delayed;
  delete o.settled;
  return o;
}

function handleControl(req, res, url, body) {
  if (url.pathname === '/__requests' && req.method === 'GET') return send(res, 200, state.requests);
  if (url.pathname === '/__sessions' && req.method === 'GET')
    return send(res, 200, [...state.sessions.values()].map(withoutPrivate));
  if (url.pathname === '/__reset' && req.method === 'POST') {
    resetState();
    return send(res, 200, { ok: true });
  }
  const m = /^\/__checkout\/([^/]+)\/(complete|async_payment|expire)$/.exec(url.pathname);
  if (m && req.method === 'POST') {
    let c;
    try {
      c = body ? JSON.parse(body) : {};
    } catch (e) {
      return send(res, 400, { error: 'invalid JSON' });
    }
    const [status, out] = checkoutEvent(decodeURIComponent(m[1]), m[2], c);
    return send(res, status, out);
  }
  if (url.pathname === '/__control' && req.method === 'POST') {
    let c;
    try {
      c = body ? JSON.parse(body) : {};
    } catch (e) {
      return send(res, 400, { error: 'invalid JSON' });
    }
    if (c.fail_next) {
      const f = c.fail_next;
      state.failNext = {
        status: Number(f.status) || 500,
        count: f.count === undefined ? 1 : Number(f.count),
        error: f.error,
        body: f.body,
      };
    }
    if (c.fail_next === null) state.failNext = null;
    if (c.delay_ms !== undefined) state.delayMs = Number(c.delay_ms) || 0;
    if (Array.isArray(c.prices)) state.prices = new Set(c.prices.map(String));
    return send(res, 200, { ok: true, fail_next: state.failNext, delay_ms: state.delayMs, prices: [...state.prices] });
  }
  return send(res, 404, { error: 'unknown control endpoint' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 1024 * 1024) chunks.push(c);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://127.0.0.1');
    try {
      if (size > 1024 * 1024) return send(res, 413, stripeError('invalid_request_error', 'Request too large'));
      if (url.pathname.startsWith('/__')) return handleControl(req, res, url, body);
      return handleStripe(req, res, url, body);
    } catch (e) {
      process.stderr.write(`fake stripe: ${e.stack || e}\n`);
      return send(res, 500, stripeError('api_error', 'Fake Stripe crashed: ' + e.message));
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const portFile = arg('--port-file');
  if (portFile) {
    const tmp = path.join(path.dirname(portFile), `.${path.basename(portFile)}.${process.pid}`);
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, portFile);
  } else {
    process.stdout.write(`fake stripe listening on http://127.0.0.1:${port}\n`);
  }
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
