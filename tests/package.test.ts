/**
 * The npm package as each user installs it. `scripts/build.mjs --pack`
 * builds the package (into a temporary directory, not the checkout's dist/,
 * so that concurrent runs never share one) and packs it; then, in fresh
 * temporary projects:
 *
 * - Node: `npm install <tarball> @libsql/client` and plain `node` (no tsx)
 *   running `package_fixtures/sync_two_clients.mjs`: every entry loads, a
 *   server from `@declarative/sync/server` + `/serve` on 127.0.0.1, two
 *   clients converging through it; `npx declarative-sync` (`--help`, `serve`
 *   on the example schema and on the app's `schema.mjs`, a `.ts` schema
 *   refused on Node 20 with one line, SIGTERM to npx stops the server);
 *   `tsc --noEmit` (nodenext) type-checking `consumer.ts` against the .d.ts.
 * - Bun: `bun add <tarball>`, the same script under bun, and the same two
 *   clients through `bunx --bun declarative-sync serve --schema ./schema.ts`.
 * - Deno: the same script over the node_modules npm installed
 *   (`"nodeModulesDir": "manual"`), `npm:` specifiers, `deno check consumer.ts`,
 *   and the clients through `deno run -A npm:@declarative/sync serve`.
 *
 * The matrix runs in the Node run of the suite only: each consumer is a child
 * process of its own runtime (node, bun, deno) whichever runtime runs this
 * file, so the Deno and Bun runs would check the same thing again, and the
 * build + pack + install (about 20 s) would be paid three times.
 *
 * @module
 */

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { schema as exampleSchema } from "../examples/schema.ts";
import { tempDir } from "./helpers.ts";
import { startServerChild } from "./server_child.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const fixtures = fileURLToPath(new URL("./package_fixtures/", import.meta.url));
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const npx = process.platform === "win32" ? "npx.cmd" : "npx";
const rootManifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  exports: Record<string, string>;
  dependencies: Record<string, string>;
};
const libsqlClient = `@libsql/client@${rootManifest.dependencies["@libsql/client"]}`;

const g = globalThis as { Deno?: unknown; Bun?: unknown };
const skip = g.Deno !== undefined || g.Bun !== undefined
  ? "runs in the Node run of the suite, which checks the Node, Bun and Deno consumers"
  : false;

// ------------------------------------------------------------ child processes

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

// A child's environment without what `npm test` exports to its scripts
// (npm_config_*, npm_lifecycle_*, INIT_CWD) or a loader in NODE_OPTIONS: the
// temporary projects run as a user's would.
function userEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || /^npm_/i.test(key) || key === "INIT_CWD") continue;
    if (key === "NODE_OPTIONS" || key === "FORCE_COLOR") continue;
    env[key] = value;
  }
  return env;
}

const children = new Set<ChildProcess>();

