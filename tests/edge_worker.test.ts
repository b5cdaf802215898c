// The sync endpoint at the edge, from the package: a worker written as a user
// writes one (tests/edge_fixtures/worker.ts: `createEdgeServer` from
// `@declarative/sync/edge`, a schema made with `@declarative/sync`), bundled
// by esbuild for workerd and run by miniflare without `nodejs_compat`, over a
// real sqld; then the same module under `deno serve` and Bun. Real clients
// (`:memory:` replicas, `ServerSyncManager`, `createHttpSync`) sync through
// it over HTTP on 127.0.0.1.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { Miniflare } from "miniflare";
import { type Database, openDatabase, ServerSyncManager, SyncError } from "../mod.ts";
import { createHttpSync } from "../http.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { isDatabaseUnavailable } from "../server/app.ts";
import { serve } from "../server/serve.ts";
import { schema } from "./edge_fixtures/schema.ts";
import { tempDir } from "./helpers.ts";
import { skipWithoutSqld, sqldBinary, startSqld } from "./sqld.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const fixtures = join(root, "tests", "edge_fixtures");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

// The esbuild flags of a Workers bundle (as wrangler builds one).
const WORKERD_FLAGS = [
  "--bundle",
  "--format=esm",
  "--platform=browser",
  "--conditions=workerd,worker,browser",
];
const COMPATIBILITY_DATE = "2025-01-01";

type Tables = typeof schema.tables;

// ---------------------------------------------------------------------------
// Fixtures

/** Runs esbuild's CLI; resolves with its exit code and output (bounded: 30 s). */
function esbuild(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin("esbuild"), [...args, "--log-level=error"], {
      cwd: root,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`esbuild did not finish in 30 s:\n${output}`));
    }, 30_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    child.stdin.end();
  });
}

/** Bundles `entry` for workerd into `dir`; returns the bundle's path. */
async function bundleWorker(entry: string, dir: string): Promise<string> {
  const outfile = join(dir, "worker.mjs");
  const { code, output } = await esbuild([entry, ...WORKERD_FLAGS, `--outfile=${outfile}`]);
  assert.equal(code, 0, `esbuild failed:\n${output}`);
  return outfile;
}

/** workerd running `script` (an ES module bundle), without `nodejs_compat`. */
async function startWorkerd(
  script: string,
  bindings: Record<string, string>,
): Promise<{ url: string; dispose(): Promise<void> }> {
  const mf = new Miniflare({
    modules: true,
    scriptPath: script,
    modulesRoot: join(script, ".."),
    compatibilityDate: COMPATIBILITY_DATE,
    bindings,
  });
  try {
    const url = (await mf.ready).origin;
    return { url, dispose: () => mf.dispose() };
  } catch (error) {
    await mf.dispose().catch(() => undefined);
    throw error;
  }
}

/** A client replica on `:memory:` syncing with the endpoint at `url`. */
interface Client {
  readonly db: Database<Tables>;
  readonly manager: ServerSyncManager<Tables>;
  close(): Promise<void>;
}

async function openClient(url: string, nodeId: string): Promise<Client> {
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    nodeId,
  });
  const manager = new ServerSyncManager<Tables>({
    database: db,
    ...createHttpSync({ url, timeout: 10_000 }),
    retryDelay: 20,
    maxRetryDelay: 200,
  });
  return {
    db,
    manager,
    close: async () => {
      await manager.stop();
      await db.close();
    },
  };
}

// The rows a client sees, in a comparable form.
async function rowsOf(client: Client): Promise<string[]> {
  const rows = await client.db.all("todos", { includeDeleted: true });
  return rows
    .map((row) => `${row.system_id} ${row.title} ${row.done} ${row.is_deleted}`)
    .sort();
}

/** Two clients edit through the endpoint at `url` and end with the same rows. */
async function assertTwoClientsConverge(url: string): Promise<void> {
  const a = await openClient(url, "client-a");
  const b = await openClient(url, "client-b");
  try {
    const [first, second] = await a.db.insertMany("todos", [
      { title: "written by a" },
      { title: "also by a" },
    ]);
    await a.manager.syncNow();
    await b.manager.syncNow();
    assert.equal((await b.db.all("todos")).length, 2);

    await b.db.update("todos", first!.system_id, { done: 1 });
    await b.db.delete("todos", second!.system_id);
    await b.db.insert("todos", { title: "written by b" });
    await b.manager.syncNow();
    await a.manager.syncNow();

    assert.deepEqual(await rowsOf(a), await rowsOf(b));
    const live = await a.db.all("todos");
    assert.deepEqual(live.map((row) => [row.title, row.done]).sort(), [
      ["written by a", 1],
      ["written by b", 0],
    ]);
    assert.deepEqual(await a.db.getRejectedRows(), []);
    assert.deepEqual(await b.db.getRejectedRows(), []);
  } finally {
    await a.close();
    await b.close();
  }
}

