// Drives Debian's chromium (headless, through playwright-core) against a running
// ingest-server, with Segment's analytics.js (@segment/analytics-next, UMD build)
// loaded by test pages served from other origins than the server's.
//
// Run by ingest-server/tests/browser.rs, which starts the server, reads the
// stored objects back and checks them. Environment:
//   SERVER      http://127.0.0.1:PORT of the ingest-server
//   WRITE_KEY   a write key allowed for PAGE_PORT's origin
//   PAGE_PORT   port of the allowed page origin (http://127.0.0.1:PAGE_PORT)
//   EVIL_PORT   port of an origin the server does not allow
//   NODE_MODULES  directory holding playwright-core and @segment/analytics-next
//   CHROMIUM    the browser binary (default /usr/bin/chromium)
//   DRIVER_DEBUG  if set, log the pages' requests to the server and localStorage
// Protocol on stdout: `EXPECT <json>` (the test ids the pages sent, each to be
// stored exactly once), `EVIL <json>` (what the disallowed page saw), then
// `READY`. The driver then keeps the browser open until a line arrives on
// stdin (or stdin closes), so late retries can still land, and exits.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const readline = require('readline');

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`driver: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const SERVER = env('SERVER');
const KEY = env('WRITE_KEY');
const PAGE_PORT = Number(env('PAGE_PORT'));
const EVIL_PORT = Number(env('EVIL_PORT'));
const NODE_MODULES = env('NODE_MODULES');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const { chromium } = require(path.join(NODE_MODULES, 'playwright-core'));
const UMD = path.join(NODE_MODULES, '@segment', 'analytics-next', 'dist', 'umd');
// RudderStack's build with its plugins inside (the others load them from its CDN).
const RUDDER = path.join(NODE_MODULES, '@rudderstack', 'analytics-js', 'dist', 'npm', 'modern', 'bundled', 'umd', 'index.js');

// Every test stops by itself: the whole run gets a bound.
const watchdog = setTimeout(() => {
  console.error('driver: gave up after 150 s');
  process.exit(3);
}, 150_000);

// The allowed page's origin loads analytics.js from its own
// /analytics-next/bundles/ (where the UMD build loads its chunks from) and its
// settings from the server (`cdnURL`), as a site pointed at Tributary would.
const head = (title) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>
<script>
  // Where the UMD build loads its code chunks from (read when the script runs):
  // this page's own origin. Settings come from cdnURL, the server.
  window.analytics = { _cdn: location.origin };
  window.SERVER = ${JSON.stringify(SERVER)};
  window.KEY = ${JSON.stringify(KEY)};
  window.sent = [];
  window.failures = [];
  window.onerror = (m) => { window.failures.push(String(m)); };
  if (${JSON.stringify(!!process.env.DRIVER_DEBUG)}) console.log('localStorage at load: ' + JSON.stringify(localStorage));
  window.addEventListener('unhandledrejection', (e) => { window.failures.push(String(e.reason)); });
</script>
<script src="/analytics-next/bundles/index.js"></script>
</head><body><h1>${title}</h1>`;

// A track event sent by hand the way a beacon sends it: text/plain, the write
// key in the body, no header a preflight would be needed for.
const rawEvent = (testId, messageId) =>
  `JSON.stringify({writeKey: KEY, type: 'track', event: 'Raw', messageId: ${JSON.stringify(messageId)},
     anonymousId: 'anon-raw', properties: {testId: ${JSON.stringify(testId)}}})`;

const load = (strategy) => `
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: KEY, cdnURL: SERVER },
    {
      integrations: { 'Segment.io': { protocol: 'http', deliveryStrategy: ${JSON.stringify(strategy)} } },
      // Its own metrics every second instead of 30, so the test sees /m answered.
      updateCDNSettings: (s) => ({ ...s, metrics: { ...(s.metrics || {}), flushTimer: 1000 } }),
    });
  window.ajs = analytics;`;

