// server/main.ts as a newcomer runs it, and server/cli.ts (the npm bin,
// `declarative-sync serve`) on the same code path: a child process of the
// same runtime, on an embedded libSQL file, stopped with SIGTERM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { openServerDatabase } from "../server/database.ts";
import { schema } from "../examples/schema.ts";
import { tempDir } from "./helpers.ts";
import { post } from "./sync_helpers.ts";
import { startServerChild } from "./server_child.ts";

const main = fileURLToPath(new URL("../server/main.ts", import.meta.url));
// The npm package's bin (`declarative-sync`), run from its source.
const cli = fileURLToPath(new URL("../server/cli.ts", import.meta.url));

function runtimeArgs(file: string): [string, string[]] {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) return [process.execPath, ["run", "-A", file]];
  if (g.Bun !== undefined) return [process.execPath, [file]];
  return [process.execPath, ["--import", "tsx", file]];
}

test("server/main.ts serves an embedded file behind bearer tokens and stops on SIGTERM without losing an acknowledged write", async () => {
  const dir = tempDir();
  const dbPath = join(dir.path, "nested", "sync.db");
  const [command, args] = runtimeArgs(main);
  const child = spawn(
    command,
    [...args, "--db", dbPath, "--port", "0", "--tokens", "s3cret=alice"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no server URL in:\n${output}`)), 30_000);
      const check = () => {
        const match = /server on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      };
      child.stdout.on("data", check);
      exited.then(() => reject(new Error(`the server exited:\n${output}`)));
    });

    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).schema, schema.hash);

    const version = formatHlc({ ms: Date.now(), counter: 0, nodeId: "tester" });
    const body = {
      protocol: PROTOCOL_VERSION,
      nodeId: "tester",
      schema: schema.hash,
      changes: [{ table: "tasks", id: "t1", version, deleted: false, data: { title: "kept" } }],
    };
    // Missing, malformed or unknown credentials are all the documented 401.
    const malformed = [
      "Bearer wrong",
      "Bearer",
      "Bearer ",
      "Basic czNjcmV0",
      "Bearer s3cret s3cret",
    ];
    for (
      const headers of [{}, ...malformed.map((authorization) => ({ authorization }))] as Record<
        string,
        string
      >[]
    ) {
      const refused = await post(`${url}/push`, body, headers);
      assert.equal(refused.status, 401, JSON.stringify(headers));
      assert.equal((refused.json.error as { code: string }).code, "unauthorized");
    }
    const missing = await fetch(`${url}/nowhere`);
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal((await missing.json()).error.code, "not_found");
    const { status, json } = await post(`${url}/push`, body, { authorization: "Bearer s3cret" });
    assert.equal(status, 200);
    assert.deepEqual(json.results, [{ table: "tasks", id: "t1", status: "applied" }]);

    // process.kill, not child.kill: Deno's child_process then reports the real exit code.
    process.kill(child.pid!, "SIGTERM");
    assert.equal(await exited, 0, output);
    assert.match(output, /POST \/push 200/, "one log line per request");
    assert.match(output, /stopped/);

    const reopened = await openServerDatabase({
      adapter: libsqlAdapter(createClient({ url: `file:${dbPath}` })),
      schema,
    });
    const page = await reopened.pull({ tasks: null }, 10);
    assert.deepEqual(page.tasks!.rows.map((r) => [r.id, r.version, r.data.title]), [[
      "t1",
      version,
      "kept",
    ]]);
    await reopened.close();
  } finally {
    child.kill("SIGKILL");
    dir.cleanup();
  }
});

// Starts `command args`: the URL the server prints, the child, its output.
// `detached`: in a process group of its own, which `killGroup` ends whole.
function startChild(command: string, args: readonly string[], detached = false) {
  return startServerChild(command, args, { detached });
}

// True once nothing answers at `url` (within `ms`).
async function stopsAnswering(url: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    } catch {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

test("server/main.ts on a port already in use says so in one line and exits 1", async () => {
  const dir = tempDir();
  const [command, args] = runtimeArgs(main);
  const first = startChild(command, [...args, "--db", join(dir.path, "a.db"), "--port", "0"]);
  try {
    const port = new URL(await first.url).port;
    const second = startChild(command, [...args, "--db", join(dir.path, "b.db"), "--port", port]);
    assert.equal(await second.exited, 1);
    const lines = second.output().trim().split("\n");
    assert.deepEqual(lines, [
      `Port ${port} on 127.0.0.1 is already in use: stop what serves it, or pass --port`,
    ]);
  } finally {
    first.child.kill("SIGTERM");
    await first.exited;
    dir.cleanup();
  }
});

test("npm start stops serving when npm itself gets SIGTERM", async () => {
  const dir = tempDir();
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const root = fileURLToPath(new URL("..", import.meta.url));
  const dbPath = join(dir.path, "sync.db");
  const started = startChild(npm, [
    "--prefix",
    root,
    "start",
    "--",
    "--db",
    dbPath,
    "--port",
    "0",
  ], true);
  try {
    const url = await started.url;
    assert.equal((await fetch(`${url}/health`)).status, 200);
    started.child.kill("SIGTERM"); // npm, not the server below the shell it runs
    await started.exited;
    assert.ok(await stopsAnswering(url, 10_000), "the server kept serving after npm stopped");
  } finally {
    // Should the server outlive npm (the failure this test is for), it is
    // still in npm's process group: end the group.
    started.killGroup();
    dir.cleanup();
  }
});

// Runs `script args` on this runtime to its end.
function runScript(script: string, args: readonly string[]) {
  const [command, runtime] = runtimeArgs(script);
  const result = spawnSync(command, [...runtime, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test("server/cli.ts prints its usage for --help and help; no command or an unknown one exits 2", () => {
  for (const args of [["--help"], ["help"], ["-h"], ["serve", "--help"]]) {
    const { code, stdout } = runScript(cli, args);
    assert.equal(code, 0, args.join(" "));
    assert.match(stdout, /^Usage: declarative-sync serve \[options\]/, args.join(" "));
    assert.match(stdout, /Node 20 imports\s+only JavaScript: give it a \.js or \.mjs module/);
  }
  assert.match(runScript(cli, ["--help"]).stdout, /Commands:\n {2}serve/);

  const none = runScript(cli, []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^Usage: declarative-sync serve/);
  const unknown = runScript(cli, ["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.deepEqual(unknown.stderr.trim().split("\n"), [
    'Unknown command "frobnicate"',
    "Run declarative-sync --help for the commands",
  ]);
});

test("a bad flag, port or schema module is one line on stderr and exit 2, before anything is opened", () => {
  const dir = tempDir();
  try {
    const db = join(dir.path, "never.db");
    const cases: [string, string[], RegExp][] = [
      [main, ["--db", db, "--bogus"], /--bogus.*\(see server\/main\.ts --help\)$/],
      [cli, ["serve", "--db", db, "--port", "eighty"], /^Invalid port "eighty"/],
      [cli, ["serve", "--db", db, "--port", "70000"], /^Invalid port "70000"/],
      [
        cli,
        ["serve", "--db", db, "--schema", "./no_such_schema.mjs"],
        /^Schema module \.\/no_such_schema\.mjs not found/,
      ],
      [cli, [
        "serve",
        "--db",
        db,
        "--schema",
        fileURLToPath(new URL("./helpers.ts", import.meta.url)),
      ], /exports no schema/],
      [cli, ["serve", "--db", db, "--tokens", "nopair"], /^Invalid token "nopair"/],
      [cli, ["serve", "--db", db, "--max-pull-wait=-5"], /^Invalid --max-pull-wait "-5"/],
      [cli, ["serve", "--db", db, "--max-pull-wait", "soon"], /^Invalid --max-pull-wait "soon"/],
    ];
    for (const [script, args, message] of cases) {
      const { code, stdout, stderr } = runScript(script, args);
      assert.equal(code, 2, `${args.join(" ")}: ${stdout}${stderr}`);
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0]!, message);
    }
    assert.deepEqual(readdirSync(dir.path), [], "no database was created");
  } finally {
    dir.cleanup();
  }
});

test("server/cli.ts serve is server/main.ts: a .ts --schema on this runtime, /health, SIGTERM exits 0", async () => {
  const dir = tempDir();
  const [command, args] = runtimeArgs(cli);
  const schemaModule = fileURLToPath(new URL("../examples/schema.ts", import.meta.url));
  const started = startChild(command, [
    ...args,
    ...["serve", "--schema", schemaModule, "--db", join(dir.path, "cli.db"), "--port", "0"],
  ]);
  try {
    const url = await started.url;
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).schema, schema.hash);
    process.kill(started.child.pid!, "SIGTERM");
    assert.equal(await started.exited, 0, started.output());
    assert.match(started.output(), /GET \/health 200/);
    assert.match(started.output(), /stopped/);
  } finally {
    started.child.kill("SIGKILL");
    dir.cleanup();
  }
});
