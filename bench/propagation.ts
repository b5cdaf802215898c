/**
 * Propagation: client A writes a row; how long until client B's `watch`
 * listener has it — 200 writes, one at a time, over loopback HTTP, with
 * default options (`sendDelay` 25 ms, `createHttpSync({ live: true })`,
 * the server's default watch interval), through one endpoint instance and
 * through two instances over one database file (A on the first, B on the
 * second).
 *
 * ```sh
 * node --import tsx bench/propagation.ts
 * node_modules/.bin/deno run -A bench/propagation.ts
 * node_modules/.bin/bun bench/propagation.ts
 * node --import tsx bench/propagation.ts --writes 200
 * ```
 *
 * Clients and servers run on the runtime running the benchmark: the servers
 * are `push_server.ts` children (`server_child.ts`) on a `file:` database
 * (WAL), the clients two `openDatabase` replicas on `:memory:` in this
 * process, each with a started `ServerSyncManager`. Nobody calls
 * `syncNow`. The time runs from just before `a.db.insert` until B's watch
 * of `SELECT count(*) FROM tasks` shows the new row.
 *
 * The floor, measured in the same run: one raw `@libsql/client` insert on
 * `:memory:` plus one loopback `POST /pull` round trip to the same server —
 * the least any propagation costs (a local write and one request). The
 * ratio is the median propagation to the median floor.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { createHttpSync } from "../http.ts";
import { openDatabase, ServerSyncManager } from "../mod.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { schema, taskData, type TasksDatabase } from "./fixtures.ts";
import { formatNumber, markdownTable, median, progress, runtimeInfo, tempDir } from "./lib.ts";
import { startServerChild } from "./server_child.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { writes: { type: "string", default: "200" } },
});
const writes = Number(values.writes);
const runtime = runtimeInfo();

async function liveClient(url: string, nodeId: string) {
  const db: TasksDatabase = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    nodeId,
  });
  const manager = new ServerSyncManager({ database: db, ...createHttpSync({ url, live: true }) });
  manager.start();
  await manager.waitForFirstSync();
  return { db, manager };
}

// The rows B's watch counts, and a way to wait until it counts `n`.
function counter(db: TasksDatabase) {
  let count = 0;
  let waiting: { n: number; resolve: () => void } | undefined;
  const stop = db.watch("SELECT count(*) AS n FROM tasks", [], (rows) => {
    count = Number(rows[0]?.n ?? 0);
    if (waiting !== undefined && count >= waiting.n) {
      waiting.resolve();
      waiting = undefined;
    }
  });
  return {
    stop,
    reach: (n: number) =>
      new Promise<void>((resolve, reject) => {
        if (count >= n) return resolve();
        const timer = setTimeout(
          () => reject(new Error(`row ${n} did not arrive in 10 s`)),
          10_000,
        );
        waiting = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      }),
  };
}

const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;

async function propagation(urlA: string, urlB: string): Promise<number[]> {
  const a = await liveClient(urlA, "writer");
  const b = await liveClient(urlB, "watcher");
  const seen = counter(b.db);
  const times: number[] = [];
  try {
    for (let i = 0; i < writes; i++) {
      const started = performance.now();
      await a.db.insert("tasks", taskData(i));
      await seen.reach(i + 1);
      times.push(performance.now() - started);
    }
  } finally {
    seen.stop();
    await a.manager.stop();
    await b.manager.stop();
    await a.db.close();
    await b.db.close();
  }
  return times;
}

// A raw local insert plus one nothing-new pull round trip, `writes` times.
async function floor(url: string): Promise<number[]> {
  const client = createClient({ url: ":memory:" });
  await client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT)");
  const body = JSON.stringify({
    protocol: PROTOCOL_VERSION,
    schema: schema.hash,
    cursors: { tasks: null },
  });
  const times: number[] = [];
  for (let i = 0; i < writes; i++) {
    const started = performance.now();
    await client.execute({ sql: "INSERT INTO t (title) VALUES (?)", args: [`t${i}`] });
    const response = await fetch(`${url}/pull`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    await response.text();
    times.push(performance.now() - started);
  }
  client.close();
  return times;
}

const rows: string[][] = [];
for (const instances of [1, 2]) {
  const dir = tempDir();
  const file = join(dir.path, "server.db");
  const one = await startServerChild(runtime.name, ROOT, file);
  const two = instances === 2 ? await startServerChild(runtime.name, ROOT, file) : one;
  try {
    progress(`${runtime.name}: ${writes} writes through ${instances} instance(s)`);
    const times = (await propagation(one.url, two.url)).sort((x, y) => x - y);
    const base = median(await floor(two.url));
    rows.push([
      instances === 1 ? "one instance" : "two instances, one database",
      `${formatNumber(percentile(times, 0.5), 1)} ms`,
      `${formatNumber(percentile(times, 0.99), 1)} ms`,
      `${formatNumber(times.at(-1)!, 1)} ms`,
      `${formatNumber(base, 2)} ms`,
      `×${formatNumber(percentile(times, 0.5) / base, 1)}`,
    ]);
  } finally {
    await one.stop();
    if (two !== one) await two.stop();
    dir.cleanup();
  }
}

console.log(`\nPropagation, ${runtime.label}: ${writes} writes one at a time, default options\n`);
console.log(markdownTable(
  ["Path", "p50", "p99", "max", "Floor (raw insert + one pull)", "p50 / floor"],
  rows,
));
