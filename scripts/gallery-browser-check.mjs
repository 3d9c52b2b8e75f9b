#!/usr/bin/env node
// Opens gallery pages in headless Chromium over the DevTools protocol and checks that every image
// decodes (naturalWidth > 0, lazy images forced eager) and that nothing is logged as an error.
//
//   node scripts/gallery-browser-check.mjs --chromium /usr/bin/chromium \
//        [--screenshot out.png --screenshot-page N] [--width 1280] URL...
//
// CSS background images (the cross-seed sheets use sprite tiles) are probed as images too; a page
// must show at least one image to pass. Prints one JSON line per page and a summary line; exits 0 when every page passed, 1 when a check
// failed, 2 when Chromium could not be started or driven. Uses only Node's standard library (its own
// small WebSocket client), so it needs no npm packages and works on Node 18 and later.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HARD_LIMIT_MS = 90_000;
const PAGE_LIMIT_MS = 30_000;

function parseArgs(argv) {
  const opts = { chromium: 'chromium', screenshot: null, screenshotPage: 0, width: 1280, urls: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--chromium') opts.chromium = value();
    else if (a === '--screenshot') opts.screenshot = value();
    else if (a === '--screenshot-page') opts.screenshotPage = Number(value());
    else if (a === '--width') opts.width = Number(value());
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else opts.urls.push(a);
  }
  if (opts.urls.length === 0) throw new Error('no page URLs given');
  return opts;
}

// A minimal WebSocket client (RFC 6455) for ws://host:port/path: text frames, masking, fragmentation.
function openSocket(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const key = randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let open = false;
    let fragments = [];
    const ws = { onmessage: () => {}, onclose: () => {} };
    ws.send = (text) => {
      const payload = Buffer.from(text, 'utf8');
      const n = payload.length;
      const head = n < 126 ? Buffer.from([0x81, 0x80 | n])
        : n < 65536 ? Buffer.from([0x81, 0x80 | 126, n >> 8, n & 255])
        : Buffer.concat([Buffer.from([0x81, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
      const mask = randomBytes(4);
      for (let i = 0; i < n; i++) payload[i] ^= mask[i & 3];
      sock.write(Buffer.concat([head, mask, payload]));
    };
    ws.close = () => sock.destroy();
    sock.on('connect', () => {
      sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('error', (e) => (open ? ws.onclose(e) : reject(e)));
    sock.on('close', () => ws.onclose(new Error('devtools socket closed')));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        if (!/^HTTP\/1\.1 101/.test(head) || !head.includes(accept)) {
          reject(new Error(`websocket handshake refused: ${head.split('\r\n')[0]}`));
          sock.destroy();
          return;
        }
        open = true;
        buf = buf.subarray(end + 4);
        resolve(ws);
      }
      for (;;) {
        if (buf.length < 2) return;
        const fin = (buf[0] & 0x80) !== 0;
        const opcode = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        const masked = (buf[1] & 0x80) !== 0;
        const maskOff = off;
        if (masked) off += 4;
        if (buf.length < off + len) return;
        const payload = Buffer.from(buf.subarray(off, off + len));
        if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskOff + (i & 3)];
        buf = buf.subarray(off + len);
        if (opcode === 0x8) { sock.destroy(); return; }
        if (opcode === 0x9) continue; // ping: Chromium does not send them to clients
        if (opcode === 0x1 || opcode === 0x0) {
          fragments.push(payload);
          if (fin) {
            const text = Buffer.concat(fragments).toString('utf8');
            fragments = [];
            ws.onmessage(text);
          }
        }
      }
    });
  });
}

// DevTools protocol over one browser socket, with flattened page sessions.
class Cdp {
  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = [];
    ws.onmessage = (text) => {
      const msg = JSON.parse(text);
      if (msg.id !== undefined && this.pending.has(msg.id)) {
        const { resolve, reject, method } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const l of this.listeners) l(msg);
      }
    };
    ws.onclose = (e) => {
      for (const { reject } of this.pending.values()) reject(e);
      this.pending.clear();
    };
  }
  send(method, params = {}, sessionId = undefined) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }
  waitFor(predicate, ms, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      const l = (msg) => {
        if (predicate(msg)) {
          clearTimeout(timer);
          this.listeners = this.listeners.filter((x) => x !== l);
          resolve(msg);
        }
      };
      this.listeners.push(l);
    });
  }
}

