// Drives `nbbuild review` in headless Chromium (Debian's `chromium`) with
// playwright-core. Started by tests/integration/review.rs:
//
//   node tests/browser/review.mjs URL STEP...
//
// Steps (names are task names, kinds image|video, K a 1-based candidate):
//   images                      every image task: every candidate <img> loaded
//   videos:NAME                 the clips of NAME loaded (range requests)
//   pick:NAME:KIND:K            select the task, press the key K
//   flag:NAME:KIND:K            move the candidate cursor to K, press x
//   reroll:NAME:KIND            press r, read the quote, press Enter, wait until done
//   screenshot:NAME:KIND:PATH   the task view, as a PNG
//
// Prints one JSON object: {"steps": [...]} with one result per step.
// A missing browser or playwright-core is a failure (exit 3) that names
// the command installing it: nothing is skipped.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CHROMIUM = process.env.NBBUILD_CHROMIUM || "/usr/bin/chromium";

function fail(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(3);
}

if (!existsSync(CHROMIUM)) {
  fail(`no Chromium at ${CHROMIUM}\nhint: apt-get update && apt-get install -y chromium   (or run scripts/test, which installs it)`);
}
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  fail(`playwright-core is not installed (${e.message})\nhint: (cd tests/browser && npm ci)   (or run scripts/test, which installs it)`);
}

const [url, ...steps] = process.argv.slice(2);
if (!url) fail("usage: node review.mjs URL STEP...");

const profile = mkdtempSync(join(tmpdir(), "nbbuild-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const results = [];
const consoleErrors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(60000);
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector("#inbox [data-task]");

  const item = (name, kind) => page.locator(`#inbox [data-task="${name}"][data-kind="${kind}"]`);
  async function open(name, kind) {
    await item(name, kind).click();
    await page.waitForSelector(`#view .head[data-task="${name}"][data-kind="${kind}"]`);
  }
  async function lastAction(prefixes, before) {
    await page.waitForFunction(([p, b]) => {
      const a = document.body.dataset.lastAction || "";
      return a !== b && p.some((x) => a.startsWith(x));
    }, [prefixes, before]);
    return page.evaluate(() => document.body.dataset.lastAction);
  }
  async function imagesOf() {
    await page.waitForFunction(() => [...document.querySelectorAll("#view [data-candidate] img")].every((i) => i.complete));
    return page.evaluate(() => [...document.querySelectorAll("#view [data-candidate] img")].map((i) => i.naturalWidth));
  }

  for (const step of steps) {
    const [what, ...a] = step.split(":");
    if (what === "images") {
      const names = await page.evaluate(() => [...document.querySelectorAll('#inbox [data-kind="image"]')].map((e) => e.dataset.task));
      let images = 0, loaded = 0;
      for (const n of names) {
        await open(n, "image");
        const widths = await imagesOf();
        images += widths.length;
        loaded += widths.filter((w) => w > 0).length;
      }
      results.push({ step, tasks: names.length, images, loaded });
    } else if (what === "videos") {
      await open(a[0], "video");
      await page.waitForFunction(() => [...document.querySelectorAll("#view [data-candidate] video")].every((v) => v.readyState >= 1));
      const ready = await page.evaluate(() => [...document.querySelectorAll("#view [data-candidate] video")].map((v) => v.readyState));
      results.push({ step, videos: ready.length, ready });
    } else if (what === "pick") {
      const [name, kind, k] = a;
      await open(name, kind);
      const before = await page.evaluate(() => document.body.dataset.lastAction || "");
      await page.keyboard.press(k);
      const done = await lastAction(["pick:", "refused:"], before);
      await page.waitForSelector(`#view [data-candidate="${k}"].picked`, { timeout: 15000 }).catch(() => {});
      const picked = await page.evaluate(() => [...document.querySelectorAll("#view .cand.picked")].map((e) => Number(e.dataset.candidate)));
      results.push({ step, action: done, picked });
    } else if (what === "flag") {
      const [name, kind, k] = a;
      await open(name, kind);
      for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowLeft");
      for (let i = 1; i < Number(k); i++) await page.keyboard.press("ArrowRight");
      const before = await page.evaluate(() => document.body.dataset.lastAction || "");
      await page.keyboard.press("x");
      const done = await lastAction(["flag:", "unflag:"], before);
      await page.waitForSelector(`#view [data-candidate="${k}"].flagged`, { timeout: 15000 }).catch(() => {});
      const flagged = await page.evaluate(() => [...document.querySelectorAll("#view .cand.flagged")].map((e) => Number(e.dataset.candidate)));
      results.push({ step, action: done, flagged });
    } else if (what === "reroll") {
      const [name, kind] = a;
      await open(name, kind);
      await page.keyboard.press("r");
      await page.waitForSelector("#reroll-quote[data-quote]");
      const quote = await page.evaluate(() => {
        const q = document.getElementById("reroll-quote");
        return { id: q.dataset.quote, calls: Number(q.dataset.calls), credits: Number(q.dataset.credits) };
      });
      const before = await page.evaluate(() => document.body.dataset.lastAction || "");
      await page.keyboard.press("Enter");
      const started = await lastAction(["reroll:", "stale-quote"], before);
      let done = started;
      if (started.startsWith("reroll:")) done = await lastAction(["reroll-done", "reroll-failed"], started);
      await page.waitForFunction(() => !document.querySelector("#view .log"));
      results.push({ step, quote, started, done });
    } else if (what === "screenshot") {
      const [name, kind, ...p] = a;
      await open(name, kind);
      if (kind === "image") await imagesOf();
      await page.waitForTimeout(300);
      await page.screenshot({ path: p.join(":") });
      results.push({ step, path: p.join(":") });
    } else {
      fail(`unknown step ${step}`);
    }
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ steps: results, console_errors: consoleErrors }) + "\n");
