/**
 * Protocol fuzzer: every byte from a client is hostile, and the sync endpoint
 * must answer every request with 200 or a documented 4xx whose body is
 * `{ error: { code, message, issues? } }` — never a 5xx, never a hang, never a
 * dead process — and change nothing it was not allowed to.
 *
 * The requests come from `tests/fuzz_arbitraries.ts` (fast-check, fixed seed):
 * hostile strings, numbers, versions, nesting, sizes, blobs, duplicate ids,
 * arrays where objects belong, scope attacks, odd content types, headers,
 * routes and raw HTTP framings, with valid pushes and pulls among them. Each
 * one is checked for:
 *
 * - the answer: in time (10 s), the status the documented order of checks
 *   calls for (credentials 401, media type 415, body limit 413, UTF-8 and
 *   JSON 400, protocol and schema 409, change limit 413, schema 400), a JSON
 *   body, the error shape with the code that goes with the status, and 200
 *   bodies that match the protocol's response schemas;
 * - the database, snapshotted through a second libSQL connection to the same
 *   file before and after (every table, `_sync_meta` included, values compared
 *   as bytes and bits): nothing changes unless a push is answered 200 with
 *   `applied` verdicts, and then exactly the rows reported applied change, to
 *   the values last-write-wins says, with no text that is not UTF-8;
 * - the data coming back: a pull as the same principal returns every applied
 *   row exactly as stored (reals to the last bit, blobs byte for byte), every
 *   page of every pull holds exactly the stored rows of its cursor range (less
 *   those the asker says it holds), and a push's `held` ranges name exactly
 *   the rows it wrote;
 * - scopes: Alice's pushes touching Bob's rows (same ids, ids that differ only
 *   after a NUL, a spoofed node id) never change them, and no pull of hers,
 *   with borrowed or crafted cursors, returns them;
 * - `GET /schema`, with junk query strings, content types and credentials:
 *   200 with the description of the served schema's synced tables for a
 *   principal, 401 for anyone else, 404 for the methods and paths beside it;
 * - liveness: `GET /health` answers after every request.
 *
 * The first test serves `createSyncServer` over `openServerDatabase` (the
 * fixture of `tests/sync_helpers.ts`, `bearer` tokens) from a child process of
 * the same runtime — this file, started with `PROTOCOL_FUZZ_SERVE` set — so a
 * native crash in the server's process (libSQL aborts the process that reads
 * stored text that is not UTF-8) is reported with the request that caused it
 * instead of killing the test runner; a dead server is restarted on a fresh
 * database and the run goes on.
 * The second runs `server/main.ts` as a newcomer does and sends it a smaller
 * batch of the same requests. Failures are collected by kind and printed with
 * the seed and the shortest request of each kind.
 *
 * ```sh
 * node --import tsx --test tests/protocol_fuzz.test.ts            # CI: fixed seed, ~270 bodies
 * FUZZ_RUNS=5000 FUZZ_SEED=7 node_modules/.bin/deno test -A tests/protocol_fuzz.test.ts
 * FUZZ_RUNS=2000 FUZZ_MAIN_RUNS=500 node_modules/.bin/bun test ./tests/protocol_fuzz.test.ts
 * ```
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { type Client, createClient } from "@libsql/client";
import fc from "fast-check";
import * as v from "valibot";
import { DEFAULT_MAX_DRIFT_MS, isHlc } from "../src/hlc.ts";
import { DEFAULT_MAX_CHANGES_PER_PUSH, PROTOCOL_VERSION, type PullRow } from "../src/protocol.ts";
import { createProtocolSchemas } from "../src/protocol_schemas.ts";
import type { TableDef } from "../src/schema.ts";
import type { Schema } from "../src/schema.ts";
import { describeSchema } from "../src/schema_description.ts";
import { describeTables, type TableInfo } from "../src/table_info.ts";
import { schema as exampleSchema } from "../examples/schema.ts";
import { syncSchema } from "./fixtures.ts";
import { tempDir } from "./helpers.ts";
import { bearer, startServer } from "./sync_helpers.ts";
import {
  ALICE,
  BOB,
  bodyBytes,
  describeRequest,
  edgeRequests,
  type FuzzContext,
  type FuzzPrincipal,
  type FuzzRequest,
  healthRequest,
  printable,
  rawRequestBytes,
  requestArb,
  schemaRequests,
  seedRequests,
  TOKENS,
} from "./fuzz_arbitraries.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20_251_202);
const RUNS = Number(process.env.FUZZ_RUNS ?? 250);
const MAIN_RUNS = Number(process.env.FUZZ_MAIN_RUNS ?? Math.max(20, Math.round(RUNS / 4)));
/** Every request is answered within this bound, or it hangs. */
const BOUND_MS = 10_000;
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** A server that dies is restarted on a fresh database this often, then the run stops. */
const MAX_RESTARTS = 3;
const SERVE_ENV = "PROTOCOL_FUZZ_SERVE";
/** A test's own bound (Bun's default of 5 s is shorter than one run): generous, yet finite. */
const TEST_TIMEOUT_MS = 600_000;

const schemas = createProtocolSchemas(syncSchema);
const tableInfos = describeTables(syncSchema.tables as unknown as Record<string, TableDef>);
const SYNCED = ["tasks", "notes", "files", "todos"] as const;
const DOCUMENTED_STATUSES = [200, 400, 401, 403, 404, 409, 413, 415];
const CODES: Readonly<Record<number, readonly string[]>> = {
  400: ["malformed"],
  401: ["unauthorized"],
  403: ["forbidden"],
  404: ["not_found"],
  409: ["protocol_mismatch", "schema_mismatch"],
  413: ["too_large"],
  415: ["unsupported_media_type"],
};

// ================================================================ the server's side

// Held pulls are held for real, briefly: a run sends thousands of pulls.
const FUZZ_MAX_PULL_WAIT = 30;

// Started as a child by the first test: serve the fixture until killed.
const serveUrl = process.env[SERVE_ENV];
if (serveUrl !== undefined) {
  const server = await startServer(syncSchema, {
    url: serveUrl,
    authorize: bearer({ ...TOKENS }),
    limits: { maxPullWait: FUZZ_MAX_PULL_WAIT },
  });
  console.log(`fuzz server on ${server.url}`);
} else {
  test(
    "protocol fuzz: hostile requests get 200 or a documented 4xx, and change only what they may",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const findings = new Findings();
      const stats = new Stats();
      await fuzzFixture(findings, stats);
      console.log(stats.summary("createSyncServer fixture", findings));
      assert.equal(findings.size, 0, findings.report());
    },
  );

  test("protocol fuzz: server/main.ts answers a batch of the same requests and stays up", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const findings = new Findings();
    const stats = new Stats();
    await fuzzMain(findings, stats);
    console.log(stats.summary("server/main.ts", findings));
    assert.equal(findings.size, 0, findings.report());
  });
}

// ================================================================ findings and statistics

interface Finding {
  count: number;
  index: number;
  request: FuzzRequest;
  detail: string;
  description: string;
}

/** Failures by kind, each with its shortest request: the report prints one per kind. */
class Findings {
  readonly kinds: Map<string, Finding> = new Map();

  get size(): number {
    return this.kinds.size;
  }

  add(kind: string, index: number, request: FuzzRequest, detail: string): void {
    const description = describeRequest(request);
    const known = this.kinds.get(kind);
    if (known === undefined) {
      this.kinds.set(kind, { count: 1, index, request, detail, description });
      return;
    }
    known.count++;
    if (description.length < known.description.length) {
      Object.assign(known, { index, request, detail, description });
    }
  }