const pages = {
  // Standard delivery: one text/plain fetch per event to /v1/<letter>, with
  // keepalive so that what is in flight at unload is still delivered.
  '/page1.html': `${head('page 1')}
<script>
  // What a page sends itself at unload: a beacon (text/plain, key in the body).
  // (An event tracked with analytics.js inside pagehide is not sent: its
  // pipeline waits for a timer before the event reaches the Segment.io plugin,
  // and the page is gone by then; observed with 1.84. Its own unload path is
  // the batching mode's keepalive flush, which page 2 uses.)
  window.addEventListener('pagehide', () => {
    navigator.sendBeacon(SERVER + '/v1/t', ${rawEvent('p1-beacon-pagehide', 'raw-beacon-pagehide')});
  });
  (async () => {
    ${load({ strategy: 'standard', config: { keepalive: true } })}
    await ajs.page('Home', { testId: 'p1-page' });
    await ajs.identify('user-1', { email: 'u1@example.com', testId: 'p1-identify' });
    await ajs.track('Clicked', { testId: 'p1-track' });
    await ajs.group('group-1', { name: 'G', testId: 'p1-group' });
    await ajs.screen('Main', { testId: 'p1-screen' });
    await ajs.alias('alias-p1', 'user-1');
    // The same event twice (a client retry): stored once.
    for (let i = 0; i < 2; i++) {
      const r = await fetch(SERVER + '/v1/t', { method: 'POST', headers: { 'Content-Type': 'text/plain' },
        body: ${rawEvent('p1-raw-retried', 'raw-retried')} });
      window.sent.push([r.status, await r.text()]);
    }
    // sendBeacon bodies (text/plain;charset=UTF-8), twice with one messageId.
    for (let i = 0; i < 2; i++) {
      window.sent.push(['beacon', navigator.sendBeacon(SERVER + '/v1/t', ${rawEvent('p1-beacon', 'raw-beacon')})]);
    }
    window.done = true;
  })().catch((e) => { window.failures.push('page1: ' + e); });
</script></body></html>`,
  // Batching delivery: events wait in memory (size and timeout far away) and
  // go to /v1/b (Basic auth, preflighted) only when the page is hidden, with
  // keepalive: every event of this page is sent at pagehide.
  '/page2.html': `${head('page 2')}
<script>
  (async () => {
    ${load({ strategy: 'batching', config: { size: 100, timeout: 600000 } })}
    await ajs.track('Batched 1', { testId: 'p2-track-1' });
    await ajs.track('Batched 2', { testId: 'p2-track-2' });
    await ajs.page('Second', { testId: 'p2-page' });
    await ajs.identify('user-2', { testId: 'p2-identify' });
    window.done = true;
  })().catch((e) => { window.failures.push('page2: ' + e); });
</script></body></html>`,
  // Sends what the earlier pages persisted at pagehide, if anything.
  '/page3.html': `${head('page 3')}
<script>
  (async () => {
    ${load({ strategy: 'standard', config: { keepalive: true } })}
    await ajs.track('Last', { testId: 'p3-track' });
    window.done = true;
  })().catch((e) => { window.failures.push('page3: ' + e); });
</script></body></html>`,
};

// RudderStack's JS SDK: JSON with Basic auth and an AnonymousId header to
// /v1/<type> (preflighted). Its source config (normally from its control
// plane) is given in code.
const rudderPage = `<!doctype html><html><head><meta charset="utf-8"><title>rudder</title>
<script>
  window.SERVER = ${JSON.stringify(SERVER)};
  window.KEY = ${JSON.stringify(KEY)};
  window.failures = [];
  window.onerror = (m) => { window.failures.push(String(m)); };
</script>
<script src="/rudder/index.js"></script>
</head><body><h1>rudder</h1>
<script>
  (async () => {
    const ra = new rudderanalytics.RudderAnalytics();
    ra.load(KEY, SERVER, {
      logLevel: 'ERROR',
      getSourceConfig: () => ({ source: { id: 'tributary-test', name: 'web', writeKey: KEY, enabled: true,
        workspaceId: 'w', config: {}, destinations: [] } }),
    });
    await new Promise((resolve) => ra.ready(resolve));
    ra.page('Docs', 'Rudder', { testId: 'rs-page' });
    ra.track('Rudder Clicked', { testId: 'rs-track' });
    ra.identify('rs-user', { testId: 'rs-identify' });
    ra.group('rs-group', { testId: 'rs-group' });
    ra.alias('rs-alias');
    window.done = true;
  })().catch((e) => { window.failures.push('rudder: ' + e); });
</script></body></html>`;

// The disallowed origin: analytics.js with inline settings (so it gets as far
// as sending), a beacon, a no-cors fetch (both reach the server whatever CORS
// says) and a CORS fetch (which the browser must block).
const evilPage = `${head('evil')}
<script>
  window.evil = {};
  (async () => {
    const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
      { writeKey: KEY, cdnSettings: { integrations: { 'Segment.io': {
          apiKey: KEY, apiHost: SERVER.replace('http://', '') + '/v1', protocol: 'http' } },
        metrics: { sampleRate: 0 } } });
    analytics.track('Evil', { testId: 'evil-ajs' });
    evil.beacon = navigator.sendBeacon(SERVER + '/v1/t', ${rawEvent('evil-beacon', 'evil-beacon')});
    await fetch(SERVER + '/v1/t', { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
      body: ${rawEvent('evil-nocors', 'evil-nocors')} });
    try {
      await fetch(SERVER + '/v1/t', { method: 'POST', headers: { 'Content-Type': 'text/plain' },
        body: ${rawEvent('evil-cors', 'evil-cors')} });
      evil.corsFetch = 'answer readable';
    } catch (e) { evil.corsFetch = 'blocked'; }
    try {
      await fetch(SERVER + '/v1/projects/' + KEY + '/settings');
      evil.settings = 'answer readable';
    } catch (e) { evil.settings = 'blocked'; }
    window.done = true;
  })().catch((e) => { window.failures.push('evil: ' + e); window.done = true; });
</script></body></html>`;

