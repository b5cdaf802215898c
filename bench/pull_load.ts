/**
 * Nothing-new pulls: 32 clients each asking one endpoint, as fast as it
 * answers, for what changed after cursors that have caught up — what every
 * idle client asks at every sync — over loopback HTTP, for the code of this
 * checkout ("after": answered from what the instance knows of the change
 * sequence, no database round trip) and of an older commit ("before",
 * default `204cd67`: one read batch per pull) in the same run, on a `file:`
 * database (WAL) and on a sqld.
 *
 * ```sh
 * node --import tsx bench/pull_load.ts                   # server on Node
 * node --import tsx bench/pull_load.ts --server all      # … on Node, Deno and Bun
 * node --import tsx bench/pull_load.ts --seconds 8 --clients 32 --store file --before 204cd67
 * ```
 *
 * The server is `push_server.ts` in a child process of the runtime
 * `--server` names (`server_child.ts`); the load is autocannon in this
 * process. Before the load, 500 rows are pushed and pulled to the end, and
 * the cursors that pull ended with are the ones every request sends; each
 * answer is checked: 200, no rows, the cursor unchanged.
 *
 * The raw libSQL baseline, measured in the same run: this process asking
 * `@libsql/client` on a `file:` database of the same 500 rows, one
 * `SELECT … WHERE seq > ? LIMIT 1` after the other — the cheapest question
 * "anything new?" a server could ask its database. The ratio is the
 * endpoint's pulls per second to those queries per second.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import autocannon from "autocannon";
import { formatHlc } from "../src/hlc.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { schema, taskData } from "./fixtures.ts";
import { checkout, formatNumber, markdownTable, tempDir } from "./lib.ts";
import { compareCheckouts, type LoadFigures } from "./server_child.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    seconds: { type: "string", default: "8" },
    clients: { type: "string", default: "32" },
    before: { type: "string", default: "204cd67" },
    server: { type: "string", default: "node" },
    store: { type: "string", default: "file,sqld" },
    rounds: { type: "string", default: "1" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const servers = values.server === "all" ? ["node", "deno", "bun"] : [values.server!];
const stores = values.store!.split(",");
const SEEDED = 500;

const post = async (url: string, body: unknown) => {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return await response.json();
};

// Pushes `SEEDED` rows and pulls them all: the cursors a caught-up client holds.
async function caughtUpCursors(url: string): Promise<Record<string, string | null>> {
  const changes = Array.from({ length: SEEDED }, (_, i) => ({
    table: "tasks",
    id: `seed-${i}`,
    version: formatHlc({ ms: Date.now(), counter: i, nodeId: "seed" }),
    deleted: false,
    data: taskData(i),
  }));
  await post(`${url}/push`, {
    protocol: PROTOCOL_VERSION,
    nodeId: "seed",
    schema: schema.hash,
    changes,
  });
  let cursors: Record<string, string | null> = { tasks: null };
  for (;;) {
    const page = await post(`${url}/pull`, {
      protocol: PROTOCOL_VERSION,
      schema: schema.hash,
      cursors,
      limit: 1_000,
    }) as { changes: Record<string, { cursor: string; hasMore: boolean }> };
    cursors = { tasks: page.changes.tasks!.cursor };
    if (!page.changes.tasks!.hasMore) return cursors;
  }
}

async function load(url: string, cursors: Record<string, string | null>, ms: number) {
  const body = JSON.stringify({ protocol: PROTOCOL_VERSION, schema: schema.hash, cursors });
  let failure: string | undefined;
  const result = await autocannon({
    url: `${url}/pull`,
    connections: clients,
    duration: ms / 1000,
    requests: [{
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      onResponse: (status: number, text: string) => {
        const page = status === 200
          ? (JSON.parse(text) as { changes: Record<string, { rows: unknown[]; cursor: string }> })
            .changes.tasks
          : undefined;
        if (page === undefined || page.rows.length > 0 || page.cursor !== cursors.tasks) {
          failure ??= `pull answered ${status}: ${text.slice(0, 300)}`;
        }
      },
    }],
  });
  if (failure !== undefined) throw new Error(failure);
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`${result.errors} errors, ${result.non2xx} non-2xx answers`);
  }
  return {
    perSecond: result.requests.total / (ms / 1000),
    p50: result.latency.p50,
    p99: result.latency.p99,
  } satisfies LoadFigures;
}

// Raw libSQL: "anything after this sequence number?" on the same rows, back to back, for `ms`.
async function rawBaseline(ms: number): Promise<number> {
  const dir = tempDir();
  const client = createClient({ url: `file:${join(dir.path, "raw.db")}` });
  try {
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute(
      "CREATE TABLE tasks (system_id TEXT PRIMARY KEY, system_seq INTEGER, title TEXT, done INTEGER, notes TEXT, priority REAL)",
    );
    await client.execute("CREATE INDEX tasks_seq ON tasks (system_seq)");
    await client.execute({
      sql:
        "INSERT INTO tasks SELECT 'r' || value, value, 'Task ' || value, 0, NULL, NULL FROM json_each(?)",
      args: [JSON.stringify(Array.from({ length: SEEDED }, (_, i) => i + 1))],
    });
    let queries = 0;
    const started = performance.now();
    while (performance.now() - started < ms) {
      await client.execute({
        sql: "SELECT system_id FROM tasks WHERE system_seq > ? ORDER BY system_seq LIMIT 1",
        args: [SEEDED],
      });
      queries++;
    }
    return (queries * 1000) / (performance.now() - started);
  } finally {
    client.close();
    dir.cleanup();
  }
}

const before = checkout(values.before!);
const table: string[][] = [];
try {
  const comparisons = await compareCheckouts({
    before: before.path,
    servers,
    stores,
    rounds,
    measure: async (url) => {
      const cursors = await caughtUpCursors(url);
      await load(url, cursors, 1_000); // warm-up
      return await load(url, cursors, seconds * 1_000);
    },
    baseline: () => rawBaseline(3_000),
    onMeasured: (runtime, store, side, figures) =>
      console.error(`${runtime} ${store} ${side}: ${formatNumber(figures.perSecond)} pulls/s`),
  });
  for (const { runtime, store, before: b, after: a, raw } of comparisons) {
    table.push([
      runtime,
      store,
      `${formatNumber(b.perSecond)} pulls/s (p50 ${b.p50} ms, p99 ${b.p99} ms)`,
      `${formatNumber(a.perSecond)} pulls/s (p50 ${a.p50} ms, p99 ${a.p99} ms)`,
      `×${formatNumber(a.perSecond / b.perSecond, 2)}`,
      `${formatNumber(raw)} queries/s`,
      `×${formatNumber(a.perSecond / raw, 2)}`,
    ]);
  }
} finally {
  before.remove();
}

console.log(
  `\nNothing-new pulls: ${clients} connections, ${seconds} s per measurement, ${rounds} round(s), median\n`,
);
console.log(markdownTable(
  [
    "Server",
    "Store",
    `Before (${values.before})`,
    "After",
    "After / before",
    "Raw libSQL (file)",
    "After / raw",
  ],
  table,
));
