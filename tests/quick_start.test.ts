// The README's quick start, run as written against a server started the way
// `npm start` starts it, so the two cannot drift apart again.
//
// The code block of README.md's "## Quick start" section is written into a
// fresh project directory (a temp dir with a package.json and the
// repository's node_modules linked in, as `npm install` would give it) and
// run there by the runtime running this file. It is changed in exactly these
// places, each of which must be found:
//
// - `"@declarative/sync"`, `"@declarative/sync/http"` and
//   `"@declarative/sync/libsql"` become the file URLs of mod.ts, http.ts and
//   src/libsql.ts (the package's exports, from the sources);
// - `http://127.0.0.1:8787` becomes the URL of the server below.
//
// The server is server/main.ts as a child process of the same runtime,
// started in another temp dir with no flag but `--port 0` (a free port):
// its database is the default embedded file, `data/sync.db` in that dir, and
// its schema the default, examples/schema.ts. Another client then pulls from
// it and must find the quick start's row. A second test starts the server
// with `--schema` of another module, and the quick start must fail with a
// message naming the tables and columns that differ.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createHttpSync } from "../src/http_sync.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { schema } from "../examples/schema.ts";
import { openMemory, tempDir } from "./helpers.ts";

const repo = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const BOUND_MS = 60_000;

/** The first `ts` code block of README.md's "## Quick start" section. */
function quickStartCode(): string {
  const readme = readFileSync(repo("README.md"), "utf8");
  const start = readme.indexOf("\n## Quick start\n");
  assert.ok(start >= 0, 'README.md has a "## Quick start" section');
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const block = /```ts\n([\s\S]*?)\n```/.exec(section);
  assert.ok(block !== null, "the quick start has a ts code block");
  return block[1]!;
}

/** `code` with each `[from, to]` replaced; every `from` must occur. */
function replaceAll(code: string, replacements: readonly (readonly [string, string])[]): string {
  for (const [from, to] of replacements) {
    assert.ok(code.includes(from), `the quick start contains ${from}`);
    code = code.split(from).join(to);
  }
  return code;
}

/** A directory laid out like an app's after `npm install`: package.json and node_modules. */
function projectDir(): { path: string; cleanup: () => void } {
  const dir = tempDir();
  writeFileSync(join(dir.path, "package.json"), JSON.stringify({ type: "module", private: true }));
  symlinkSync(repo("node_modules"), join(dir.path, "node_modules"), "dir");
  return dir;
}

/** How this runtime runs a TypeScript file (Deno with the repository's import map). */
function runtimeArgs(file: string): [string, string[]] {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) {
    return [process.execPath, ["run", "-A", "--config", repo("deno.json"), file]];
  }
  if (g.Bun !== undefined) return [process.execPath, [file]];
  return [process.execPath, ["--import", "tsx", file]];
}

interface Child {
  readonly process: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
}