  report(): string {
    const lines = [
      `${this.size} kind(s) of failure (seed ${SEED}; replay with FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}):`,
    ];
    let n = 0;
    for (const [kind, finding] of this.kinds) {
      lines.push(
        `${++n}. ${kind} — ${finding.count}×`,
        `   ${
          finding.index < 0 ? "seeding request" : `request #${finding.index}`
        }: ${finding.description}`,
        `   ${printable(finding.detail).slice(0, 1_500)}`,
      );
    }
    return lines.join("\n");
  }
}

/** What was tried and how it was answered. */
class Stats {
  bodies = 0;
  ok = 0;
  applying = 0;
  restarts = 0;
  readonly statuses: Map<string, number> = new Map();
  readonly started: number = performance.now();

  count(answer: Answer): void {
    this.bodies++;
    const key = answer.outcome === "response" ? String(answer.status) : answer.outcome;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
    if (answer.status === 200) this.ok++;
  }

  summary(server: string, findings: Findings): string {
    const statuses = [...this.statuses].sort().map(([k, n]) => `${k}×${n}`).join(" ");
    const seconds = ((performance.now() - this.started) / 1_000).toFixed(1);
    return `protocol fuzz (${server}, ${runtimeName()}, seed ${SEED}): ${this.bodies} bodies tried, ` +
      `${this.ok} answered 200, ${this.applying} pushes applied rows; statuses ${statuses}; ` +
      `${this.restarts} restart(s); ${findings.size} kind(s) of failure; ${seconds} s`;
  }
}

function runtimeName(): string {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno !== undefined ? "deno" : g.Bun !== undefined ? "bun" : "node";
}

// ================================================================ servers in child processes

interface World {
  readonly url: string;
  readonly dir: { path: string; cleanup: () => void };
  /** A second connection to the server's database file (the fixture only). */
  readonly reader: Client | undefined;
  alive(): boolean;
  output(): string;
  stop(): Promise<void>;
}

function runtimeArgs(file: string): [string, string[]] {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) return [process.execPath, ["run", "-A", file]];
  if (g.Bun !== undefined) return [process.execPath, [file]];
  return [process.execPath, ["--import", "tsx", file]];
}

/** Spawns `file` on this runtime and waits for the URL it prints. */
async function spawnServer(
  file: string,
  args: string[],
  env: Record<string, string>,
  dir: { path: string; cleanup: () => void },
  pattern: RegExp,
  readerPath?: string,
): Promise<World> {
  const [command, runtime] = runtimeArgs(file);
  const child: ChildProcess = spawn(command, [...runtime, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let output = "";
  const keep = (chunk: unknown) => {
    output = (output + String(chunk)).slice(-20_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on("exit", (code, signal) => {
      exited = true;
      output += `\n(exited with ${signal === null ? `code ${code}` : signal})`;
      resolve();
    })
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no server URL in:\n${output}`)), 30_000);
    const check = () => {
      const match = pattern.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on("data", check);
    exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`the server exited:\n${output}`));
    });
  });
  const reader = readerPath === undefined ? undefined : createClient({ url: `file:${readerPath}` });
  return {
    url,
    dir,
    reader,
    alive: () => !exited,
    output: () => output,
    stop: async () => {
      if (!exited) child.kill("SIGKILL");
      await exit;
      reader?.close();
      dir.cleanup();
    },
  };
}

const self = fileURLToPath(import.meta.url);
const main = fileURLToPath(new URL("../server/main.ts", import.meta.url));

function startFixture(): Promise<World> {
  const dir = tempDir();
  const path = join(dir.path, "fuzz.db");
  return spawnServer(
    self,
    [],
    { [SERVE_ENV]: `file:${path}` },
    dir,
    /fuzz server on (http:\/\/127\.0\.0\.1:\d+)/,
    path,
  );
}

function startMain(): Promise<World> {
  const dir = tempDir();
  const tokens = Object.entries(TOKENS).map(([token, id]) => `${token}=${id}`).join(",");
  return spawnServer(
    main,
    [
      "--db",
      join(dir.path, "main.db"),
      "--port",
      "0",
      "--tokens",
      tokens,
      "--max-pull-wait",
      String(FUZZ_MAX_PULL_WAIT),
    ],
    {},
    dir,
    /server on (http:\/\/127\.0\.0\.1:\d+)/,
  );
}

// ================================================================ sending

interface Answer {
  readonly outcome: "response" | "closed" | "timeout" | "failed";
  readonly status?: number;
  readonly contentType?: string;
  readonly text?: string;
  readonly ms: number;
  readonly error?: string;
}

function send(url: string, request: FuzzRequest): Promise<Answer> {
  return request.framing === undefined ? sendFetch(url, request) : sendRaw(url, request);
}

async function sendFetch(url: string, request: FuzzRequest): Promise<Answer> {
  const started = performance.now();
  const headers: Record<string, string> = {};
  if (request.contentType !== undefined) headers["content-type"] = request.contentType;
  if (request.authorization !== undefined) headers["authorization"] = request.authorization;
  const body = request.body.kind === "none" ? undefined : bodyBytes(request.body);
  try {
    const response = await fetch(url + request.path, {
      method: request.method,
      headers,
      body,
      signal: AbortSignal.timeout(BOUND_MS),
    });
    const text = await response.text();
    return {
      outcome: "response",
      status: response.status,
      contentType: response.headers.get("content-type") ?? undefined,
      text,
      ms: performance.now() - started,
    };
  } catch (error) {
    const ms = performance.now() - started;
    const name = (error as Error)?.name;
    if (name === "TimeoutError" || name === "AbortError") return { outcome: "timeout", ms };
    return { outcome: "failed", ms, error: String((error as Error)?.message ?? error) };
  }
}

/** Sends the raw bytes of a request over a socket and reads one response. */
function sendRaw(url: string, request: FuzzRequest): Promise<Answer> {
  const { hostname, port } = new URL(url);
  const { bytes, end } = rawRequestBytes(request, `${hostname}:${port}`);
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let settled = false;
    const socket = connect({ host: hostname, port: Number(port) });
    const finish = (answer: Omit<Answer, "ms"> | undefined, error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...(answer ?? { outcome: "closed", error }), ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish({ outcome: "timeout" }), BOUND_MS);
    socket.on("connect", () => {
      socket.write(bytes);
      if (end) socket.end();
    });
    socket.on("data", (chunk: Uint8Array) => {
      chunks.push(new Uint8Array(chunk));
      const parsed = parseResponse(concatBytes(chunks), false);
      if (parsed !== undefined) finish(parsed);
    });
    const closed = (error?: Error) =>
      finish(parseResponse(concatBytes(chunks), true), error?.message ?? "closed");
    socket.on("end", () => closed());
    socket.on("close", () => closed());
    socket.on("error", (error: Error) => closed(error));
  });
}

function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** One HTTP/1.1 response, once complete (or at the end of the stream, as far as it got). */
function parseResponse(
  bytes: Uint8Array,
  atEnd: boolean,
): Omit<Answer, "ms"> | undefined {
  const latin1 = new TextDecoder("latin1").decode(bytes);
  const headEnd = latin1.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const [statusLine, ...headerLines] = latin1.slice(0, headEnd).split("\r\n");
  const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(statusLine ?? "")?.[1]);
  if (!Number.isInteger(status)) {
    return atEnd ? { outcome: "failed", error: statusLine } : undefined;
  }
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  let body = bytes.subarray(headEnd + 4);
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
    const decoded = dechunk(body);
    if (decoded === undefined && !atEnd) return undefined;
    body = decoded ?? body;
  } else if (headers.has("content-length")) {
    const length = Number(headers.get("content-length"));
    if (body.length < length && !atEnd) return undefined;
    body = body.subarray(0, length);
  } else if (!atEnd) return undefined;
  return {
    outcome: "response",
    status,
    contentType: headers.get("content-type"),
    text: new TextDecoder().decode(body),
  };
}

