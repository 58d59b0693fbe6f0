// Open the page in headless Chromium and print what it computed (window.lstmResult) as JSON.
//   node drive.js URL [--screenshot out.png] [--timeout-ms N]
// CHROMIUM: the browser binary (default /usr/bin/chromium, Debian's package).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

async function main(argv) {
  const url = argv[0];
  const shot = argv.includes('--screenshot') ? argv[argv.indexOf('--screenshot') + 1] : null;
  const timeout = argv.includes('--timeout-ms') ? Number(argv[argv.indexOf('--timeout-ms') + 1]) : 60000;
  if (!url) { console.error('usage: node drive.js URL [--screenshot out.png]'); process.exit(2); }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'lstm-web-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS,
    viewport: { width: 960, height: 520 },
  });
  try {
    const page = await context.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.lstmResult !== undefined, null, { timeout });
    const result = await page.evaluate(() => window.lstmResult);
    if (shot) await page.screenshot({ path: shot });
    result.userAgent = await page.evaluate(() => navigator.userAgent);
    if (result.error) result.logs = logs;
    console.log(JSON.stringify(result));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).catch((err) => { console.error(`error: ${err.message.split('\n')[0]}`); process.exit(1); });
