// The etcd side of the cluster benchmarks: a client for etcd 3.4's v3 JSON
// gateway (POST /v3/kv/put, /v3/maintenance/status; keys and values are
// base64) built on Node's own `http` module with keep-alive agents.  The C
// benchmarks drive it over stdin/stdout: one JSON request per line in,
// one JSON answer per line out ({"ok": true, ...} or {"ok": false,
// "error"}).  It prints "ready" first.
//
// Requests:
//   {cmd: "status", endpoints: [url]}
//       -> members: [{member_id, leader, applied, term} | {error}]
//   {cmd: "load", endpoints: [url], clients: N, size: bytes,
//    warmup_ms, window_ms}
//       N closed-loop clients, client i on endpoints[i % len] with its own
//       key, each with one put in flight.  After the warm-up, counts the
//       puts completed in the window and their latencies (send to end of
//       response).  -> puts_per_s, samples, p50_us, p99_us, max_us (the
//       quantiles as outlast's log-linear histogram reports them: the
//       bucket's lower bound), exact_p50_us, exact_p99_us, errors,
//       cpu (this process's CPU seconds per wall second), connections.
//   {cmd: "arm", endpoints: [url]}
//       Opens a kept-alive connection to each endpoint with a put.
//   {cmd: "probe", since_ns: "T", interval_ms, timeout_ms}
//       From now, sends a put every interval_ms to the armed endpoints in
//       turn, each with its own timeout, and answers once one succeeds:
//       ms = (its completion - T) / 1e6, where T is CLOCK_MONOTONIC in ns
//       as the caller read it (process.hrtime is CLOCK_MONOTONIC too).
//   {cmd: "now"} -> ns: process.hrtime.bigint() (a clock check)
import http from 'node:http';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';

const b64 = (s) => Buffer.from(s).toString('base64');

// "http://host:port", or "unix:/path" for a member that listens on a unix
// socket (the WAN bed, bench/cb_etcd.c): either way what http.request
// takes to reach it.
function parseUrl(u) {
  if (u.startsWith('unix:')) return { socketPath: u.slice(5) };
  const x = new URL(u);
  return { host: x.hostname, port: Number(x.port) };
}