function dechunk(bytes: Uint8Array): Uint8Array | undefined {
  const parts: Uint8Array[] = [];
  const latin1 = new TextDecoder("latin1").decode(bytes);
  let at = 0;
  for (;;) {
    const eol = latin1.indexOf("\r\n", at);
    if (eol < 0) return undefined;
    const size = parseInt(latin1.slice(at, eol), 16);
    if (!Number.isInteger(size)) return undefined;
    if (size === 0) return concatBytes(parts);
    if (eol + 2 + size + 2 > bytes.length) return undefined;
    parts.push(bytes.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

// ================================================================ expectations

type Route = "push" | "pull" | "health" | "schema";

function routeOf(request: FuzzRequest): Route | undefined {
  if (request.method === "GET" && request.path === "/health") return "health";
  // The query string is not part of the route.
  if (request.method === "GET" && request.path.split("?")[0] === "/schema") return "schema";
  if (request.method === "POST" && request.path === "/push") return "push";
  if (request.method === "POST" && request.path === "/pull") return "pull";
  return undefined;
}

/** A short label for kinds of failure: the route, or "another route". */
function routeLabel(request: FuzzRequest): string {
  const route = routeOf(request);
  return route === undefined ? "another route" : `${request.method} /${route}`;
}

/** Who `bearer(TOKENS)` of tests/sync_helpers.ts should let in: own keys only. */
function fixturePrincipal(authorization: string | undefined): FuzzPrincipal | undefined {
  const token = (authorization ?? "").replace(/^Bearer /, "");
  if (!Object.hasOwn(TOKENS, token)) return undefined;
  return token === ALICE.token ? ALICE : BOB;
}

/** Who server/main.ts lets in: `Authorization: Bearer <token>` and nothing else. */
function mainPrincipal(authorization: string | undefined): FuzzPrincipal | undefined {
  const token = /^Bearer (.+)$/.exec(authorization ?? "")?.[1];
  return token === ALICE.token ? ALICE : token === BOB.token ? BOB : undefined;
}

function isJsonMediaType(contentType: string | undefined): boolean {
  return /^application\/json[ \t]*(;.*)?$/i.test((contentType ?? "").trim());
}

type Parsed = { ok: true; value: unknown } | { ok: false; why: string };

/** The body as the server reads it (server/body.ts): UTF-8 only, a BOM dropped, then JSON. */
function parseJsonBody(bytes: Uint8Array): Parsed {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, why: "the body is not UTF-8" };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, why: "the body is not JSON" };
  }
}

interface Expectation {
  readonly statuses: readonly number[];
  readonly code?: string;
  readonly reason: string;
  readonly body: Parsed;
}

/**
 * The statuses the documented order of checks allows for `request` (server/app.ts):
 * credentials, media type, body size, UTF-8 and JSON, protocol and schema, change limit,
 * then the schema. `trustValid` says whether a request built valid must be accepted
 * (not against a server of another schema).
 */
function expectationFor(
  request: FuzzRequest,
  bytes: Uint8Array,
  principal: FuzzPrincipal | undefined,
  schemaHash: string,
  trustValid = true,
): Expectation {
  const body = parseJsonBody(bytes);
  const expect = (statuses: number[], reason: string, code?: string): Expectation => ({
    statuses,
    reason,
    code,
    body,
  });
  const route = routeOf(request);
  if (route === undefined) return expect([404], "no such route");
  if (route === "health") return expect([200], "health");
  if (principal === undefined) return expect([401], "no valid credentials");
  if (route === "schema") return expect([200], "the schema, for a principal");
  if (!isJsonMediaType(request.contentType)) return expect([415], "not application/json");
  if (bytes.length > MAX_BODY_BYTES) return expect([413], "the body is over the limit");
  if (!body.ok) return expect([400], body.why);
  const value = body.value;
  if (
    typeof value !== "object" || value === null || Array.isArray(value) || !("protocol" in value)
  ) {
    return expect([400], "the body is not an object with a protocol");
  }
  const head = value as Record<string, unknown>;
  if (head.protocol !== PROTOCOL_VERSION) {
    return expect([409], "another protocol", "protocol_mismatch");
  }
  if (head.schema !== schemaHash) return expect([409], "another schema", "schema_mismatch");
  if (Array.isArray(head.changes) && head.changes.length > DEFAULT_MAX_CHANGES_PER_PUSH) {
    return expect([413], "too many changes");
  }
  if (request.valid && trustValid) return expect([200], "a valid request");
  return expect([200, 400], "the schema decides");
}

/** A broken HTTP message: the runtime may refuse it before the app sees it. */
function brokenFraming(request: FuzzRequest): boolean {
  return request.framing !== undefined && request.framing !== "chunked";
}

type Flag = (kind: string, detail: string) => void;

/** Checks status, timing and body of an answer; returns the parsed body of an app's response. */
function checkAnswer(
  request: FuzzRequest,
  answer: Answer,
  expectation: Expectation,
  flag: Flag,
): unknown {
  const where = routeLabel(request);
  if (answer.outcome === "timeout") {
    flag(`no answer within ${BOUND_MS / 1_000} s (${where})`, `after ${answer.ms.toFixed(0)} ms`);
    return undefined;
  }
  if (answer.outcome !== "response") {
    if (!brokenFraming(request)) flag(`no response (${where})`, answer.error ?? "closed");
    return undefined;
  }
  const status = answer.status!;
  const text = answer.text ?? "";
  const fromApp = /^application\/json/i.test(answer.contentType ?? "");
  // A runtime may refuse a message it cannot parse before the app sees it; 505 (HTTP version
  // not supported) is how Bun refuses bare-LF line endings and HTTP/9.9. The app never may.
  const runtimeRefused = brokenFraming(request) && status === 505 && !fromApp;
  if (status >= 500 && !runtimeRefused) flag(`status ${status} (${where})`, text.slice(0, 500));
  if (brokenFraming(request) && !fromApp) {
    if (status < 400) flag(`a broken HTTP message answered ${status}`, text.slice(0, 300));
    return undefined;
  }
  const allowed = brokenFraming(request) ? DOCUMENTED_STATUSES : expectation.statuses;
  if (status < 500 && allowed.includes(401) && allowed.length === 1 && status !== 401) {
    flag(
      `a request without valid credentials was served (${where})`,
      `status ${status}: ${text}`.slice(0, 500),
    );
  } else if (status < 500 && !allowed.includes(status)) {
    flag(
      `status ${status} where ${allowed.join("/")} was due (${where}: ${expectation.reason})`,
      text.slice(0, 500),
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    flag(`response body is not JSON (${where}, status ${status})`, text.slice(0, 300));
    return undefined;
  }
  if (status >= 400 && status < 500) checkErrorBody(status, json, expectation, where, flag);
  return json;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkErrorBody(
  status: number,
  json: unknown,
  expectation: Expectation,
  where: string,
  flag: Flag,
): void {
  const error = isRecord(json) ? json.error : undefined;
  const issues = isRecord(error) ? error.issues : undefined;
  const wellShaped = isRecord(error) && typeof error.code === "string" &&
    typeof error.message === "string" &&
    (issues === undefined ||
      (Array.isArray(issues) &&
        issues.every((i) =>
          isRecord(i) && typeof i.path === "string" && typeof i.message === "string"
        )));
  if (!wellShaped) {
    flag(
      `error body is not { error: { code, message, issues? } } (${where}, status ${status})`,
      JSON.stringify(json),
    );
    return;
  }
  const code = (error as { code: string }).code;
  const codes = expectation.code !== undefined && expectation.statuses.includes(status)
    ? [expectation.code]
    : CODES[status] ?? [];
  if (!codes.includes(code)) {
    flag(
      `status ${status} with code ${JSON.stringify(code)} (${where})`,
      JSON.stringify(json).slice(0, 500),
    );
  }
}

// ================================================================ database snapshots

interface Cell {
  readonly type: "null" | "integer" | "real" | "text" | "blob";
  /** hex() of the value (its bytes; for integers, of their decimal text); the value of a real. */
  readonly hex: string;
  readonly real?: number;
}
interface StoredRow {
  readonly cells: Readonly<Record<string, Cell>>;
  readonly text: string;
}
/** Table → row key (hex of `system_id`, or of `_sync_meta.key`, or the row itself) → row. */
type Snapshot = Map<string, Map<string, StoredRow>>;

const float = new Float64Array(1);
const floatBytes = new Uint8Array(float.buffer);
function realBits(value: number): string {
  float[0] = value;
  return bytesHex(floatBytes);
}

/** Every table of the database, every value as bytes: nothing is decoded as text by libSQL. */
async function snapshot(reader: Client): Promise<Snapshot> {
  const { rows: tables } = await reader.execute(
    `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
  );
  const result: Snapshot = new Map();
  for (const { name } of tables) {
    const table = String(name);
    const { rows: columnRows } = await reader.execute({
      sql: `SELECT name FROM pragma_table_info(?)`,
      args: [table],
    });
    const columns = columnRows.map((row) => String(row.name));
    const select = columns.map((column, i) => {
      const q = `"${column.replaceAll('"', '""')}"`;
      return `typeof(${q}) AS t${i}, CASE typeof(${q}) WHEN 'real' THEN ${q} ELSE hex(${q}) END AS v${i}`;
    });
    const { rows } = await reader.execute(`SELECT ${select.join(", ")} FROM "${table}"`);
    const stored = new Map<string, StoredRow>();
    for (const row of rows) {
      const cells: Record<string, Cell> = {};
      const parts: string[] = [];
      columns.forEach((column, i) => {
        const type = String(row[`t${i}`]) as Cell["type"];
        const value = row[`v${i}`];
        const cell: Cell = type === "real"
          ? { type, hex: realBits(Number(value)), real: Number(value) }
          : { type, hex: String(value ?? "") };
        cells[column] = cell;
        parts.push(`${column}=${type}:${cell.hex}`);
      });
      const text = parts.join("|");
      const key = cells.system_id?.hex ?? (table === "_sync_meta" ? cells.key?.hex : undefined) ??
        text;
      stored.set(stored.has(key) ? `${key}#${stored.size}` : key, { cells, text });
    }
    result.set(table, stored);
  }
  return result;
}

