// Test helper: open the generation demo in headless Debian Chromium (playwright-core, never a downloaded
// browser), wait for window.__demo.done, print {demo, console, pageErrors} as JSON.
//   node browser_generate.mjs job.json      job = {playwright, url, timeoutMs?}
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(job.playwright)("playwright-core");
const timeout = job.timeoutMs ?? 240_000;
const profile = mkdtempSync(join(tmpdir(), "wt-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: job.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"],
});
const out = { console: [], pageErrors: [] };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => out.console.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  await page.goto(job.url);
  await page.waitForFunction(() => window.__demo?.done === true, null, { timeout });
  out.demo = await page.evaluate(() => ({ ...window.__demo, isolated: crossOriginIsolated,
    shown: document.getElementById("out").textContent, status: document.getElementById("status").textContent }));
} catch (e) {
  out.fatal = String(e?.stack ?? e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