// One POST with a JSON body; resolves {status, body} or rejects.
function post(agent, ep, path, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      ...ep, path, method: 'POST', agent,
      headers: { 'content-type': 'application/json',
                 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode,
                                    body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// outlast's histogram (base/hist.c): 8 buckets per power of two, a
// quantile is reported as its bucket's lower bound.
function bucketLower(v) {
  v = Math.floor(v);
  if (v < 8) return v;
  const lg = 31 - Math.clz32(v); // latencies are far below 2^32 us
  const sub = Math.floor(v / 2 ** (lg - 3)) & 7;
  return (8 + sub) * 2 ** (lg - 3);
}

function quantiles(sorted, q) {
  if (sorted.length === 0) return { exact: 0, hist: 0 };
  let want = Math.floor(q * sorted.length);
  if (want >= sorted.length) want = sorted.length - 1;
  return { exact: Math.round(sorted[want]), hist: bucketLower(sorted[want]) };
}

async function status(req) {
  const agent = new http.Agent({ keepAlive: false });
  const members = await Promise.all(req.endpoints.map(async (u) => {
    try {
      const r = await post(agent, parseUrl(u), '/v3/maintenance/status', '{}', 1000);
      if (r.status !== 200) return { error: `http ${r.status}` };
      const j = JSON.parse(r.body);
      return { member_id: j.header.member_id, leader: j.leader,
               applied: Number(j.raftAppliedIndex ?? j.raftIndex ?? 0),
               term: Number(j.raftTerm ?? 0) };
    } catch (e) {
      return { error: String(e.message || e) };
    }
  }));
  agent.destroy();
  return { members };
}

async function load(req) {
  const eps = req.endpoints.map(parseUrl);
  const value = randomBytes(req.size).toString('base64');
  const n = req.clients;
  const lat = [];
  let errors = 0, done = 0, running = true, inWindow = false, inflight = 0;
  let lastError = '';
  const sockets = new Set();
  // Each client has its own agent holding one kept-alive connection, so N
  // clients are N connections for the whole run (a shared agent would
  // close sockets beyond maxFreeSockets and reconnect).
  const agents = [];

  const client = (i) => {
    const ep = eps[i % eps.length];
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
    agent.on('free', (s) => sockets.add(s));
    agents.push(agent);
    const body = JSON.stringify({ key: b64(`bench/${i}`), value });
    const headers = { 'content-type': 'application/json',
                      'content-length': Buffer.byteLength(body) };
    const once = () => {
      if (!running) return;
      const t0 = process.hrtime.bigint();
      inflight++;
      const r = http.request({ ...ep, path: '/v3/kv/put',
                               method: 'POST', agent, headers }, (res) => {
        let text = '';
        res.on('data', (c) => { if (res.statusCode !== 200 && text.length < 200) text += c; });
        res.on('end', () => {
          inflight--;
          if (res.statusCode === 200) {
            if (inWindow) {
              lat.push(Number(process.hrtime.bigint() - t0) / 1000);
              done++;
            }
            setImmediate(once);
          } else {
            errors++;
            lastError = `http ${res.statusCode} ${text.trim().slice(0, 120)}`;
            setTimeout(once, 10);
          }
        });
      });
      r.on('error', (e) => {
        inflight--;
        errors++;
        lastError = String(e.message || e);
        setTimeout(once, 10);
      });
      r.end(body);
    };
    once();
  };
  for (let i = 0; i < n; i++) client(i);
  await new Promise((r) => setTimeout(r, req.warmup_ms));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  inWindow = true;
  await new Promise((r) => setTimeout(r, req.window_ms));
  inWindow = false;
  const t1 = process.hrtime.bigint();
  const cpu1 = process.cpuUsage(cpu0);
  running = false;
  const wall = Number(t1 - t0) / 1e9;
  // Let what is in flight land before the connections go.
  const end = Date.now() + 5000;
  while (inflight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  const conns = sockets.size;
  agents.forEach((a) => a.destroy());
  lat.sort((a, b) => a - b);
  const p50 = quantiles(lat, 0.5), p99 = quantiles(lat, 0.99);
  return {
    puts_per_s: done / wall, samples: done, window_s: wall,
    p50_us: p50.hist, p99_us: p99.hist,
    exact_p50_us: p50.exact, exact_p99_us: p99.exact,
    max_us: lat.length ? Math.round(lat[lat.length - 1]) : 0,
    mean_us: lat.length ? Math.round(lat.reduce((s, x) => s + x, 0) / lat.length) : 0,
    errors, last_error: lastError, connections: conns,
    cpu: (cpu1.user + cpu1.system) / 1e6 / wall,
  };
}

let armed = null;

async function arm(req) {
  if (armed) armed.agents.forEach((a) => a.destroy());
  const eps = req.endpoints.map(parseUrl);
  const agents = eps.map(() => new http.Agent({ keepAlive: true, maxSockets: Infinity }));
  const body = JSON.stringify({ key: b64('probe'), value: b64('x'.repeat(1024)) });
  for (let i = 0; i < eps.length; i++) {
    const r = await post(agents[i], eps[i], '/v3/kv/put', body, 5000);
    if (r.status !== 200) throw new Error(`arm ${req.endpoints[i]}: http ${r.status} ${r.body}`);
  }
  armed = { eps, agents, body };
  return {};
}

function probe(req) {
  if (!armed) return Promise.reject(new Error('probe before arm'));
  const since = BigInt(req.since_ns);
  const { eps, agents, body } = armed;
  return new Promise((resolve, reject) => {
    let k = 0, sent = 0, failed = 0, finished = false;
    const stop = (v, err) => {
      if (finished) return;
      finished = true;
      clearInterval(tick);
      clearTimeout(limit);
      // Drop the requests still hanging on the dead leader.
      agents.forEach((a) => a.destroy());
      armed = null;
      if (err) reject(err); else resolve(v);
    };
    const fire = () => {
      const i = k++ % eps.length;
      const t = process.hrtime.bigint();
      sent++;
      post(agents[i], eps[i], '/v3/kv/put', body, req.timeout_ms).then((r) => {
        if (r.status === 200) {
          const now = process.hrtime.bigint();
          stop({ ms: Number(now - since) / 1e6, sent_ms: Number(t - since) / 1e6,
                 endpoint: i, attempts: sent, failed });
        } else failed++;
      }, () => { failed++; });
    };
    const tick = setInterval(fire, req.interval_ms);
    const limit = setTimeout(() => stop(null, new Error('no put succeeded in time')),
                             req.timeout_ms);
    fire();
  });
}

const handlers = {
  status, load, arm, probe,
  now: async () => ({ ns: String(process.hrtime.bigint()) }),
};

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    let out;
    try {
      const req = JSON.parse(line);
      const h = handlers[req.cmd];
      if (!h) throw new Error(`unknown cmd '${req.cmd}'`);
      out = { ok: true, ...(await h(req)) };
    } catch (e) {
      out = { ok: false, error: String(e.message || e) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  });
});
rl.on('close', () => process.exit(0));
process.stdout.write('ready\n');