interface RowDiff {
  readonly table: string;
  readonly key: string;
  readonly before: StoredRow | undefined;
  readonly after: StoredRow | undefined;
}

function diff(before: Snapshot, after: Snapshot): RowDiff[] {
  const diffs: RowDiff[] = [];
  for (const table of new Set([...before.keys(), ...after.keys()])) {
    const a = before.get(table) ?? new Map<string, StoredRow>();
    const b = after.get(table) ?? new Map<string, StoredRow>();
    for (const key of new Set([...a.keys(), ...b.keys()])) {
      if (a.get(key)?.text !== b.get(key)?.text) {
        diffs.push({ table, key, before: a.get(key), after: b.get(key) });
      }
    }
  }
  return diffs;
}

function hexToBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
function bytesHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex.toUpperCase();
}
function utf8Hex(text: string): string {
  return bytesHex(new TextEncoder().encode(text));
}
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
/** A stored text as a string; undefined when its bytes are not UTF-8. */
function cellText(cell: Cell | undefined): string | undefined {
  if (cell === undefined || cell.type !== "text") return undefined;
  try {
    return strictUtf8.decode(hexToBytes(cell.hex));
  } catch {
    return undefined;
  }
}
/** The decimal text of a stored integer. */
function cellInteger(cell: Cell | undefined): string | undefined {
  return cell?.type === "integer" ? new TextDecoder().decode(hexToBytes(cell.hex)) : undefined;
}

