// server/main.ts as a newcomer runs it: a child process of the same runtime,
// on an embedded libSQL file, stopped with SIGTERM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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

const main = fileURLToPath(new URL("../server/main.ts", import.meta.url));

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
