/**
 * Idle live clients: 1,000 clients with `createHttpSync({ live: true })`
 * holding pulls on one server for 60 s while nothing changes — the server's
 * RSS and CPU — then one push: how long until all 1,000 have the row.
 *
 * ```sh
 * node --import tsx bench/idle_live.ts                  # server on Node
 * node --import tsx bench/idle_live.ts --server all     # … on Node, Deno and Bun
 * node --import tsx bench/idle_live.ts --clients 1000 --seconds 60
 * ```
 *
 * The server is `push_server.ts` in a child process of the runtime
 * `--server` names (`server_child.ts`), on a `file:` database (WAL). The
 * clients are real: each an `openDatabase` replica on `:memory:` with a
 * started `ServerSyncManager` over `createHttpSync({ live: true })` (default
 * `liveWait`, 20 s: each re-asks about three times a minute), all in this
 * Node process. RSS is the child's `VmRSS`, CPU its user + system time from
 * `/proc/<pid>/stat`, over the idle window. The push is one `POST /push` of
 * one row by another client; the time runs until each client's `onChange`
 * reports the merge — the merges of 1,000 replicas run one after another
 * in this one process. What the server takes alone is then measured with
 * 1,000 bare held pulls (plain `fetch`, nothing merged) and another push:
 * the time until the last answer carrying the row arrived.
 *
 * The baseline, in the same run: the same server with no client, idle for
 * 10 s (RSS and CPU), and a raw `@libsql/client` read of one row — what
 * handing a client the row costs the database at least.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { createHttpSync } from "../http.ts";
import { openDatabase, ServerSyncManager } from "../mod.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { schema, taskData, type TasksDatabase } from "./fixtures.ts";
import { formatNumber, markdownTable, progress, tempDir } from "./lib.ts";
import { startServerChild } from "./server_child.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    server: { type: "string", default: "node" },
    clients: { type: "string", default: "1000" },
    seconds: { type: "string", default: "60" },
  },
});
const servers = values.server === "all" ? ["node", "deno", "bun"] : [values.server!];
const clientCount = Number(values.clients);
const seconds = Number(values.seconds);

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The child's resident memory (MB) and CPU time so far (ms).
function usage(pid: number): { rssMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // Fields after the command name: utime is the 14th field of the line, stime the 15th.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMb: rssKb / 1024, cpuMs: ticks * 10 };
}

// Usage of `pid` over `ms` of waiting: RSS at the end, CPU as a share of one core.
async function idle(pid: number, ms: number): Promise<{ rssMb: number; cpuPercent: number }> {
  const start = usage(pid);
  await delay(ms);
  const end = usage(pid);
  return { rssMb: end.rssMb, cpuPercent: ((end.cpuMs - start.cpuMs) / ms) * 100 };
}

interface LiveClient {
  readonly db: TasksDatabase;
  readonly manager: ServerSyncManager<typeof schema.tables>;
  // When the merge of the pushed row was reported.
  received?: number;
}

async function openClients(url: string): Promise<LiveClient[]> {
  const clients: LiveClient[] = [];
  for (let i = 0; i < clientCount; i++) {
    const db = await openDatabase({
      adapter: libsqlAdapter(createClient({ url: ":memory:" })),
      schema,
      nodeId: `client-${i}`,
    });
    const manager = new ServerSyncManager({ database: db, ...createHttpSync({ url, live: true }) });
    const client: LiveClient = { db, manager };
    db.onChange((change) => {
      if (change.source === "remote" && change.tables.includes("tasks")) {
        client.received ??= performance.now();
      }
    });
    manager.start();
    clients.push(client);
  }
  await Promise.all(clients.map((client) => client.manager.waitForFirstSync()));
  return clients;
}

// `clientCount` bare held pulls (plain fetch, nothing merged) from the
// caught-up cursor, then a push: ms until the last answer carrying the row
// arrived — the server's side of a wake-up, without the clients' merges.
async function bareHeldPulls(url: string): Promise<number> {
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then((response) => response.text());
  const head = { protocol: PROTOCOL_VERSION, schema: schema.hash };
  const caughtUp = JSON.parse(await post("/pull", { ...head, cursors: { tasks: null } }));
  const cursors = { tasks: caughtUp.changes.tasks.cursor };
  let pushedAt = 0;
  const answers = Array.from({ length: clientCount }, async () => {
    const text = await post("/pull", { ...head, cursors, wait: 30_000 });
    if (!text.includes("bare-row")) throw new Error(`a held pull answered ${text.slice(0, 200)}`);
    return performance.now();
  });
  await delay(3_000);
  pushedAt = performance.now();
  await post("/push", {
    ...head,
    nodeId: "writer",
    changes: [{
      table: "tasks",
      id: "bare-row",
      version: formatHlc({ ms: Date.now(), counter: 1, nodeId: "writer" }),
      deleted: false,
      data: taskData(2),
    }],
  });
  return Math.max(...(await Promise.all(answers))) - pushedAt;
}

async function rawRead(): Promise<number> {
  const dir = tempDir();
  const client = createClient({ url: `file:${join(dir.path, "raw.db")}` });
  await client.execute("CREATE TABLE t (id TEXT PRIMARY KEY, title TEXT)");
  await client.execute("INSERT INTO t VALUES ('a', 'one row')");
  const started = performance.now();
  for (let i = 0; i < 1_000; i++) await client.execute("SELECT * FROM t WHERE id = 'a'");
  const ms = (performance.now() - started) / 1_000;
  client.close();
  dir.cleanup();
  return ms;
}

const table: string[][] = [];
for (const runtime of servers) {
  const dir = tempDir();
  const server = await startServerChild(runtime, ROOT, join(dir.path, "server.db"));
  let clients: LiveClient[] = [];
  try {
    progress(`${runtime}: the server idle, no client`);
    await delay(2_000);
    const alone = await idle(server.pid, 10_000);
    progress(`${runtime}: ${clientCount} live clients`);
    clients = await openClients(server.url);
    await delay(2_000);
    progress(`${runtime}: ${clientCount} clients holding pulls for ${seconds} s`);
    const held = await idle(server.pid, seconds * 1_000);

    const pushedAt = performance.now();
    const response = await fetch(`${server.url}/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        protocol: PROTOCOL_VERSION,
        nodeId: "writer",
        schema: schema.hash,
        changes: [{
          table: "tasks",
          id: "the-row",
          version: formatHlc({ ms: Date.now(), counter: 0, nodeId: "writer" }),
          deleted: false,
          data: taskData(1),
        }],
      }),
    });
    if (!response.ok) throw new Error(`push answered ${response.status}`);
    await response.text();
    const deadline = performance.now() + 30_000;
    while (clients.some((c) => c.received === undefined) && performance.now() < deadline) {
      await delay(5);
    }
    const arrivals = clients.map((c) => (c.received ?? Infinity) - pushedAt).sort((a, b) => a - b);
    const missing = arrivals.filter((ms) => ms === Infinity).length;
    if (missing > 0) throw new Error(`${missing} clients did not get the row within 30 s`);
    await Promise.all(clients.map((c) => c.manager.stop()));
    const bare = await bareHeldPulls(server.url);
    const raw = await rawRead();
    table.push([
      runtime,
      `${formatNumber(alone.rssMb, 1)} MB, ${formatNumber(alone.cpuPercent, 1)} %`,
      `${formatNumber(held.rssMb, 1)} MB, ${formatNumber(held.cpuPercent, 1)} %`,
      `${formatNumber(bare, 0)} ms`,
      `${formatNumber(arrivals[Math.floor(arrivals.length / 2)]!, 0)} ms`,
      `${formatNumber(arrivals.at(-1)!, 0)} ms`,
      `${formatNumber(raw, 3)} ms`,
    ]);
  } finally {
    await Promise.all(clients.map((c) => c.manager.stop()));
    await Promise.all(clients.map((c) => c.db.close()));
    await server.stop();
    dir.cleanup();
  }
}

console.log(
  `\nIdle live clients: ${clientCount} clients holding pulls for ${seconds} s, then one push\n`,
);
console.log(markdownTable(
  [
    "Server",
    "Idle, no client (RSS, CPU)",
    `${clientCount} held pulls (RSS, CPU)`,
    `Push → ${clientCount} bare held pulls answered`,
    "Push → half have it merged",
    "Push → all have it merged",
    "Raw libSQL read of the row",
  ],
  table,
));