// Runs a command to its end (killed after `timeoutMs`).
function run(
  command: string,
  args: readonly string[],
  cwd: string,
  timeoutMs = 60_000,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: userEnv(), stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      children.delete(child);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

// Runs a command that must succeed; its output is in the failure message.
async function ok(command: string, args: readonly string[], cwd: string): Promise<string> {
  const result = await run(command, args, cwd);
  assert.equal(
    result.code,
    0,
    `${command} ${
      args.join(" ")
    } (in ${cwd}) exited ${result.code}:\n${result.stdout}\n${result.stderr}`,
  );
  return result.stdout;
}

// The one JSON line sync_two_clients.mjs prints.
function parseSyncReport(stdout: string): Record<string, unknown> {
  const line = stdout.trim().split("\n").findLast((l) => l.startsWith("{"));
  assert.ok(line, `no report in:\n${stdout}`);
  return JSON.parse(line) as Record<string, unknown>;
}

function assertSynced(report: Record<string, unknown>, runtime: string): void {
  assert.equal(report.runtime, runtime);
  assert.equal(report.converged, true, JSON.stringify(report));
  assert.deepEqual(
    Object.keys(report.entries as object).sort(),
    Object.keys(rootManifest.exports).sort(),
    "every entry of the package loads",
  );
}

// `npx declarative-sync serve …` (or bunx, deno run npm:…) in its own
// process group, so that a server below npm's shell is ended with it should
// the test fail.
function startServer(cwd: string, command: string, args: readonly string[]) {
  return startServerChild(command, args, { cwd, env: userEnv(), detached: true });
}

async function until(condition: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------ the projects

interface Prepared {
  tarball: string;
  /** The files in the tarball (`tar -tzf`), without the `package/` prefix. */
  files: string[];
  /** `npm install <tarball> @libsql/client`: the Node (and Deno) project. */
  node: Promise<string>;
  /** `bun add <tarball> @libsql/client`. */
  bun: Promise<string>;
}

let dir: ReturnType<typeof tempDir> | undefined;
let prepared: Promise<Prepared> | undefined;
after(() => {
  for (const child of children) child.kill("SIGKILL");
  dir?.cleanup();
});

function prepare(): Promise<Prepared> {
  prepared ??= (async () => {
    dir = tempDir();
    const path = dir.path;
    const built = await ok(
      process.execPath,
      [
        join(root, "scripts", "build.mjs"),
        ...["--out-dir", join(path, "dist"), "--pack", "--pack-destination", path],
      ],
      root,
    );
    const tarball = built.trim().split("\n").at(-1)!;
    assert.match(tarball, /\.tgz$/, built);
    const listing = await ok("tar", ["-tzf", tarball], path);
    const files = listing.trim().split("\n").map((line) => line.replace(/^package\//, ""));
    const project = async (name: string, install: [string, string[]]) => {
      const cwd = join(path, name);
      await mkdir(cwd);
      writeFileSync(
        join(cwd, "package.json"),
        JSON.stringify({ name: `${name}-app`, private: true, type: "module" }),
      );
      for (const file of readdirSync(fixtures)) copyFileSync(join(fixtures, file), join(cwd, file));
      await ok(install[0], install[1], cwd);
      return cwd;
    };
    const node = project("node", [npm, [
      "install",
      tarball,
      libsqlClient,
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
    ]]);
    const bun = project("bun", [bin("bun"), ["add", "--prefer-offline", tarball, libsqlClient]]);
    node.catch(() => undefined);
    bun.catch(() => undefined);
    return { tarball, files, node, bun };
  })();
  return prepared;
}

// ------------------------------------------------------------ the tests

test(
  "the packed package: compiled JavaScript and .d.ts for every export (types first), the bin, and no dev-only keys",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const { files, node } = await prepare();
    const manifest = JSON.parse(
      readFileSync(
        join(await node, "node_modules", "@declarative", "sync", "package.json"),
        "utf8",
      ),
    );
    for (const key of ["devDependencies", "optionalDependencies", "allowScripts", "scripts"]) {
      assert.equal(manifest[key], undefined, `the published package.json has no ${key}`);
    }
    assert.equal(manifest.type, "module");
    assert.deepEqual(manifest.dependencies, rootManifest.dependencies);
    assert.deepEqual(
      Object.keys(manifest.exports).sort(),
      [...Object.keys(rootManifest.exports), "./package.json"].sort(),
    );
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      if (subpath === "./package.json") continue;
      const conditions = target as Record<string, string>;
      assert.deepEqual(Object.keys(conditions), ["types", "default"], subpath);
      assert.match(conditions.types!, /\.d\.ts$/);
      assert.match(conditions.default!, /\.js$/);
      for (const file of Object.values(conditions)) {
        assert.ok(files.includes(file.slice(2)), `${subpath}: ${file} is in the tarball`);
      }
    }
    assert.deepEqual(manifest.bin, { "declarative-sync": "./server/cli.js" });
    assert.ok(files.includes("README.md") && files.includes("LICENSE"));
    assert.deepEqual(
      files.filter((file) => /\.[cm]?ts$/.test(file) && !/\.d\.[cm]?ts$/.test(file)),
      [],
      "no TypeScript sources (they are inlined in the source maps)",
    );
    assert.deepEqual(
      files.filter((file) => /^(tests|bench|scripts|node_modules)\//.test(file)),
      [],
    );
  },
);

test(
  "plain node (no TypeScript loader) runs a server and two clients from the installed package; they converge",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    const stdout = await ok(process.execPath, ["sync_two_clients.mjs"], cwd);
    assertSynced(parseSyncReport(stdout), "node");
  },
);

test("npx declarative-sync --help prints the usage, an unknown command exits 2", {
  skip,
  timeout: 120_000,
}, async () => {
  const cwd = await (await prepare()).node;
  const help = await ok(npx, ["declarative-sync", "--help"], cwd);
  assert.match(help, /^Usage: declarative-sync serve \[options\]/);
  assert.match(help, /--schema MODULE/);
  assert.match(help, /\.js or \.mjs/);
  const unknown = await run(npx, ["declarative-sync", "frobnicate"], cwd);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown command "frobnicate"/);
});

test(
  "npx declarative-sync serve: the example schema by default, /health answers, and it stops when npx gets SIGTERM",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    const server = startServer(cwd, npx, ["declarative-sync", "serve", "--port", "0"]);
    try {
      const url = await server.url;
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      assert.equal((await health.json()).schema, exampleSchema.hash);
      assert.match(server.output(), /database file:data\/sync\.db/);
      server.child.kill("SIGTERM"); // npx, not the server below the shell it runs
      await server.exited;
      assert.ok(await until(() => /stopped/.test(server.output()), 10_000), server.output());
      assert.equal(await answers(url), false, "the server stopped serving");
    } finally {
      server.killGroup();
    }
  },
);