function decodeBase64(text: string): Uint8Array | undefined {
  try {
    const binary = atob(text);
    return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** True when no lone surrogate hides anywhere in `value` (strings and keys alike). */
function wellFormed(value: unknown): boolean {
  if (typeof value === "string") {
    return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value);
  }
  if (Array.isArray(value)) return value.every(wellFormed);
  if (isRecord(value)) {
    return Object.entries(value).every(([k, v]) => wellFormed(k) && wellFormed(v));
  }
  return true;
}

// ================================================================ value comparisons

/** A stored value equals what was pushed for a column of `kind`. */
function storedMatchesPushed(kind: string, cell: Cell | undefined, value: unknown): boolean {
  if (cell === undefined) return false;
  if (value === null) return cell.type === "null";
  switch (kind) {
    case "text":
      return typeof value === "string" && cell.type === "text" && cell.hex === utf8Hex(value);
    case "integer":
      return typeof value === "number" && cellInteger(cell) === String(value === 0 ? 0 : value);
    case "boolean":
      return cellInteger(cell) === (value === true ? "1" : "0");
    case "real":
      return cell.type === "real" && Object.is(cell.real, value);
    case "blob": {
      const bytes = typeof value === "string" ? decodeBase64(value) : undefined;
      return bytes !== undefined && cell.type === "blob" && cell.hex === bytesHex(bytes);
    }
    case "json": {
      const text = cellText(cell);
      return text !== undefined &&
        isDeepStrictEqual(JSON.parse(text), JSON.parse(JSON.stringify(value)));
    }
  }
  return false;
}

/** A pulled value equals the stored one for a column of `kind`: bits, bytes and code units. */
function pulledMatchesStored(kind: string, pulled: unknown, cell: Cell | undefined): boolean {
  if (cell === undefined) return false;
  if (cell.type === "null") return pulled === null;
  switch (kind) {
    case "text":
      return typeof pulled === "string" && cell.type === "text" && utf8Hex(pulled) === cell.hex;
    case "integer":
      return typeof pulled === "number" && String(pulled) === cellInteger(cell);
    case "boolean":
      return typeof pulled === "boolean" && pulled === (cellInteger(cell) !== "0");
    case "real":
      return typeof pulled === "number" && Object.is(pulled, cell.real);
    case "blob": {
      const bytes = typeof pulled === "string" ? decodeBase64(pulled) : undefined;
      return bytes !== undefined && cell.type === "blob" && bytesHex(bytes) === cell.hex;
    }
    case "json": {
      const text = cellText(cell);
      return text !== undefined && isDeepStrictEqual(pulled, JSON.parse(text));
    }
  }
  return false;
}

/** Why a pulled row differs from the stored one, or undefined when it does not. */
function pulledRowProblem(info: TableInfo, row: PullRow, stored: StoredRow | undefined) {
  if (stored === undefined) return "pulled a row that is not stored";
  const c = stored.cells;
  if (row.version !== cellText(c.system_version)) return "version differs from the stored one";
  if (row.createdAt !== cellText(c.system_created_at)) return "createdAt differs";
  if (row.deleted !== (cellInteger(c.is_deleted) !== "0")) return "deleted differs";
  for (const column of info.columns) {
    if (!pulledMatchesStored(column.kind, row.data[column.name], c[column.name])) {
      return `column ${column.name} (${column.kind}) differs: pulled ${
        JSON.stringify(row.data[column.name])?.slice(0, 200)
      }, stored ${JSON.stringify(c[column.name])?.slice(0, 200)}`;
    }
  }
  if (info.perColumn) {
    const text = cellText(c.system_column_versions);
    if (text === undefined || !isDeepStrictEqual(row.columnVersions, JSON.parse(text))) {
      return "columnVersions differ";
    }
  }
  return undefined;
}

// ================================================================ what a push may change

interface Pushed {
  readonly index: number;
  readonly info: TableInfo;
  readonly key: string;
  readonly id: string;
  readonly version: string;
  /** The creation version the change carries (its version when it carries none). */
  readonly createdAt: string;
  readonly deleted: boolean;
  readonly data: Record<string, unknown>;
  /** Column tables: the version each carried column (and `is_deleted`) is written at. */
  readonly versions: Record<string, string>;
  readonly status: string;
}

/** Per column, the version a change writes it at (src/normalize.ts). */
function columnVersionsOf(
  info: TableInfo,
  change: Record<string, unknown>,
): Record<string, string> {
  const version = String(change.version);
  const explicit = isRecord(change.columnVersions)
    ? change.columnVersions as Record<string, string>
    : undefined;
  const out: Record<string, string> = {};
  const data = isRecord(change.data) ? change.data : {};
  for (const column of info.columns) {
    if (data[column.name] !== undefined) out[column.name] = explicit?.[column.name] ?? version;
  }
  if (explicit === undefined) out.is_deleted = version;
  else if (explicit.is_deleted !== undefined) out.is_deleted = explicit.is_deleted;
  return out;
}

const maxOf = (values: readonly string[]) => values.reduce((a, b) => (b > a ? b : a), "");

/** The changes of a push answered 200, with their verdicts. */
function pushedChanges(body: unknown, results: readonly { status: string }[]): Pushed[] {
  const changes = isRecord(body) && Array.isArray(body.changes) ? body.changes : [];
  const out: Pushed[] = [];
  changes.forEach((change: Record<string, unknown>, index: number) => {
    const info = tableInfos.get(String(change.table));
    if (info === undefined || !isRecord(change)) return;
    out.push({
      index,
      info,
      key: utf8Hex(String(change.id)),
      id: String(change.id),
      version: String(change.version),
      createdAt: typeof change.createdAt === "string" ? change.createdAt : String(change.version),
      deleted: change.deleted === true,
      data: isRecord(change.data) ? change.data : {},
      versions: columnVersionsOf(info, change),
      status: results[index]?.status ?? "missing",
    });
  });
  return out;
}

/**
 * The verdicts of a push whose answer was lost: the runtime took the
 * request, the app applied it, and the connection closed before the answer
 * went out (Deno closes a connection whose client half-closed it). As after
 * any lost answer, the changes may or may not have been applied: a change
 * counts as applied when its row now holds the pushed version, and the
 * usual checks then hold it to what the principal was allowed to write.
 */
function verdictsOfLostAnswer(body: unknown, after: Snapshot): { status: string }[] {
  const changes = isRecord(body) && Array.isArray(body.changes) ? body.changes : [];
  return changes.map((change: unknown) => {
    if (!isRecord(change)) return { status: "missing" };
    const row = after.get(String(change.table))?.get(utf8Hex(String(change.id)));
    const stored = cellText(row?.cells.system_version);
    return { status: stored !== undefined && stored === change.version ? "applied" : "missing" };
  });
}

interface DatabaseCheck {
  readonly request: FuzzRequest;
  readonly principal: FuzzPrincipal | undefined;
  readonly status: number | undefined;
  readonly route: Route | undefined;
  readonly body: unknown;
  readonly response: unknown;
  readonly before: Snapshot;
  readonly after: Snapshot;
}

const META_SEQUENCE = utf8Hex("sequence");

/**
 * Checks what changed between two snapshots against what the request was
 * allowed to change; returns the applied changes (for the pull-back).
 */
function checkDatabase(check: DatabaseCheck, flag: Flag): Pushed[] {
  const diffs = diff(check.before, check.after);
  for (const d of diffs) checkStoredText(d, flag);
  const results = check.status === 200 && check.route === "push" && isRecord(check.response) &&
      Array.isArray(check.response.results)
    ? check.response.results as { status: string }[]
    : check.status === undefined && check.route === "push"
    ? verdictsOfLostAnswer(check.body, check.after)
    : undefined;
  const pushed = results === undefined ? [] : pushedChanges(check.body, results);
  const applied = pushed.filter((p) => p.status === "applied");
  const appliedKeys = new Set(applied.map((p) => `${p.info.name}:${p.key}`));

  for (const d of diffs) {
    const isSynced = (SYNCED as readonly string[]).includes(d.table);
    if (d.table === "_sync_meta" && d.key === META_SEQUENCE) {
      if (applied.length === 0) {
        flag(
          `_sync_meta changed by a request that applied nothing (${routeLabel(check.request)})`,
          `sequence ${describeCell(d.before?.cells.value)} → ${describeCell(d.after?.cells.value)}`,
        );
      }
    } else if (!isSynced || !appliedKeys.has(`${d.table}:${d.key}`)) {
      flag(
        `${isSynced ? "a row" : d.table} changed without an applied verdict (${
          routeLabel(check.request)
        })`,
        `${d.table} ${d.key}: ${d.before?.text ?? "(none)"} → ${d.after?.text ?? "(none)"}`.slice(
          0,
          800,
        ),
      );
    }
    if (d.table === "todos") checkScopeOfChange(d, check.principal, flag);
  }
  checkHeldRanges(check.response, diffs, check.after, flag);
  const changed = new Set(diffs.map((d) => `${d.table}:${d.key}`));
  for (const p of applied) {
    if (!changed.has(`${p.info.name}:${p.key}`)) {
      flag("applied verdict, but the row did not change", `${p.info.name} ${JSON.stringify(p.id)}`);
    }
    checkApplied(p, check, flag);
  }
  checkLastWriteWins(pushed, check, flag);
  return applied;
}

/**
 * A push's `held` ranges cover the sequence numbers of the rows it wrote,
 * and any other number they name is held by no row at all (a number given
 * to a change that lost, or to a row the same push then changed again):
 * leaving out the rows holding them never hides another writer's row.
 */
function checkHeldRanges(
  response: unknown,
  diffs: readonly RowDiff[],
  after: Snapshot,
  flag: Flag,
): void {
  if (!isRecord(response) || !Array.isArray(response.held)) return;
  const ranges = response.held as [number, number][];
  const claimed = new Set<number>();
  for (const [first, last] of ranges) {
    for (let n = first; n <= last && claimed.size <= 100_000; n++) claimed.add(n);
  }
  const written = new Set(
    diffs.filter((d) => (SYNCED as readonly string[]).includes(d.table) && d.after !== undefined)
      .map((d) => Number(cellInteger(d.after!.cells.system_seq))),
  );
  const heldByAnyRow = new Set<number>();
  for (const table of SYNCED) {
    for (const row of after.get(table)?.values() ?? []) {
      heldByAnyRow.add(Number(cellInteger(row.cells.system_seq)));
    }
  }
  const unclaimed = [...written].filter((n) => !claimed.has(n));
  const others = [...claimed].filter((n) => !written.has(n) && heldByAnyRow.has(n));
  if (unclaimed.length > 0 || others.length > 0) {
    flag(
      "push held ranges differ from the rows it wrote",
      `held ${JSON.stringify(ranges)}, wrote ${[...written].sort((a, b) => a - b)}; ` +
        `not covered ${unclaimed}, held by rows it did not write ${others}`,
    );
  }
}

function describeCell(cell: Cell | undefined): string {
  return cell === undefined ? "(none)" : cellText(cell) ?? cell.hex;
}

/** Every text a request wrote is UTF-8: libSQL aborts the process that reads it otherwise. */
function checkStoredText(d: RowDiff, flag: Flag): void {
  for (const [column, cell] of Object.entries(d.after?.cells ?? {})) {
    if (cell.type === "text" && cellText(cell) === undefined) {
      flag(`stored text that is not UTF-8 (${d.table}.${column})`, `hex ${cell.hex.slice(0, 200)}`);
    }
  }
}

/** A todos row may change only when it is, and stays, the requester's. */
function checkScopeOfChange(d: RowDiff, principal: FuzzPrincipal | undefined, flag: Flag): void {
  const before = d.before === undefined ? undefined : cellText(d.before.cells.owner);
  const after = d.after === undefined ? undefined : cellText(d.after.cells.owner);
  if (principal === undefined) {
    flag("todos changed by a request without valid credentials", `${before} → ${after}`);
  } else if ((d.before !== undefined && before !== principal.id) || after !== principal.id) {
    flag(
      `${principal.id} changed a todos row of another scope`,
      `owner ${before} → ${after}, row ${d.key}`,
    );
  }
}

/** What an applied verdict promises about one change. */
function checkApplied(p: Pushed, check: DatabaseCheck, flag: Flag): void {
  if (!wellFormed(p.id)) {
    flag("applied a change whose id is not well-formed UTF-16", JSON.stringify(p.id));
  }
  for (const column of p.info.columns) {
    const value = p.data[column.name];
    if (!wellFormed(value)) {
      flag(
        `applied a ${column.kind} value that is not well-formed UTF-16 (${p.info.name}.${column.name})`,
        JSON.stringify(value)?.slice(0, 200) ?? "",
      );
    }
  }
  // A push whose answer was lost says no server time: the server applied it
  // before now, on this machine's clock.
  const serverTime = isRecord(check.response) ? Number(check.response.serverTime) : Date.now();
  const ms = isHlc(p.version) ? Number(p.version.slice(0, 19)) : NaN;
  if (!(ms - serverTime <= DEFAULT_MAX_DRIFT_MS)) {
    flag("applied a version beyond maxDrift", `${p.version} at server time ${serverTime}`);
  }
}

/** Verdicts and final rows agree with last-write-wins, per row or per column. */
function checkLastWriteWins(pushed: readonly Pushed[], check: DatabaseCheck, flag: Flag): void {
  const byKey = new Map<string, Pushed[]>();
  for (const p of pushed) {
    const key = `${p.info.name}:${p.key}`;
    byKey.set(key, [...(byKey.get(key) ?? []), p]);
  }
  for (const group of byKey.values()) {
    const { info, key } = group[0]!;
    const before = check.before.get(info.name)?.get(key);
    const after = check.after.get(info.name)?.get(key);
    if (info.perColumn) checkColumnGroup(info, group, before, after, flag);
    else checkRowGroup(info, group, before, after, flag);
  }
}

function checkRowGroup(
  info: TableInfo,
  group: readonly Pushed[],
  before: StoredRow | undefined,
  after: StoredRow | undefined,
  flag: Flag,
): void {
  const stored = before === undefined ? "" : cellText(before.cells.system_version) ?? "";
  const live = group.filter((p) => p.status !== "rejected");
  const applied = group.filter((p) => p.status === "applied");
  // An equal version may apply: the merge orders two states under one version by their values.
  for (const p of applied) {
    if (p.version < stored) {
      flag(`applied a change older than the stored row (${info.name})`, `${p.version} < ${stored}`);
    }
  }
  for (const p of group.filter((p) => p.status === "stale")) {
    const others = [stored, ...live.filter((o) => o !== p).map((o) => o.version)];
    if (others.every((o) => o < p.version)) {
      flag(
        `stale verdict for the newest version of a row (${info.name})`,
        `${p.version} > ${maxOf(others)}`,
      );
    }
  }
  if (applied.length === 0 || after === undefined) return;
  const newest = maxOf(applied.map((p) => p.version));
  if (cellText(after.cells.system_version) !== newest) {
    flag(
      `stored version is not the newest applied one (${info.name})`,
      `${cellText(after.cells.system_version)} ≠ ${newest}`,
    );
    return;
  }
  const winners = applied.filter((p) => p.version === newest);
  const problems = winners.map((w) => rowProblem(info, w, after));
  if (problems.every((problem) => problem !== undefined)) {
    flag(`stored row differs from the change that won (${info.name})`, problems[0]!);
  }
}

function rowProblem(info: TableInfo, winner: Pushed, after: StoredRow): string | undefined {
  if ((cellInteger(after.cells.is_deleted) !== "0") !== winner.deleted) return "is_deleted differs";
  const createdAt = cellText(after.cells.system_created_at);
  if (createdAt !== winner.createdAt) return `system_created_at ${createdAt} ≠ ${winner.createdAt}`;
  for (const column of info.columns) {
    if (!(column.name in winner.data)) continue;
    const value = winner.data[column.name];
    if (!storedMatchesPushed(column.kind, after.cells[column.name], value)) {
      return `${column.name}: pushed ${JSON.stringify(value)?.slice(0, 200)}, stored ${
        JSON.stringify(after.cells[column.name])?.slice(0, 200)
      }`;
    }
  }
  return undefined;
}

function checkColumnGroup(
  info: TableInfo,
  group: readonly Pushed[],
  before: StoredRow | undefined,
  after: StoredRow | undefined,
  flag: Flag,
): void {
  const storedVersions = (row: StoredRow | undefined): Record<string, string> => {
    const text = row === undefined ? undefined : cellText(row.cells.system_column_versions);
    return text === undefined ? {} : JSON.parse(text);
  };
  const prior = storedVersions(before);
  const live = group.filter((p) => p.status !== "rejected");
  const applied = group.filter((p) => p.status === "applied");
  // A change that inserts a new row applies whatever it carries; one that updates must win a column.
  for (const p of before === undefined ? [] : applied) {
    if (!Object.entries(p.versions).some(([column, version]) => version >= (prior[column] ?? ""))) {
      flag(
        `applied a change none of whose columns is as new (${info.name})`,
        JSON.stringify(p.versions),
      );
    }
  }
  for (const p of group.filter((p) => p.status === "stale")) {
    for (const [column, version] of Object.entries(p.versions)) {
      const others = [
        prior[column] ?? "",
        ...live.filter((o) => o !== p).map((o) => o.versions[column] ?? ""),
      ];
      if (others.every((o) => o < version)) {
        flag(
          `stale verdict for the newest version of a column (${info.name}.${column})`,
          `${version} in row ${JSON.stringify(p.id)}; stored before ${JSON.stringify(prior)}, ` +
            `after ${JSON.stringify(storedVersions(after))}; this push: ${
              JSON.stringify(group.map((g) => [g.index, g.status, g.versions]))
            }`,
        );
      }
    }
  }
  if (applied.length === 0 || after === undefined) return;
  checkColumnRowVersion(info, applied, before, after, flag);
  const final = storedVersions(after);
  const columns = new Set(applied.flatMap((p) => Object.keys(p.versions)));
  for (const column of columns) {
    const newest = maxOf([prior[column] ?? "", ...applied.map((p) => p.versions[column] ?? "")]);
    if (final[column] !== newest) {
      flag(
        `stored column version is not the newest (${info.name}.${column})`,
        `${final[column]} ≠ ${newest}`,
      );
      continue;
    }
    const winners = applied.filter((p) => p.versions[column] === newest);
    if (winners.length === 0) continue; // the stored value was newer already
    const info_ = info.byName.get(column);
    const cell = column === "is_deleted" ? "is_deleted" : column;
    // Under one version the merge keeps one state by value: the stored one may stay.
    const keptStored = prior[column] === newest &&
      JSON.stringify(before?.cells[cell]) === JSON.stringify(after.cells[cell]);
    const matches = keptStored ||
      winners.some((w) =>
        info_ === undefined
          ? (cellInteger(after.cells.is_deleted) !== "0") === w.deleted
          : storedMatchesPushed(info_.kind, after.cells[column], w.data[column])
      );
    if (!matches) {
      flag(
        `stored column differs from the change that won it (${info.name}.${column})`,
        `pushed ${JSON.stringify(winners[0]!.data[column])?.slice(0, 200)}, stored ${
          JSON.stringify(after.cells[column === "is_deleted" ? "is_deleted" : column])
        }`,
      );
    }
  }
}

/** A column table's row version is the newest one seen; its creation version comes with it. */
function checkColumnRowVersion(
  info: TableInfo,
  applied: readonly Pushed[],
  before: StoredRow | undefined,
  after: StoredRow,
  flag: Flag,
): void {
  const candidates = applied.map((p) => ({ version: p.version, createdAt: p.createdAt }));
  if (before !== undefined) {
    candidates.push({
      version: cellText(before.cells.system_version) ?? "",
      createdAt: cellText(before.cells.system_created_at) ?? "",
    });
  }
  const newest = maxOf(candidates.map((c) => c.version));
  const stored = cellText(after.cells.system_version);
  if (stored !== newest) {
    flag(`stored row version is not the newest (${info.name})`, `${stored} ≠ ${newest}`);
    return;
  }
  const createdAt = cellText(after.cells.system_created_at);
  if (!candidates.some((c) => c.version === newest && c.createdAt === createdAt)) {
    flag(
      `system_created_at does not come with the newest version (${info.name})`,
      `${createdAt}; newest ${newest}`,
    );
  }
}

// ================================================================ what a pull may return

/** Checks a 200 pull: shape, scope, and every page against the stored rows of its range. */
function checkPull(
  body: unknown,
  response: unknown,
  principal: FuzzPrincipal | undefined,
  stored: Snapshot,
  flag: Flag,
): void {
  const parsed = v.safeParse(schemas.pullResponse, response);
  if (!parsed.success) {
    flag("pull response does not match the protocol", describeSchemaIssue(parsed.issues));
    return;
  }
  const request = body as PullBody;
  const changes = parsed.output.changes;
  const asked = Object.keys(request.cursors ?? {}).sort();
  if (!isDeepStrictEqual(Object.keys(changes).sort(), asked)) {
    flag("pull answered other tables than asked", `${Object.keys(changes)} vs ${asked}`);
  }
  for (const [table, page] of Object.entries(changes)) {
    const info = tableInfos.get(table);
    if (info === undefined || page === undefined) continue;
    checkPage(info, page, request.cursors[table] ?? null, request, principal, stored, flag);
  }
}

/** A pull request as the server accepted it. */
interface PullBody {
  readonly cursors: Record<string, string | null>;
  readonly limit?: number;
  readonly held?: readonly (readonly [number, number])[];
}

function checkPage(
  info: TableInfo,
  page: { rows: readonly PullRow[]; cursor: string | null; hasMore: boolean },
  cursor: string | null,
  request: PullBody,
  principal: FuzzPrincipal | undefined,
  stored: Snapshot,
  flag: Flag,
): void {
  const rows = stored.get(info.name) ?? new Map<string, StoredRow>();
  const from = Number(cursor ?? 0);
  const to = Number(page.cursor);
  if (!(to >= from)) {
    flag(`pull cursor went backwards (${info.name})`, `${cursor} → ${page.cursor}`);
  }
  if (page.rows.length > (request.limit ?? 1_000)) flag("pull page over its limit", info.name);
  const seen = new Set<string>();
  for (const row of page.rows) {
    const key = utf8Hex(row.id);
    seen.add(key);
    const storedRow = rows.get(key);
    if (info.name === "todos" && row.data.owner !== principal?.id) {
      flag(
        `${principal?.id} pulled a todos row of another scope`,
        `owner ${JSON.stringify(row.data.owner)}`,
      );
    }
    const problem = pulledRowProblem(info, row, storedRow);
    if (problem !== undefined) {
      flag(`pulled row differs from the stored one (${info.name})`, problem);
    }
    const seq = Number(cellInteger(storedRow?.cells.system_seq));
    if (storedRow !== undefined && !(seq > from && seq <= to)) {
      flag(
        `pulled a row outside its cursor range (${info.name})`,
        `seq ${seq} not in (${from}, ${to}]`,
      );
    }
  }
  // Every stored row of the range is in the page: a node id leaves nothing out, and `held`
  // leaves out only rows of row tables whose sequence number the asker claims.
  const held = (seq: number) =>
    !info.perColumn && (request.held ?? []).some(([first, last]) => seq >= first && seq <= last);
  for (const row of page.rows) {
    const seq = Number(cellInteger(rows.get(utf8Hex(row.id))?.cells.system_seq));
    if (held(seq)) flag(`pull returned a row the asker holds (${info.name})`, `seq ${seq}`);
  }
  for (const [key, row] of rows) {
    const seq = Number(cellInteger(row.cells.system_seq));
    if (!(seq > from && (page.hasMore ? seq <= to : true)) || seen.has(key) || held(seq)) continue;
    if (info.def.scope !== undefined && cellText(row.cells[info.def.scope]) !== principal?.id) {
      continue;
    }
    flag(
      `pull skipped a committed row (${info.name})`,
      `row ${key} seq ${seq}, cursor ${cursor} → ${page.cursor}, hasMore ${page.hasMore}`,
    );
  }
}

/** The first issue of a failed parse, with where it is and what was there. */
function describeSchemaIssue(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0];
  const path = issue?.path?.map((item) => String(item.key)).join(".") ?? "";
  return `${path}: ${issue?.message}; got ${JSON.stringify(issue?.input)?.slice(0, 300)}`;
}