function startChromium(path, width) {
  const profile = mkdtempSync(join(tmpdir(), 'gallery-chromium-'));
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-default-apps', '--disable-extensions', '--mute-audio', '--hide-scrollbars',
    `--window-size=${width},900`, `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank',
  ];
  const child = spawn(path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const endpoint = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chromium printed no DevTools endpoint in 30 s:\n${stderr}`)), 30_000);
    child.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${path}: ${e.message}`)); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`chromium exited with ${code}:\n${stderr}`)); });
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  const stop = () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    try { rmSync(profile, { recursive: true, force: true }); } catch { /* best effort */ }
  };
  return { endpoint, stop };
}

// Evaluated in the page: force lazy images to load, probe every CSS background image the same way,
// wait for all of them to settle, report the broken ones.
const IMAGE_CHECK = `(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach((i) => { i.loading = 'eager'; });
  const backgrounds = new Set();
  for (const el of document.querySelectorAll('*')) {
    for (const m of getComputedStyle(el).backgroundImage.matchAll(/url\\("([^"]+)"\\)/g)) backgrounds.add(m[1]);
  }
  const probes = [...backgrounds].map((u) => { const i = new Image(); i.src = u; return i; });
  const all = imgs.concat(probes);
  await Promise.all(all.map((i) => i.decode().catch(() => {})));
  const broken = all.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.getAttribute('src'));
  return JSON.stringify({ images: all.length, backgrounds: probes.length, broken });
})()`;

async function checkPage(cdp, url, shot, width) {
  const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true });
  const errors = [];
  const collect = (msg) => {
    if (msg.sessionId !== sessionId) return;
    if (msg.method === 'Runtime.consoleAPICalled' && (msg.params.type === 'error' || msg.params.type === 'assert')) {
      errors.push(`console.${msg.params.type}: ${msg.params.args.map((a) => a.value ?? a.description).join(' ')}`);
    } else if (msg.method === 'Runtime.exceptionThrown') {
      const d = msg.params.exceptionDetails;
      errors.push(`exception: ${d.exception?.description ?? d.text}`);
    } else if (msg.method === 'Log.entryAdded' && msg.params.entry.level === 'error') {
      errors.push(`log: ${msg.params.entry.text} ${msg.params.entry.url ?? ''}`.trim());
    }
  };
  cdp.listeners.push(collect);
  try {
    await cdp.send('Page.enable', {}, sessionId);
    await cdp.send('Runtime.enable', {}, sessionId);
    await cdp.send('Log.enable', {}, sessionId);
    await cdp.send('Emulation.setDeviceMetricsOverride', { width, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
    const loaded = cdp.waitFor((m) => m.sessionId === sessionId && m.method === 'Page.loadEventFired', PAGE_LIMIT_MS, `load of ${url}`);
    const nav = await cdp.send('Page.navigate', { url }, sessionId);
    if (nav.errorText) throw new Error(`navigation to ${url} failed: ${nav.errorText}`);
    await loaded;
    const result = await cdp.send('Runtime.evaluate', { expression: IMAGE_CHECK, awaitPromise: true, returnByValue: true }, sessionId);
    if (result.exceptionDetails) throw new Error(`image check threw: ${result.exceptionDetails.text}`);
    const report = JSON.parse(result.result.value);
    // let late console messages (failed loads) arrive
    await new Promise((r) => setTimeout(r, 300));
    if (shot) {
      // the page's content, not the empty viewport below it
      const bottom = await cdp.send('Runtime.evaluate', {
        expression: 'Math.ceil(Math.max(...Array.from(document.body.children, (e) => e.getBoundingClientRect().bottom)) + 24)',
        returnByValue: true,
      }, sessionId);
      const height = Math.min(Math.max(Number(bottom.result.value) || 0, 200), 2400);
      const { data } = await cdp.send('Page.captureScreenshot', {
        format: 'png', captureBeyondViewport: true, clip: { x: 0, y: 0, width, height, scale: 1 },
      }, sessionId);
      writeFileSync(shot, Buffer.from(data, 'base64'));
    }
    const title = await cdp.send('Runtime.evaluate', { expression: 'document.title', returnByValue: true }, sessionId);
    return { url, title: title.result.value, images: report.images, backgrounds: report.backgrounds, broken: report.broken, errors };
  } finally {
    cdp.listeners = cdp.listeners.filter((x) => x !== collect);
    await cdp.send('Target.closeTarget', { targetId }).catch(() => {});
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`usage error: ${e.message}`);
    return 2;
  }
  const chromium = startChromium(opts.chromium, opts.width);
  try {
    let cdp;
    try {
      cdp = new Cdp(await openSocket(await chromium.endpoint));
    } catch (e) {
      console.error(`setup error: ${e.message}`);
      return 2;
    }
    let failed = 0;
    for (const [i, url] of opts.urls.entries()) {
      const shot = opts.screenshot && i === opts.screenshotPage ? opts.screenshot : null;
      let r;
      try {
        r = await checkPage(cdp, url, shot, opts.width);
      } catch (e) {
        r = { url, images: 0, broken: [], errors: [`check failed: ${e.message}`] };
      }
      r.ok = r.broken.length === 0 && r.errors.length === 0 && r.images > 0;
      if (!r.ok) failed++;
      console.log(JSON.stringify(r));
    }
    console.log(`${opts.urls.length - failed} passed, ${failed} failed`);
    await cdp.send('Browser.close').catch(() => {});
    return failed === 0 ? 0 : 1;
  } finally {
    chromium.stop();
  }
}

const hard = setTimeout(() => { console.error(`setup error: gave up after ${HARD_LIMIT_MS} ms`); process.exit(2); }, HARD_LIMIT_MS);
main().then((code) => { clearTimeout(hard); process.exit(code); }, (e) => { console.error(`setup error: ${e.stack}`); process.exit(2); });