/**
 * A held pull at `url` (each request polling the database alone, as on
 * Workers) is answered with a row pushed by another request, within a few
 * of the edge's one-second polls; a live client gets it without syncNow.
 */
async function assertHeldPullAnswers(url: string): Promise<void> {
  const post = async (path: string, body: Record<string, unknown>) => {
    const response = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ protocol: PROTOCOL_VERSION, schema: schema.hash, ...body }),
    });
    assert.equal(response.status, 200, `${path}: ${response.status}`);
    return await response.json();
  };
  const first = await post("/pull", { cursors: { todos: null } });
  const cursors = { todos: first.changes.todos.cursor };
  const started = performance.now();
  const holding = post("/pull", { cursors, wait: 15_000 });
  await delay(300);
  await post("/push", {
    nodeId: "edge-pusher",
    changes: [{
      table: "todos",
      id: "held-1",
      version: `${String(Date.now()).padStart(19, "0")}:000000000:edge-pusher`,
      deleted: false,
      data: { title: "pushed while held", done: 0 },
    }],
  });
  const answer = await holding;
  const ms = performance.now() - started;
  assert.deepEqual(answer.changes.todos.rows.map((row: { id: string }) => row.id), ["held-1"]);
  assert.ok(ms < 5_000, `the held pull was answered after ${ms} ms`);

  // A live client: the row another client writes arrives without syncNow.
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    nodeId: "edge-live",
  });
  const manager = new ServerSyncManager<Tables>({
    database: db,
    ...createHttpSync({ url, live: true, liveWait: 10_000, timeout: 10_000 }),
    syncInterval: 3_600_000,
  });
  const writer = await openClient(url, "edge-writer");
  try {
    manager.start();
    await manager.waitForFirstSync();
    await writer.db.insert("todos", { title: "live at the edge" });
    await writer.manager.syncNow();
    await eventually(
      "the live client has the row",
      async () => (await db.all("todos")).some((row) => row.title === "live at the edge"),
    );
  } finally {
    await manager.stop();
    await db.close();
    await writer.close();
  }
}

/** A loopback port that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("No port was assigned"))));
    });
  });
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 20 ms until it holds; fails after `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await delay(20);
  }
}

/** A child process and everything it printed. */
interface Child {
  readonly process: ChildProcess;
  readonly output: () => string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

// Children still running; killed if the test process exits before their `stop()`.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function startChild(command: string, args: readonly string[], env: Record<string, string>): Child {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  child.on("error", (error) => (output += `\n${error.message}`));
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      children.delete(child);
      resolve();
    });
  });
  return {
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/** Waits (bounded) for the loopback URL a child prints when it listens. */
async function listeningUrl(child: Child, ms = 30_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const match = /http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output());
    if (match) return `http://127.0.0.1:${match[1]}`;
    if (child.process.exitCode !== null || child.process.signalCode !== null) {
      assert.fail(`the server exited before listening:\n${child.output()}`);
    }
    if (Date.now() > deadline) assert.fail(`no URL within ${ms} ms:\n${child.output()}`);
    await delay(20);
  }
}

/** sqld on a given port and directory, so that it can be stopped and started again there. */
async function startSqldAt(port: number, dir: string): Promise<Child> {
  const child = startChild(sqldBinary!, [
    "--no-welcome",
    "--db-path",
    join(dir, "data.sqld"),
    "--http-listen-addr",
    `127.0.0.1:${port}`,
  ], { RUST_LOG: "warn" });
  try {
    await eventually("sqld answering", async () => {
      if (child.process.exitCode !== null) assert.fail(`sqld exited:\n${child.output()}`);
      try {
        const response = await fetch(`http://127.0.0.1:${port}/health`);
        await response.arrayBuffer();
        return response.ok;
      } catch {
        return false;
      }
    }, 20_000);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return child;
}

/** The error code and status of an endpoint's answer to a pull. */
async function pullStatus(url: string): Promise<{ status: number; code: unknown }> {
  const response = await fetch(`${url}/pull`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ protocol: 1, schema: schema.hash, cursors: { todos: null } }),
  });
  const body = await response.json();
  return { status: response.status, code: body?.error?.code };
}