/** Checks a 200 push body: the protocol's shape, one verdict per change, in order. */
function checkPushResponse(body: unknown, response: unknown, flag: Flag): void {
  const parsed = v.safeParse(schemas.pushResponse, response);
  if (!parsed.success) {
    flag("push response does not match the protocol", describeSchemaIssue(parsed.issues));
    return;
  }
  const changes = isRecord(body) && Array.isArray(body.changes) ? body.changes : [];
  const results = parsed.output.results;
  if (results.length !== changes.length) {
    flag(
      "push answered another number of verdicts than changes",
      `${results.length} ≠ ${changes.length}`,
    );
    return;
  }
  results.forEach((result, i) => {
    const change = changes[i] as Record<string, unknown>;
    if (result.table !== change.table || result.id !== change.id) {
      flag("push verdicts are not in request order", `#${i}: ${result.table}/${result.id}`);
    }
    if (result.status === "rejected" && typeof result.code !== "string") {
      flag("rejected verdict without a code", JSON.stringify(result));
    }
  });
}

/** A 200 of `GET /schema`: the protocol, the hash and the synced tables of `schema`. */
function checkSchemaBody(response: unknown, schema: Schema, flag: Flag): void {
  const expected = {
    protocol: PROTOCOL_VERSION,
    schema: schema.hash,
    tables: JSON.parse(JSON.stringify(describeSchema(schema))),
  };
  if (!isDeepStrictEqual(response, expected)) {
    flag("GET /schema answered something else", JSON.stringify(response).slice(0, 500));
  }
}