function serve(port, routes) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/rudder/index.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      fs.createReadStream(RUDDER).pipe(res);
      return;
    }
    if (url.pathname.startsWith('/analytics-next/bundles/')) {
      const name = path.basename(url.pathname);
      const file = path.join(UMD, name);
      if (!/^[\w.-]+\.js$/.test(name) || !fs.existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      fs.createReadStream(file).pipe(res);
      return;
    }
    const page = routes[url.pathname];
    if (page === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function visit(page, url) {
  await page.goto(url);
  await page.waitForFunction(() => window.done === true, null, { timeout: 60_000 });
  const failures = await page.evaluate(() => window.failures);
  if (failures.length) throw new Error(`${url}: ${failures.join('; ')}`);
  return page.evaluate(() => window.sent);
}

async function main() {
  const servers = [await serve(PAGE_PORT, { ...pages, '/rudder.html': rudderPage }), await serve(EVIL_PORT, { '/evil.html': evilPage })];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    if (process.env.DRIVER_DEBUG) page.on('console', (m) => console.error(`[page ${m.type()}] ${m.text()}`));
    if (process.env.DRIVER_DEBUG) page.on('request', (r) => { if (r.url().startsWith(SERVER)) console.error(`[request] ${r.method()} ${r.url()} ${(r.postData() || '').slice(0, 300)}`); });
    if (process.env.DRIVER_DEBUG) page.on('requestfailed', (r) => console.error(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    const origin = `http://127.0.0.1:${PAGE_PORT}`;
    const sent = await visit(page, `${origin}/page1.html`);
    console.error(`page1 raw sends: ${JSON.stringify(sent)}`);
    for (const [status, body] of sent.filter(([s]) => s !== 'beacon')) {
      if (status !== 200) throw new Error(`page1: a text/plain POST got ${status}: ${body}`);
    }
    if (!sent.filter(([s]) => s === 'beacon').every(([, queued]) => queued === true)) {
      throw new Error('page1: sendBeacon refused to queue a beacon');
    }
    // Navigating away fires pagehide on page 1, then on page 2.
    await visit(page, `${origin}/page2.html`);
    await visit(page, `${origin}/page3.html`);

    // RudderStack in its own tab, left open: it sends from a queue.
    const rudder = await context.newPage();
    if (process.env.DRIVER_DEBUG) {
      rudder.on('console', (m) => console.error(`[rudder ${m.type()}] ${m.text()}`));
      rudder.on('request', (r) => console.error(`[rudder request] ${r.method()} ${r.url()} ${(r.postData() || '').slice(0, 200)}`));
      rudder.on('requestfailed', (r) => console.error(`[rudder requestfailed] ${r.url()} ${r.failure()?.errorText}`));
      rudder.on('response', (r) => console.error(`[rudder response] ${r.status()} ${r.url()}`));
    }
    await visit(rudder, `${origin}/rudder.html`);

    const evil = await context.newPage();
    if (process.env.DRIVER_DEBUG) evil.on('console', (m) => console.error(`[evil ${m.type()}] ${m.text()}`));
    await evil.goto(`http://127.0.0.1:${EVIL_PORT}/evil.html`);
    await evil.waitForFunction(() => window.done === true, null, { timeout: 60_000 });
    const seen = await evil.evaluate(() => ({ ...window.evil, failures: window.failures }));

    const expect = [
      'p1-page', 'p1-identify', 'p1-track', 'p1-group', 'p1-screen', 'alias:/page1.html',
      'p1-raw-retried', 'p1-beacon', 'p1-beacon-pagehide',
      'p2-track-1', 'p2-track-2', 'p2-page', 'p2-identify', 'p3-track',
      'rs-page', 'rs-track', 'rs-identify', 'rs-group', 'alias:/rudder.html',
    ];
    console.log(`EXPECT ${JSON.stringify(expect)}`);
    console.log(`EVIL ${JSON.stringify(seen)}`);
    console.log('READY');
    // Keep the pages open (the persisted queues keep retrying) until told to stop.
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise((resolve) => {
      rl.once('line', resolve);
      rl.once('close', resolve);
    });
    rl.close();
  } finally {
    await browser.close();
    for (const s of servers) s.close();
  }
  clearTimeout(watchdog);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`driver: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