test(
  "npx declarative-sync serve --schema ./schema.mjs --db …: two clients of the app's schema sync through it",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    const server = startServer(cwd, npx, [
      "declarative-sync",
      "serve",
      "--schema",
      "./schema.mjs",
      "--db",
      "data/app.db",
      "--port",
      "0",
    ]);
    try {
      const url = await server.url;
      const stdout = await ok(process.execPath, ["sync_two_clients.mjs", url], cwd);
      const report = parseSyncReport(stdout);
      assertSynced(report, "node");
      assert.equal(report.url, url);
      assert.match(server.output(), /POST \/push 200/);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
      await until(() => /stopped/.test(server.output()), 10_000);
      server.killGroup();
    }
  },
);

test(
  "npx declarative-sync serve --schema ./schema.ts on Node without type stripping: one line naming .js/.mjs, exit 2",
  {
    skip: skip ||
      ((process as { features?: { typescript?: unknown } }).features?.typescript
        ? "this Node imports .ts itself"
        : false),
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    const result = await run(npx, ["declarative-sync", "serve", "--schema", "./schema.ts"], cwd);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /^Cannot load the schema module \.\/schema\.ts: .*\.js or \.mjs/);
  },
);

test(
  "tsc --noEmit (moduleResolution nodenext) type-checks a consumer against the installed .d.ts",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    writeFileSync(
      join(cwd, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          lib: ["es2022", "dom"],
          types: [],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
        },
        files: ["consumer.ts"],
      }),
    );
    await ok(bin("tsc"), ["-p", "tsconfig.json"], cwd);
  },
);

test(
  "bun add <tarball>: the same script runs under bun; bunx --bun declarative-sync serve takes a .ts schema",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).bun;
    assertSynced(parseSyncReport(await ok(bin("bun"), ["sync_two_clients.mjs"], cwd)), "bun");
    await syncsThroughServer(cwd, bin("bun"), [
      ...["x", "--bun", "declarative-sync", "serve", "--schema", "./schema.ts", "--port", "0"],
    ], "bun");
  },
);

// Starts `command args` (the package's bin serving ./schema.ts), syncs two
// clients of the same schema through it on `runtime`, and stops it with
// SIGTERM: exit 0, after "stopped".
async function syncsThroughServer(
  cwd: string,
  command: string,
  args: readonly string[],
  runtime: "bun" | "deno",
): Promise<void> {
  const server = startServer(cwd, command, args);
  try {
    const url = await server.url;
    assert.match(server.output(), new RegExp(`\\(${runtime}\\)`), "served by that runtime");
    const script = runtime === "bun"
      ? ["sync_two_clients.mjs", url]
      : ["run", "-A", "sync_two_clients.mjs", url];
    assertSynced(parseSyncReport(await ok(bin(runtime), script, cwd)), runtime);
    process.kill(server.child.pid!, "SIGTERM");
    await server.exited;
    assert.equal(server.child.exitCode, 0, server.output());
    assert.match(server.output(), /stopped/);
  } finally {
    server.killGroup();
  }
}

test(
  "deno over the node_modules npm installed: the same script runs, npm: specifiers resolve, deno check finds the types, deno run npm:@declarative/sync serve takes a .ts schema",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const cwd = await (await prepare()).node;
    writeFileSync(join(cwd, "deno.json"), JSON.stringify({ nodeModulesDir: "manual" }));
    const stdout = await ok(bin("deno"), ["run", "-A", "sync_two_clients.mjs"], cwd);
    assertSynced(parseSyncReport(stdout), "deno");

    writeFileSync(
      join(cwd, "npm_specifiers.ts"),
      [
        'import { defineSchema, table, text } from "npm:@declarative/sync";',
        'import { serve } from "npm:@declarative/sync/serve";',
        "const schema = defineSchema({ t: table({ a: text() }, { withSystemColumns: true }) });",
        "const hash: string = schema.hash;",
        "console.log(JSON.stringify({ hash, serve: typeof serve }));",
      ].join("\n"),
    );
    const printed = JSON.parse(await ok(bin("deno"), ["run", "-A", "npm_specifiers.ts"], cwd));
    assert.equal(printed.serve, "function");
    assert.match(printed.hash, /^[0-9a-f]+$/);
    await ok(bin("deno"), ["check", "consumer.ts", "npm_specifiers.ts"], cwd);

    // The package's bin through Deno's npm support.
    await syncsThroughServer(cwd, bin("deno"), [
      ...["run", "-A", "npm:@declarative/sync", "serve", "--schema", "./schema.ts", "--port", "0"],
      ...["--db", "data/deno.db"],
    ], "deno");
  },
);