function checkHealthBody(response: unknown, schemaHash: string, flag: Flag): void {
  if (
    !isRecord(response) || response.ok !== true || response.protocol !== PROTOCOL_VERSION ||
    response.schema !== schemaHash || typeof response.serverTime !== "number"
  ) {
    flag("GET /health answered something else", JSON.stringify(response));
  }
}

// ================================================================ the fixture run

interface Run {
  world: World;
  before: Snapshot;
  readonly ctx: FuzzContext;
  readonly findings: Findings;
  readonly stats: Stats;
}

async function fuzzFixture(findings: Findings, stats: Stats): Promise<void> {
  const base: FuzzContext = {
    schemaHash: syncSchema.hash,
    now: Date.now(),
    maxBodyBytes: MAX_BODY_BYTES,
    maxChangesPerPush: DEFAULT_MAX_CHANGES_PER_PUSH,
    borrowedCursors: [],
  };
  const world = await startFixture();
  const run: Run = { world, before: await snapshot(world.reader!), ctx: base, findings, stats };
  try {
    await seed(run);
    const cursors = await borrowCursors(run.world.url);
    const ctx = { ...base, borrowedCursors: cursors };
    Object.assign(run, { ctx });
    const plan = [
      ...fc.sample(requestArb(ctx), { seed: SEED, numRuns: RUNS }),
      ...edgeRequests(ctx),
      ...schemaRequests(),
    ];
    for (const [index, request] of plan.entries()) {
      const alive = await exercise(run, request, index);
      if (alive) continue;
      if (stats.restarts >= MAX_RESTARTS) {
        findings.add("the run stopped: the server died too often", index, request, "");
        break;
      }
      stats.restarts++;
      await run.world.stop();
      run.world = await startFixture();
      run.before = await snapshot(run.world.reader!);
      await seed(run);
    }
  } finally {
    await run.world.stop();
  }
}

