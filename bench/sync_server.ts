/**
 * A sync server in its own process, for `sync.bench.ts`: `createSyncServer`
 * over `openServerDatabase` on a `file:` libSQL database, served with
 * `serve()` on 127.0.0.1, optionally seeded with `--seed N` rows first.
 *
 * ```sh
 * node --import tsx bench/sync_server.ts --db /tmp/server.db [--seed 1000000]
 * ```
 *
 * Once listening it prints one JSON line ({@linkcode ServerReady}) on stdout,
 * then reads commands from stdin, one per line, answering each with one JSON
 * line: `sequence` → `{ "sequence": n }` (the server's change sequence, i.e. the
 * cursor of a client that has pulled everything), `stats` → `{ "rssMb": … }`,
 * `times` → {@linkcode ServerTimes}, `open <file>` → closes the server and its
 * database and starts a new one, unseeded, on `<file>` (answering a new
 * {@linkcode ServerReady}: a new port), so that runs on fresh databases share
 * one warmed-up process. When stdin ends it closes the server and the database
 * and exits.
 *
 * Seeding writes the rows straight into the server's table with one SQL
 * statement (a recursive CTE), after `openServerDatabase` has created the
 * tables: every row gets valid system columns (a UUID-shaped id, an HLC
 * version and creation time an hour in the past, `is_deleted = 0`) and
 * `system_seq` 1..N, and `_sync_meta.sequence` is set to N, exactly as N
 * single-row pushes would have left them. The declared values follow
 * `taskData(i)` of `fixtures.ts`.
 *
 * @module
 */

import { createInterface } from "node:readline";
import process from "node:process";
import { createClient } from "@libsql/client";
import { createSyncServer, openServerDatabase } from "../server/mod.ts";
import { serve } from "../server/serve.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { schema } from "./fixtures.ts";
import { timeMethods } from "./lib.ts";

/** The line printed once the server listens. */
export interface ServerReady {
  /** `http://127.0.0.1:port`. */
  readonly url: string;
  /** Rows seeded. */
  readonly seeded: number;
  /** Time the seeding took, ms. */
  readonly seedMs: number;
  /** The server's change sequence after seeding. */
  readonly sequence: number;
}

/** The answer to `times`: the database's push and pull, and the process's CPU time, since the last `open`. */
export interface ServerTimes {
  readonly pushMs: number;
  readonly pushes: number;
  readonly pullMs: number;
  readonly pulls: number;
  /** CPU time of this process (user + system), ms. */
  readonly cpuMs: number;
}

const MB = 1024 * 1024;

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? undefined : process.argv[at + 1];
}

/**
 * The seeding statement: rows 0..count-1 with `system_seq` 1..count and
 * versions `<ms>:<seq>:server`, the values of `taskData(i)`.
 */
function seedSql(versionMs: number): string {
  const ms = String(versionMs).padStart(19, "0");
  return `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) ` +
    `INSERT INTO "tasks" ("title", "done", "notes", "priority", "system_id", "system_version", ` +
    `"system_created_at", "is_deleted", "system_seq") ` +
    `SELECT 'Task ' || i, i % 2, ` +
    `CASE WHEN i % 3 = 0 THEN NULL ELSE 'Notes for task ' || i || ', revision 0' END, ` +
    `CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 100) / 10.0 END, ` +
    `printf('00000000-0000-7000-8000-%012x', i + 1), ` +
    `printf('${ms}:%09d:server', i + 1), printf('${ms}:%09d:server', i + 1), 0, i + 1 FROM n`;
}

const path = option("db");
if (path === undefined) throw new Error("usage: sync_server.ts --db <file> [--seed <rows>]");
const seed = Number(option("seed") ?? 0);

/** A running server on one database file, timing the database's push and pull. */
async function start(path: string, seed: number) {
  const client = createClient({ url: `file:${path}` });
  const opened = await openServerDatabase({
    adapter: libsqlAdapter(client),
    schema,
    journalMode: "wal", // as server/main.ts does for file: databases
  });
  const timed = timeMethods(opened, ["applyPush", "pullJson"]);
  const cpuAtStart = cpuMs();

  const readSequence = async () => {
    const { rows } = await client.execute(`SELECT value FROM _sync_meta WHERE key = 'sequence'`);
    return rows[0] === undefined ? 0 : Number(rows[0].value);
  };

  const seedStart = performance.now();
  if (seed > 0) {
    // The server's tables exist now; nothing else uses the connection yet.
    await client.batch([
      { sql: seedSql(Date.now() - 3_600_000), args: [seed] },
      {
        sql: `INSERT INTO _sync_meta (key, value) VALUES ('sequence', ?) ` +
          `ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        args: [String(seed)],
      },
    ], "write");
  }
  const seedMs = performance.now() - seedStart;

  const server = await serve(createSyncServer({ database: timed.proxy }).fetch, {
    hostname: "127.0.0.1",
  });
  const ready: ServerReady = {
    url: server.url,
    seeded: seed,
    seedMs,
    sequence: await readSequence(),
  };
  return {
    ready,
    readSequence,
    times: (): ServerTimes => ({
      pushMs: timed.times.applyPush.ms,
      pushes: timed.times.applyPush.calls,
      pullMs: timed.times.pullJson.ms,
      pulls: timed.times.pullJson.calls,
      cpuMs: cpuMs() - cpuAtStart,
    }),
    async close() {
      await server.close();
      await opened.close();
    },
  };
}

let current = await start(path, seed);
console.log(JSON.stringify(current.ready));

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [command, argument] = line.trim().split(/\s+/, 2);
  if (command === "sequence") {
    console.log(JSON.stringify({ sequence: await current.readSequence() }));
  } else if (command === "stats") {
    console.log(JSON.stringify({ rssMb: process.memoryUsage().rss / MB }));
  } else if (command === "times") {
    console.log(JSON.stringify(current.times()));
  } else if (command === "open" && argument !== undefined) {
    await current.close();
    current = await start(argument, 0);
    console.log(JSON.stringify(current.ready));
  } else if (command !== "" && command !== undefined) {
    console.log(JSON.stringify({ error: `unknown command ${command}` }));
  }
}
await current.close();
process.exit(0);
