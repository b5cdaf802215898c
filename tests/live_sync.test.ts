// `createHttpSync({ live: true })`: while the manager is started one held
// pull stays open, and what another device writes reaches this one's watch
// listener without syncNow and long before the interval — through one
// endpoint instance or two over the same database. When the server goes
// away the channel backs off and resumes; stop() ends it at once.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Database } from "../src/database.ts";
import type { TableDef } from "../src/schema.ts";
import { syncSchema } from "./fixtures.ts";
import {
  fileStore,
  openClient,
  startServer,
  type TestClient,
  withServerDatabase,
} from "./sync_helpers.ts";

type Schema = typeof syncSchema.tables;

// A client that only the live channel and sendDelay move: the interval is an hour.
const liveClient = (server: { url: string }, nodeId: string) =>
  openClient(syncSchema, server, {
    nodeId,
    http: { live: true, liveWait: 5_000 },
    manager: { syncInterval: 3_600_000 },
  });

// Resolves with the ms from now until `db`'s watch of tasks shows a row titled `title`.
function whenTitleShows<T extends Record<string, TableDef>>(
  db: Database<T>,
  title: string,
  timeout = 10_000,
): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`${title} did not arrive within ${timeout} ms`));
    }, timeout);
    const stop = db.watch("SELECT title FROM tasks", [], (rows) => {
      if (rows.some((row) => row.title === title)) {
        clearTimeout(timer);
        stop();
        resolve(performance.now() - started);
      }
    });
  });
}

// Starts both clients and resolves once each has synced in full.
async function startAll(...clients: TestClient<Schema>[]): Promise<void> {
  for (const client of clients) client.manager.start();
  await Promise.all(clients.map((client) => client.manager.waitForFirstSync()));
}

async function stopAll(...clients: TestClient<Schema>[]): Promise<void> {
  for (const client of clients) {
    await client.manager.stop();
    await client.db.close();
  }
}

test("live: a write on one device reaches another's watch without syncNow, long before the interval", async () => {
  const server = await startServer(syncSchema);
  const a = await liveClient(server, "node-a");
  const b = await liveClient(server, "node-b");
  try {
    await startAll(a, b);
    for (const title of ["first", "second", "third"]) {
      const arrived = whenTitleShows(b.db, title);
      await a.db.insert("tasks", { title });
      const ms = await arrived;
      assert.ok(ms < 5_000, `${title} took ${ms} ms`);
    }
    // And back the other way.
    const arrived = whenTitleShows(a.db, "from b");
    await b.db.insert("tasks", { title: "from b" });
    await arrived;
  } finally {
    await stopAll(a, b);
    await server.close();
  }
});

test("live: a write through one endpoint instance reaches a client of another over the same database", async () => {
  await withServerDatabase(fileStore, async (url) => {
    const one = await startServer(syncSchema, { url, watchInterval: 50 });
    const two = await startServer(syncSchema, { url, watchInterval: 50 });
    const a = await liveClient(one, "node-a");
    const b = await liveClient(two, "node-b");
    try {
      await startAll(a, b);
      const arrived = whenTitleShows(b.db, "across");
      await a.db.insert("tasks", { title: "across" });
      const ms = await arrived;
      assert.ok(ms < 5_000, `it took ${ms} ms`);
    } finally {
      await stopAll(a, b);
      await one.close();
      await two.close();
    }
  });
});

test("live reconnects after the server restarts, and stop() ends the channel at once", async () => {
  await withServerDatabase(fileStore, async (url) => {
    let server = await startServer(syncSchema, { url });
    const port = Number(new URL(server.url).port);
    const a = await liveClient(server, "node-a");
    const b = await liveClient(server, "node-b");
    try {
      await startAll(a, b);

      await server.close();
      // B's held pull ends with the server; its next attempts fail and back off.
      await new Promise((resolve) => setTimeout(resolve, 400));
      server = await startServer(syncSchema, { url, port });

      const arrived = whenTitleShows(b.db, "after restart");
      await a.db.insert("tasks", { title: "after restart" });
      const ms = await arrived;
      assert.ok(ms < 8_000, `it took ${ms} ms`);

      const stopping = performance.now();
      await b.manager.stop();
      assert.ok(performance.now() - stopping < 2_000, "stop() waited for the held pull");
    } finally {
      await stopAll(a, b);
      await server.close();
    }
  });
});

test("live over a lossy network: held pulls lost before the server saw them or after it answered, and the client still gets every row", async () => {
  const server = await startServer(syncSchema);
  // Deterministic faults on B's held pulls (the requests naming `wait`).
  let n = 0;
  const faults = { before: 0, after: 0 };
  const lossy: typeof fetch = async (input, init) => {
    const held = typeof init?.body === "string" && init.body.includes('"wait"');
    const roll = held ? (n++ * 7919) % 10 : 9;
    if (roll < 2) {
      faults.before++;
      throw new TypeError("network is down");
    }
    const response = await fetch(input, init);
    if (roll < 5) {
      // The server answered (perhaps with rows); the answer never arrives.
      await response.arrayBuffer();
      faults.after++;
      throw new TypeError("connection reset");
    }
    return response;
  };
  const a = await liveClient(server, "node-a");
  const b = await openClient(syncSchema, server, {
    nodeId: "node-b",
    http: { live: true, liveWait: 2_000, fetch: lossy },
    manager: { syncInterval: 3_600_000 },
  });
  try {
    await startAll(a, b);
    for (let i = 0; i < 20; i++) {
      await a.db.insert("tasks", { title: `row ${i}` });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await whenTitleShows(b.db, "row 19", 15_000);
    const deadline = Date.now() + 15_000;
    while ((await b.db.all("tasks")).length < 20 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const titles = (await b.db.all("tasks")).map((row) => row.title).sort();
    assert.deepEqual(titles, Array.from({ length: 20 }, (_, i) => `row ${i}`).sort());
    assert.ok(faults.before > 0 && faults.after > 0, `faults injected: ${JSON.stringify(faults)}`);
  } finally {
    await stopAll(a, b);
    await server.close();
  }
});