/** Gives Alice and Bob their rows, checked like every other request. */
async function seed(run: Run): Promise<void> {
  for (const request of seedRequests(run.ctx)) await exercise(run, request, -1);
}

/** The cursors Bob is handed, for Alice to borrow. */
async function borrowCursors(url: string): Promise<string[]> {
  const response = await fetch(`${url}/pull`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${BOB.token}` },
    body: JSON.stringify({
      protocol: PROTOCOL_VERSION,
      schema: syncSchema.hash,
      cursors: { todos: null, tasks: null },
      limit: 2,
    }),
  });
  const page = await response.json() as { changes: Record<string, { cursor: string }> };
  return [...new Set(Object.values(page.changes).map((p) => p.cursor))];
}

/** Sends one request and checks everything; false when the server died. */
async function exercise(run: Run, request: FuzzRequest, index: number): Promise<boolean> {
  const { world, findings, stats } = run;
  const flag: Flag = (kind, detail) => findings.add(kind, index, request, detail);
  const bytes = bodyBytes(request.body);
  const principal = fixturePrincipal(request.authorization);
  const expectation = expectationFor(request, bytes, principal, syncSchema.hash);
  const answer = await send(world.url, request);
  stats.count(answer);
  const response = checkAnswer(request, answer, expectation, flag);
  if (!world.alive()) {
    flag(`the server process died (${routeLabel(request)})`, world.output().slice(-1_500));
    return false;
  }
  const route = routeOf(request);
  const body = expectation.body.ok ? expectation.body.value : undefined;
  if (answer.status === 200 && response !== undefined) {
    if (route === "push") checkPushResponse(body, response, flag);
    if (route === "health") checkHealthBody(response, syncSchema.hash, flag);
    if (route === "schema") checkSchemaBody(response, syncSchema, flag);
  }
  const after = await snapshot(world.reader!);
  if (answer.status === 200 && route === "pull" && response !== undefined) {
    checkPull(body, response, principal, after, flag);
  }
  const applied = checkDatabase(
    { request, principal, status: answer.status, route, body, response, before: run.before, after },
    flag,
  );
  if (applied.length > 0) {
    stats.applying++;
    await pullBack(run, request, applied, after, flag);
  }
  run.before = after;
  return await checkStillUp(world, request, flag);
}

/** Pulls the applied rows back as the same principal: exactly they come back, as stored. */
async function pullBack(
  run: Run,
  request: FuzzRequest,
  applied: readonly Pushed[],
  after: Snapshot,
  flag: Flag,
): Promise<void> {
  const sequence = run.before.get("_sync_meta")?.get(META_SEQUENCE)?.cells.value;
  const cursor = cellText(sequence) ?? "0";
  const tables = [...new Set(applied.map((p) => p.info.name))];
  const pull: FuzzRequest = {
    kind: "pull-back",
    method: "POST",
    path: "/pull",
    contentType: "application/json",
    authorization: request.authorization,
    body: {
      kind: "json",
      value: {
        protocol: PROTOCOL_VERSION,
        schema: syncSchema.hash,
        cursors: Object.fromEntries(tables.map((t) => [t, cursor])),
        limit: 5_000,
      },
    },
    valid: true,
  };
  const answer = await send(run.world.url, pull);
  const principal = fixturePrincipal(request.authorization);
  const expectation = expectationFor(pull, bodyBytes(pull.body), principal, syncSchema.hash);
  const response = checkAnswer(
    pull,
    answer,
    expectation,
    (kind, detail) => flag(`pulling applied rows back: ${kind}`, detail),
  );
  if (!run.world.alive()) {
    flag("the server process died pulling applied rows back", run.world.output().slice(-1_500));
    return;
  }
  if (answer.status !== 200 || !isRecord(response) || !isRecord(response.changes)) return;
  const changes = response.changes as Record<string, { rows: PullRow[] }>;
  for (const table of tables) {
    const pulled = new Set((changes[table]?.rows ?? []).map((row) => utf8Hex(row.id)));
    const expected = new Set(applied.filter((p) => p.info.name === table).map((p) => p.key));
    if (!isDeepStrictEqual(pulled, expected)) {
      flag(
        `pulling applied rows back returned other rows (${table})`,
        `expected ${[...expected]}, pulled ${[...pulled]}`,
      );
    }
  }
  checkPull(
    pull.body.kind === "json" ? pull.body.value : undefined,
    response,
    principal,
    after,
    flag,
  );
}

/** GET /health answers 200 after every request. */
async function checkStillUp(world: World, request: FuzzRequest, flag: Flag): Promise<boolean> {
  const answer = await send(world.url, healthRequest);
  if (answer.status !== 200) {
    flag(
      `GET /health failed after the request (${routeLabel(request)})`,
      `${answer.outcome} ${answer.status ?? ""} ${answer.error ?? ""}`,
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 0));
  if (!world.alive()) {
    flag(`the server process died (${routeLabel(request)})`, world.output().slice(-1_500));
    return false;
  }
  return answer.status === 200;
}

// ================================================================ the server/main.ts run

async function fuzzMain(findings: Findings, stats: Stats): Promise<void> {
  const world = await startMain();
  try {
    const health = await (await fetch(`${world.url}/health`)).json() as { schema: string };
    const ctx: FuzzContext = {
      schemaHash: health.schema,
      now: Date.now(),
      maxBodyBytes: MAX_BODY_BYTES,
      maxChangesPerPush: DEFAULT_MAX_CHANGES_PER_PUSH,
      borrowedCursors: ["0", "1", "5"],
      tables: ["tasks", "notes"], // the example schema's synced tables
    };
    const edges = edgeRequests(ctx).filter((r) =>
      r.framing !== undefined || r.kind.includes("limit")
    );
    const plan = [
      ...seedRequests(ctx),
      ...fc.sample(requestArb(ctx), { seed: SEED, numRuns: MAIN_RUNS }),
      ...edges,
      ...schemaRequests(),
    ];
    for (const [index, request] of plan.entries()) {
      const flag: Flag = (kind, detail) => findings.add(kind, index, request, detail);
      const answer = await send(world.url, request);
      stats.count(answer);
      const bytes = bodyBytes(request.body);
      const principal = mainPrincipal(request.authorization);
      const expectation = expectationFor(request, bytes, principal, ctx.schemaHash, false);
      const response = checkAnswer(request, answer, expectation, flag);
      if (answer.status === 200 && routeOf(request) === "schema") {
        checkSchemaBody(response, exampleSchema, flag);
      }
      if (
        answer.status === 200 && routeOf(request) === "push" && isRecord(response) &&
        Array.isArray(response.results) &&
        response.results.some((r: { status?: string }) => r.status === "applied")
      ) stats.applying++;
      if (!(await checkStillUp(world, request, flag))) break;
    }
    const final = await fetch(`${world.url}/health`);
    assert.equal(final.status, 200, "GET /health answers at the end");
    assert.ok(world.alive(), "the server process is still alive");
  } finally {
    await world.stop();
  }
}
