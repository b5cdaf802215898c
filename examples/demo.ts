/**
 * Live sync: a sync server and two clients in one process, over real HTTP on
 * 127.0.0.1. Each client watches the task list (`db.watchAll`) and prints it
 * when it changes. Alice and Bob take turns editing; nobody calls `syncNow`:
 * a write leaves `sendDelay` after it, and the other client's held pull
 * (`createHttpSync({ live: true })`) brings it at once. Each line says how
 * long after the edit the other side's watch saw it.
 *
 *   npm run demo
 *   deno run -A examples/demo.ts
 *   bun examples/demo.ts
 *
 * (`npm run demo:conflict` shows offline edits and a conflict instead.)
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { type Database, ServerSyncManager } from "../mod.ts";
import { createHttpSync } from "../http.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { openDatabase } from "../src/database.ts";
import { createSyncServer, openServerDatabase } from "../server/mod.ts";
import { serve } from "../server/serve.ts";
import { schema } from "./schema.ts";

type AppDatabase = Database<typeof schema.tables>;
type Task = { title: string; done: number };

const memory = () => libsqlAdapter(createClient({ url: ":memory:" }));
const render = (tasks: readonly Task[]) =>
  tasks.length === 0 ? "(empty)" : tasks.map((t) => `${t.done ? "☑" : "☐"} ${t.title}`).join("  ");

const serverDatabase = await openServerDatabase({ adapter: memory(), schema });
const server = await serve(createSyncServer({ database: serverDatabase }).fetch);
console.log(`server  listening on ${server.url}\n`);

// An edit someone made and the list it must produce on the other client.
let expected: { by: string; list: string; at: number; resolve: (ms: number) => void } | undefined;
const delays: number[] = [];

async function client(name: string) {
  const database: AppDatabase = await openDatabase({ adapter: memory(), schema, nodeId: name });
  // The interval is an hour: everything below travels by sendDelay and the live channel.
  const manager = new ServerSyncManager({
    database,
    ...createHttpSync({ url: server.url, live: true }),
    syncInterval: 3_600_000,
  });
  database.watchAll("tasks", (tasks) => {
    const list = render([...tasks].sort((a, b) => a.title.localeCompare(b.title)));
    if (expected !== undefined && expected.by !== name && list === expected.list) {
      const ms = performance.now() - expected.at;
      console.log(`${name.padEnd(7)} sees  ${list}   (${ms.toFixed(1)} ms after the edit)`);
      expected.resolve(ms);
      expected = undefined;
    }
  });
  manager.start();
  return { name, database, manager };
}

const alice = await client("alice");
const bob = await client("bob");
await Promise.all([alice.manager.waitForFirstSync(), bob.manager.waitForFirstSync()]);

// Runs `edit` on `by`, then waits until the other client's watch shows the list `by` now has.
async function step(
  by: { name: string; database: AppDatabase },
  what: string,
  edit: () => Promise<unknown>,
) {
  const at = performance.now();
  await edit();
  const tasks = await by.database.all("tasks");
  const list = render([...tasks].sort((a, b) => a.title.localeCompare(b.title)));
  console.log(`${by.name.padEnd(7)} ${what}`);
  const arrived = new Promise<number>((resolve) => (expected = { by: by.name, list, at, resolve }));
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`"${what}" did not arrive within 10 s`)), 10_000)
  );
  delays.push(await Promise.race([arrived, timeout]));
}

try {
  const milk = await (async () => {
    let row: { system_id: string } | undefined;
    await step(alice, "adds “Buy milk”", async () => {
      row = await alice.database.insert("tasks", { title: "Buy milk" });
    });
    return row!;
  })();
  await step(alice, "adds “Call mum”", () => alice.database.insert("tasks", { title: "Call mum" }));
  await step(
    bob,
    "ticks off “Buy milk”",
    () => bob.database.update("tasks", milk.system_id, { done: 1 }),
  );
  await step(bob, "adds “Bake bread”", () => bob.database.insert("tasks", { title: "Bake bread" }));
  await step(
    alice,
    "renames “Buy milk” to “Buy oat milk”",
    () => alice.database.update("tasks", milk.system_id, { title: "Buy oat milk" }),
  );
  await step(bob, "deletes “Buy oat milk”", () => bob.database.delete("tasks", milk.system_id));

  const sorted = [...delays].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(
    `\n${delays.length} edits, none with syncNow: each reached the other client in ` +
      `${sorted[0]!.toFixed(1)}–${sorted.at(-1)!.toFixed(1)} ms (median ${
        median.toFixed(1)
      } ms), ` +
      "of which 25 ms is sendDelay gathering a burst of writes.",
  );
} finally {
  await alice.manager.stop();
  await bob.manager.stop();
  await alice.database.close();
  await bob.database.close();
  serverDatabase.endHeldPulls();
  await server.close();
  await serverDatabase.close();
}
