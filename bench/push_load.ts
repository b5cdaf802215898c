/**
 * Push throughput: 32 clients each pushing batches of 10 new rows to one
 * endpoint as fast as it answers, over loopback HTTP, for the code of this
 * checkout ("after") and of an older commit ("before", default `bca089d`:
 * four round trips per push, one push per write) in the same run, on a
 * `file:` database (WAL, `synchronous = FULL`) and on a sqld.
 *
 * ```sh
 * node --import tsx bench/push_load.ts                  # server on Node
 * node --import tsx bench/push_load.ts --server deno     # … on Deno (also bun, all)
 * node --import tsx bench/push_load.ts --seconds 10 --clients 32 --rows 10 --before bca089d
 * ```
 *
 * The server runs in a child process (`push_server.ts`) of the runtime
 * `--server` names, so the load and the server share the machine's cores
 * but not an event loop. The load is autocannon in this process (so the
 * benchmark itself runs on Node): each connection sends its next push when
 * the last is answered; every push carries new rows (fresh ids, current
 * versions), so every change is applied — a write, not a stale no-op. Each
 * answer is checked: 200 and every verdict `applied`, else the run fails.
 *
 * The raw libSQL baseline, measured in the same run: this process writing
 * the same 10-row batches with `@libsql/client` on a `file:` database in
 * WAL mode, one `batch` (one transaction, one commit) after the other, as
 * fast as it can — the commits per second a server doing one write per push
 * could reach at best. The ratio is the endpoint's pushes per second to it.
 *
 * The "before" code comes from `git worktree add` of `--before` into a
 * temporary directory, with this checkout's `node_modules` linked in.
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
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "32" },
    rows: { type: "string", default: "10" },
    before: { type: "string", default: "bca089d" },
    server: { type: "string", default: "node" },
    store: { type: "string", default: "file,sqld" },
    rounds: { type: "string", default: "1" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const rowsPerPush = Number(values.rows);
const rounds = Number(values.rounds);
const servers = values.server === "all" ? ["node", "deno", "bun"] : [values.server!];
const stores = values.store!.split(",");

/** One measured load. */
interface LoadResult extends LoadFigures {
  readonly pushes: number;
}

let serial = 0;
// A push of `rowsPerPush` new rows from `client`.
function pushBody(client: number): string {
  const changes = [];
  for (let i = 0; i < rowsPerPush; i++) {
    const n = serial++;
    changes.push({
      table: "tasks",
      id: `c${client}-${n}`,
      version: formatHlc({ ms: Date.now(), counter: n % 1e9, nodeId: `client-${client}` }),
      deleted: false,
      data: taskData(n),
    });
  }
  return JSON.stringify({
    protocol: PROTOCOL_VERSION,
    nodeId: `client-${client}`,
    schema: schema.hash,
    changes,
  });
}

// `clients` connections pushing for `ms` (autocannon: a load generator far
// lighter than `fetch`, so the machine's cores go to the server); every
// answer must apply every change.
async function load(url: string, ms: number): Promise<LoadResult> {
  let client = 0;
  let failure: string | undefined;
  const result = await autocannon({
    url: `${url}/push`,
    connections: clients,
    duration: ms / 1000,
    requests: [{
      method: "POST",
      headers: { "content-type": "application/json" },
      setupRequest: (request: Record<string, unknown>) => ({
        ...request,
        body: pushBody(client++ % clients),
      }),
      onResponse: (status: number, body: string) => {
        if (
          status !== 200 || (JSON.parse(body) as { results: { status: string }[] }).results
            .some((r) => r.status !== "applied")
        ) {
          failure ??= `push answered ${status}: ${body.slice(0, 300)}`;
        }
      },
    }],
  });
  if (failure !== undefined) throw new Error(failure);
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`${result.errors} errors, ${result.non2xx} non-2xx answers`);
  }
  return {
    pushes: result.requests.total,
    perSecond: result.requests.total / (ms / 1000),
    p50: result.latency.p50,
    p99: result.latency.p99,
  };
}

// Raw libSQL: the same batches, one transaction each, back to back, for `ms`.
async function rawBaseline(ms: number): Promise<number> {
  const dir = tempDir();
  const client = createClient({ url: `file:${join(dir.path, "raw.db")}` });
  try {
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute(
      "CREATE TABLE tasks (system_id TEXT PRIMARY KEY, system_version TEXT, title TEXT, done INTEGER, notes TEXT, priority REAL)",
    );
    let commits = 0;
    let n = 0;
    const started = performance.now();
    while (performance.now() - started < ms) {
      const rows = Array.from({ length: rowsPerPush }, () => {
        const i = n++;
        const data = taskData(i);
        return [
          `r${i}`,
          formatHlc({ ms: Date.now(), counter: i % 1e9, nodeId: "raw" }),
          data.title,
          data.done,
          data.notes,
          data.priority,
        ];
      });
      await client.batch([{
        sql:
          "INSERT INTO tasks SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)",
        args: [JSON.stringify(rows)],
      }], "write");
      commits++;
    }
    return (commits * 1000) / (performance.now() - started);
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
      await load(url, 1_000); // warm-up
      return await load(url, seconds * 1_000);
    },
    baseline: () => rawBaseline(3_000),
  });
  for (const { runtime, store, before: b, after: a, raw } of comparisons) {
    table.push([
      runtime,
      store,
      `${formatNumber(b.perSecond)} req/s (p50 ${formatNumber(b.p50, 1)}, p99 ${
        formatNumber(b.p99, 1)
      } ms)`,
      `${formatNumber(a.perSecond)} req/s (p50 ${formatNumber(a.p50, 1)}, p99 ${
        formatNumber(a.p99, 1)
      } ms)`,
      `×${formatNumber(a.perSecond / b.perSecond, 2)}`,
      `${formatNumber(raw)} commits/s`,
      `${formatNumber(a.perSecond / raw, 2)} (before ${formatNumber(b.perSecond / raw, 2)})`,
    ]);
    console.log(JSON.stringify({ runtime, store, before: b, after: a, raw }));
  }
} finally {
  before.remove();
}
console.log(
  `\n${clients} clients pushing ${rowsPerPush} new rows each, ${seconds} s per run, ${rounds} round(s), before = ${values.before}\n`,
);
console.log(markdownTable(
  ["server", "database", "before", "after", "after / before", "raw libSQL", "after / raw"],
  table,
));