// ---------------------------------------------------------------------------
// Tests

test(
  "isDatabaseUnavailable: a database that cannot be reached, as @libsql/client/web reports it; not an SQL error or a bug",
  {
    skip: skipWithoutSqld,
  },
  async () => {
    const failureOf = async (url: string, sql = "SELECT 1"): Promise<unknown> => {
      const client = createWebClient({ url });
      try {
        await client.execute(sql);
        return undefined;
      } catch (error) {
        return error;
      } finally {
        client.close();
      }
    };
    // Nothing listening.
    const refused = await failureOf(`http://127.0.0.1:${await freePort()}`);
    assert.ok(refused !== undefined && isDatabaseUnavailable(refused), String(refused));

    // A gateway in front of the database answering 503 or 502 is the same;
    // a 500 of the database itself is not.
    for (const [status, unavailable] of [[503, true], [502, true], [500, false]] as const) {
      const gateway = await serve(() => new Response("down", { status }));
      try {
        const error = await failureOf(gateway.url);
        assert.ok(error !== undefined);
        assert.equal(isDatabaseUnavailable(error), unavailable, `${status}: ${error}`);
      } finally {
        await gateway.close();
      }
    }

    // An SQL error from a database that answers, and a bug, are not.
    await using sqld = await startSqld();
    const sqlError = await failureOf(sqld.url, "SELECT * FROM no_such_table");
    assert.ok(sqlError !== undefined);
    assert.equal(isDatabaseUnavailable(sqlError), false, String(sqlError));
    assert.equal(isDatabaseUnavailable(new TypeError("x.map is not a function")), false);
    assert.equal(isDatabaseUnavailable(undefined), false);
  },
);

test("the ./server and ./edge entries bundle for workerd with no node:* import; ./serve does not", async () => {
  const dir = tempDir();
  try {
    const entry = join(fixtures, "entries.ts");
    const metafile = join(dir.path, "meta.json");
    const built = await esbuild([
      entry,
      ...WORKERD_FLAGS,
      `--outfile=${join(dir.path, "entries.mjs")}`,
      `--metafile=${metafile}`,
    ]);
    assert.equal(built.code, 0, `esbuild failed:\n${built.output}`);
    const meta = JSON.parse(readFileSync(metafile, "utf8")) as {
      inputs: Record<string, { imports: { path: string }[] }>;
    };
    const inputs = Object.keys(meta.inputs);
    assert.ok(inputs.includes("server/mod.ts") && inputs.includes("server/edge_server.ts"));
    const nodeImports = Object.values(meta.inputs)
      .flatMap((input) => input.imports.map((i) => i.path))
      .filter((path) => path.startsWith("node:"));
    assert.deepEqual(nodeImports, []);

    // The check bites: what serves on Node does not bundle for a browser platform.
    const serve = await esbuild([
      join(fixtures, "serve_entry.ts"),
      ...WORKERD_FLAGS,
      `--outfile=${join(dir.path, "serve.mjs")}`,
    ]);
    assert.notEqual(serve.code, 0);
    assert.match(serve.output, /node:/);
  } finally {
    dir.cleanup();
  }
});

test("without LIBSQL_URL the worker answers 500 misconfigured, naming the setting", async () => {
  const dir = tempDir();
  const worker = await startWorkerd(await bundleWorker(join(fixtures, "worker.ts"), dir.path), {});
  try {
    const response = await fetch(`${worker.url}/health`);
    assert.equal(response.status, 500);
    const { error } = await response.json();
    assert.equal(error.code, "misconfigured");
    assert.match(error.message, /LIBSQL_URL/);
  } finally {
    await worker.dispose();
    dir.cleanup();
  }
});