function start(file: string, args: readonly string[], cwd: string): Child {
  const [command, runtime] = runtimeArgs(file);
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1" };
  // Not under npm: the server must not watch for an npm parent.
  delete env.npm_lifecycle_event;
  const child = spawn(command, [...runtime, ...args], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  // Without its colours: Deno colours console.log when FORCE_COLOR is set at
  // all, as the test runner sets it (to 0).
  // deno-lint-ignore no-control-regex
  return { process: child, output: () => output.replace(/\x1b\[[0-9;]*m/g, ""), exited };
}

/** Resolves once `test` holds of the child's output; rejects if it exits first or time runs out. */
async function waitFor(child: Child, what: string, test: (output: string) => boolean) {
  const deadline = Date.now() + BOUND_MS;
  let exited = false;
  child.exited.then(() => (exited = true));
  while (!test(child.output())) {
    if (exited) throw new Error(`exited before ${what}:\n${child.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${what} in ${BOUND_MS} ms:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `promise`, or `"timeout"` after `ms`; the timer does not outlive it. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(resolve, ms, "timeout")));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kills a child and waits for it to be gone. */
async function stop(child: Child | undefined): Promise<void> {
  if (child === undefined || child.process.exitCode !== null) return;
  child.process.kill("SIGKILL");
  await within(child.exited, 5_000);
}

/** server/main.ts as `npm start` runs it, on a free port, in `cwd`; resolves with its URL. */
async function startMain(cwd: string, args: readonly string[] = []) {
  const server = start(repo("server/main.ts"), ["--port", "0", ...args], cwd);
  const pattern = /server on (http:\/\/127\.0\.0\.1:\d+)/;
  try {
    await waitFor(server, "server URL", (output) => pattern.test(output));
  } catch (error) {
    await stop(server);
    throw error;
  }
  return { server, url: pattern.exec(server.output())![1]! };
}

/** The quick start, with the replacements above, written into `dir`. */
function writeQuickStart(dir: string, url: string): string {
  const code = replaceAll(quickStartCode(), [
    ['"@declarative/sync/http"', JSON.stringify(pathToFileURL(repo("http.ts")).href)],
    ['"@declarative/sync/libsql"', JSON.stringify(pathToFileURL(repo("src/libsql.ts")).href)],
    ['"@declarative/sync"', JSON.stringify(pathToFileURL(repo("mod.ts")).href)],
    ["http://127.0.0.1:8787", url],
  ]);
  const file = join(dir, "quick_start.ts");
  writeFileSync(file, code);
  return file;
}

test("the README's quick start syncs its row to server/main.ts started as npm start starts it", {
  timeout: 2 * BOUND_MS,
}, async () => {
  const serverDir = projectDir();
  const appDir = projectDir();
  let server: Child | undefined;
  let app: Child | undefined;
  const reader = await openMemory({ schema });
  try {
    const main = await startMain(serverDir.path);
    server = main.server;
    app = start(writeQuickStart(appDir.path, main.url), [], appDir.path);
    // It prints the status once syncNow() resolved: idle, nothing pending.
    await waitFor(app, "status after syncNow()", (output) => /pending: 0/.test(output));
    assert.match(app.output(), /state: ["']idle["']/);
    assert.ok(existsSync(join(appDir.path, "app.db")), "the local database is file:app.db");
    assert.ok(existsSync(join(serverDir.path, "data", "sync.db")), "the server's is data/sync.db");

    // Another client of the example schema pulls the row from the server.
    const manager = new ServerSyncManager({
      database: reader,
      ...createHttpSync({ url: main.url, timeout: 10_000 }),
    });
    await manager.syncNow();
    const rows = await reader.all("tasks");
    assert.deepEqual(rows.map((row) => [row.title, row.done]), [["Buy milk", 1]]);
  } finally {
    await reader.close();
    await stop(app);
    await stop(server);
    appDir.cleanup();
    serverDir.cleanup();
  }
});

test(
  "the README's quick start against a server of another --schema fails naming the tables and columns that differ",
  {
    timeout: 2 * BOUND_MS,
  },
  async () => {
    const serverDir = projectDir();
    const appDir = projectDir();
    let server: Child | undefined;
    let app: Child | undefined;
    try {
      // The example schema, but tasks gained a column and notes lost one.
      writeFileSync(
        join(serverDir.path, "other_schema.ts"),
        `import { boolean, defineSchema, integer, json, table, text } from ${
          JSON.stringify(pathToFileURL(repo("mod.ts")).href)
        };
export const schema = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: integer().notNull().default(0),
    notes: text(),
    due: text(),
  }, { withSystemColumns: true, lww: "row", indexes: [{ columns: ["done"] }] }),
  notes: table({
    body: text().notNull().default(""),
    pinned: boolean().notNull().default(false),
  }, { withSystemColumns: true, lww: "column" }),
  preferences: table({ key: text().primaryKey(), value: json() }),
});
`,
      );
      const main = await startMain(serverDir.path, ["--schema", "other_schema.ts"]);
      server = main.server;
      app = start(writeQuickStart(appDir.path, main.url), [], appDir.path);
      const code = await within(app.exited, BOUND_MS);
      assert.notEqual(code, "timeout", `the quick start did not fail:\n${app.output()}`);
      assert.notEqual(code, 0, app.output());
      for (
        const line of [
          "schema_mismatch",
          "table notes: the client has column color (text), the server does not",
          "table tasks: the server has column due (text), the client does not",
          "start the server with --schema",
        ]
      ) assert.ok(app.output().includes(line), `${line} in:\n${app.output()}`);
    } finally {
      await stop(app);
      await stop(server);
      appDir.cleanup();
      serverDir.cleanup();
    }
  },
);
