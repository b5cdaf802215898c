/**
 * Peak memory of an initial sync: a fresh client (`openDatabase` on a new
 * `file:` database, `ServerSyncManager` + `createHttpSync`) pulls everything a
 * running sync server holds with one `manager.syncNow()`, and prints one JSON
 * line ({@linkcode PullMemoryReport}) with the resident set size (RSS) seen.
 *
 * Run in its own process by `sync.bench.ts` against a server in another
 * process (`sync_server.ts`), so only the client's memory is measured:
 *
 * ```sh
 * node --expose-gc --import tsx bench/pull_1m.ts --url http://127.0.0.1:8787 --rows 1000000
 * ```
 *
 * `--rows` is the number of rows the client must end with (it fails loudly
 * otherwise); `--limit` the rows per pull page (default 5,000, the server's
 * maximum). RSS is sampled every 10 ms with `setInterval` during the sync, and
 * the OS high-water mark (`process.resourceUsage().maxRSS`, KB on all three
 * runtimes) is reported too, as in `apply_100k.ts`.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { createHttpSync } from "../src/http_sync.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { openTasksDatabase } from "./fixtures.ts";
import { tempDir, timeMethods } from "./lib.ts";

/** What the script prints (one JSON line on stdout). */
export interface PullMemoryReport {
  /** Rows the client holds at the end. */
  readonly rows: number;
  /** Rows per page asked for. */
  readonly pullLimit: number;
  /** Pull requests made. */
  readonly pages: number;
  /** Duration of `syncNow()`, ms. */
  readonly ms: number;
  /** Time inside `applyServerChanges`, ms (the rest is HTTP, JSON and the server). */
  readonly applyMs: number;
  /** RSS when the script starts (runtime and modules loaded), MB. */
  readonly rssStartMb: number;
  /** RSS once the database is open, just before the sync, MB. */
  readonly rssBeforeMb: number;
  /** Highest sampled RSS, MB. */
  readonly peakRssMb: number;
  /** RSS after the sync, MB. */
  readonly rssAfterMb: number;
  /** The process's maximum RSS according to the OS, MB (`null` where unavailable). */
  readonly maxRssMb: number | null;
  /** Largest JavaScript heap seen (`heapUsed`), MB. */
  readonly peakHeapMb: number;
}

const MB = 1024 * 1024;

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? undefined : process.argv[at + 1];
}

function collectGarbage(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun !== undefined) g.Bun.gc(true);
  else g.gc?.();
}

const rssStart = process.memoryUsage().rss;
const url = option("url");
const expected = Number(option("rows"));
const pullLimit = Number(option("limit") ?? 5_000);
if (url === undefined || !Number.isSafeInteger(expected)) {
  throw new Error("usage: pull_1m.ts --url <server> --rows <expected rows> [--limit <page>]");
}

const dir = tempDir();
try {
  const db = await openTasksDatabase(`file:${join(dir.path, "client.db")}`);
  const http = createHttpSync({ url, pullLimit, timeout: 120_000 });
  // The local apply is timed; the rest of a page is HTTP, JSON and the server.
  const { proxy, times } = timeMethods(db, ["applyServerChanges"]);
  const fetched = timeMethods(http, ["onFetch"]);
  const manager = new ServerSyncManager({
    database: proxy,
    onSend: http.onSend,
    onFetch: fetched.proxy.onFetch,
  });

  collectGarbage();
  let peak = 0;
  let peakHeap = 0;
  const sample = () => {
    const usage = process.memoryUsage();
    peak = Math.max(peak, usage.rss);
    peakHeap = Math.max(peakHeap, usage.heapUsed);
  };
  const rssBefore = process.memoryUsage().rss;
  sample();
  const timer = setInterval(sample, 10);
  const start = performance.now();
  await manager.syncNow();
  const ms = performance.now() - start;
  sample();
  clearInterval(timer);
  const rssAfter = process.memoryUsage().rss;

  const [{ n }] = await db.query("SELECT count(*) AS n FROM tasks") as [{ n: number }];
  await db.close();
  if (Number(n) !== expected) {
    throw new Error(`The client holds ${n} rows after the pull, expected ${expected}`);
  }

  const maxRssKb = typeof process.resourceUsage === "function"
    ? process.resourceUsage().maxRSS
    : undefined;
  const report: PullMemoryReport = {
    rows: Number(n),
    pullLimit,
    pages: fetched.times.onFetch.calls,
    ms,
    applyMs: times.applyServerChanges.ms,
    rssStartMb: rssStart / MB,
    rssBeforeMb: rssBefore / MB,
    peakRssMb: peak / MB,
    rssAfterMb: rssAfter / MB,
    maxRssMb: maxRssKb === undefined ? null : maxRssKb / 1024,
    peakHeapMb: peakHeap / MB,
  };
  console.log(JSON.stringify(report));
} finally {
  dir.cleanup();
}