test(
  "a worker bundled for workerd (no nodejs_compat) syncs two clients over sqld, and holds pulls",
  {
    skip: skipWithoutSqld,
  },
  async () => {
    const dir = tempDir();
    await using sqld = await startSqld();
    const worker = await startWorkerd(await bundleWorker(join(fixtures, "worker.ts"), dir.path), {
      LIBSQL_URL: sqld.url,
    });
    try {
      const health = await fetch(`${worker.url}/health`);
      assert.equal(health.status, 200);
      assert.equal((await health.json()).schema, schema.hash);

      await assertTwoClientsConverge(worker.url);
      await assertHeldPullAnswers(worker.url);

      // The rows are in sqld, not in the worker.
      const direct = createClient({ url: sqld.url });
      try {
        const { rows } = await direct.execute("SELECT count(*) AS n FROM todos");
        assert.equal(Number(rows[0]!.n), 5);
      } finally {
        direct.close();
      }
    } finally {
      await worker.dispose();
      dir.cleanup();
    }
  },
);

test(
  "with sqld down the worker answers 503 unavailable, at cold start and later, and recovers by itself",
  {
    skip: skipWithoutSqld,
  },
  async () => {
    const dir = tempDir();
    const port = await freePort();
    let sqld: Child | undefined;
    const worker = await startWorkerd(await bundleWorker(join(fixtures, "worker.ts"), dir.path), {
      LIBSQL_URL: `http://127.0.0.1:${port}`,
    });
    const a = await openClient(worker.url, "client-a");
    const b = await openClient(worker.url, "client-b");
    try {
      // Cold start with nothing listening: 503 `unavailable`, not `misconfigured`.
      const health = await fetch(`${worker.url}/health`);
      assert.equal(health.status, 503);
      assert.equal((await health.json()).error.code, "unavailable");
      assert.deepEqual(await pullStatus(worker.url), { status: 503, code: "unavailable" });

      // A client's write waits in its outbox; the failed syncs are retried, not rejected.
      await a.db.insert("todos", { title: "written while the database was down" });
      const failed = await a.manager.syncNow().then(() => undefined, (error: unknown) => error);
      assert.ok(failed instanceof SyncError, String(failed));
      assert.equal(failed.code, "server_error");
      assert.equal(failed.details.status, 503);
      assert.equal(await a.db.countDirtyRows(), 1);
      a.manager.start();

      // sqld comes up: the next request builds the endpoint, and the write goes through.
      sqld = await startSqldAt(port, dir.path);
      await eventually("the retried push", async () => (await a.db.countDirtyRows()) === 0);
      await b.manager.syncNow();
      assert.deepEqual((await b.db.all("todos")).map((row) => row.title), [
        "written while the database was down",
      ]);

      // sqld stops after it served: 503 again, never a bare 500.
      await sqld.stop();
      assert.deepEqual(await pullStatus(worker.url), { status: 503, code: "unavailable" });
      await b.db.insert("todos", { title: "written during the second outage" });
      await assert.rejects(b.manager.syncNow(), (error: unknown) => {
        assert.ok(error instanceof SyncError);
        assert.equal(error.details.status, 503);
        return true;
      });

      // Back on the same port and files: the isolate's endpoint serves again.
      sqld = await startSqldAt(port, dir.path);
      assert.equal((await pullStatus(worker.url)).status, 200);
      await b.manager.syncNow();
      await a.manager.syncNow();
      assert.deepEqual(await rowsOf(a), await rowsOf(b));
      assert.deepEqual(await a.db.getRejectedRows(), []);
      assert.deepEqual(await b.db.getRejectedRows(), []);
    } finally {
      await a.close();
      await b.close();
      await worker.dispose();
      await sqld?.stop();
      dir.cleanup();
    }
  },
);

test("the same worker module under `deno serve` syncs two clients over sqld", {
  skip: skipWithoutSqld,
}, async () => {
  await using sqld = await startSqld();
  const server = startChild(bin("deno"), [
    "serve",
    "--allow-net",
    "--allow-env",
    "--no-prompt",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    join(fixtures, "worker.ts"),
  ], { LIBSQL_URL: sqld.url });
  await servesAndConverges(server);
});

test("the same worker module run by Bun (export default { fetch }) syncs two clients over sqld", {
  skip: skipWithoutSqld,
}, async () => {
  await using sqld = await startSqld();
  const server = startChild(bin("bun"), ["run", join(fixtures, "bun_entry.ts")], {
    LIBSQL_URL: sqld.url,
  });
  await servesAndConverges(server);
});

// The child serves the endpoint of the example schema, and two clients converge through it.
async function servesAndConverges(server: Child): Promise<void> {
  try {
    const url = await listeningUrl(server);
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200, server.output());
    assert.equal((await health.json()).schema, schema.hash);
    await assertTwoClientsConverge(url);
  } finally {
    await server.stop();
  }
}
