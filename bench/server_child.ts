/**
 * A sync server in a child process for the load benchmarks: `push_server.ts`
 * run on the runtime a benchmark names, from the code under `root` (this
 * checkout, or an older one for a "before" figure), on `db` (a `file:` path
 * in WAL mode, or a libSQL server URL). The load and the server then share
 * the machine's cores but not an event loop.
 *
 * @example
 * ```ts
 * const server = await startServerChild("bun", ROOT, "/tmp/server.db");
 * await fetch(`${server.url}/health`);
 * console.log(server.pid); // for /proc/<pid>/stat
 * await server.stop();
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startSqld } from "../tests/sqld.ts";
import { median, tempDir } from "./lib.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A running server child. */
export interface ServerChild {
  /** Where it listens: `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Its process id. */
  readonly pid: number;
  /** Ends it (closing its stdin), and waits until it exited. */
  stop(): Promise<void>;
}

/** The runtimes a server child may run on. */
export type ServerRuntime = "node" | "deno" | "bun";

// The command running `push_server.ts` on `runtime`.
function serverCommand(runtime: string, args: string[]): { command: string; args: string[] } {
  const script = join(ROOT, "bench/push_server.ts");
  const bin = (name: string) => join(ROOT, "node_modules/.bin", name);
  if (runtime === "deno") {
    return {
      command: bin("deno"),
      args: ["run", "-A", "--config", join(ROOT, "deno.json"), script, ...args],
    };
  }
  if (runtime === "bun") return { command: bin("bun"), args: [script, ...args] };
  return { command: process.execPath, args: ["--import", "tsx", script, ...args] };
}

/**
 * Starts a server child; resolves once it listens.
 *
 * @param runtime what runs it
 * @param root the checkout whose code it serves
 * @param db a `file:` path or a libSQL server URL
 */
export async function startServerChild(
  runtime: string,
  root: string,
  db: string,
): Promise<ServerChild> {
  const { command, args } = serverCommand(runtime, ["--root", root, "--db", db]);
  const child = spawn(command, args, { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start in 60 s")), 60_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line).url);
    });
    child.once("exit", (code) => reject(new Error(`the server exited (${code})`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** What one load on a server child measured. */
export interface LoadFigures {
  /** Requests answered per second. */
  readonly perSecond: number;
  /** Median latency, ms. */
  readonly p50: number;
  /** 99th percentile latency, ms. */
  readonly p99: number;
}

/** The medians of a load, per side, and of the raw baseline, for one runtime and store. */
export interface CheckoutComparison {
  readonly runtime: string;
  readonly store: string;
  readonly before: LoadFigures;
  readonly after: LoadFigures;
  /** The raw baseline's operations per second. */
  readonly raw: number;
}

/** What {@linkcode compareCheckouts} runs. */
export interface CheckoutRuns {
  /** The older checkout's path (`checkout(rev).path`). */
  readonly before: string;
  readonly servers: readonly string[];
  /** `file` (a database file in a temporary directory) or `sqld` (a sqld of its own). */
  readonly stores: readonly string[];
  readonly rounds: number;
  /** Measures one server (a warm-up included): its figures. */
  readonly measure: (url: string) => Promise<LoadFigures>;
  /** The raw baseline, operations per second; run once per round. */
  readonly baseline: () => Promise<number>;
  /** Called with each side's figures as they come (progress). */
  readonly onMeasured?: (
    runtime: string,
    store: string,
    side: string,
    figures: LoadFigures,
  ) => void;
}

/**
 * Runs `measure` on a fresh server of this checkout and of the older one,
 * per runtime, store and round, both sides in the same run, and answers the
 * medians.
 */
export async function compareCheckouts(runs: CheckoutRuns): Promise<CheckoutComparison[]> {
  const comparisons: CheckoutComparison[] = [];
  for (const runtime of runs.servers) {
    for (const store of runs.stores) {
      const results: Record<string, LoadFigures[]> = { before: [], after: [] };
      const raws: number[] = [];
      for (let round = 0; round < runs.rounds; round++) {
        for (const [side, root] of [["before", runs.before], ["after", ROOT]] as const) {
          const dir = tempDir();
          const sqld = store === "sqld" ? await startSqld() : undefined;
          const server = await startServerChild(
            runtime,
            root,
            sqld?.url ?? join(dir.path, "server.db"),
          );
          try {
            const figures = await runs.measure(server.url);
            results[side]!.push(figures);
            runs.onMeasured?.(runtime, store, side, figures);
          } finally {
            await server.stop();
            await sqld?.close();
            dir.cleanup();
          }
        }
        raws.push(await runs.baseline());
      }
      const pick = (side: string): LoadFigures => {
        const list = results[side]!;
        return {
          perSecond: median(list.map((r) => r.perSecond)),
          p50: median(list.map((r) => r.p50)),
          p99: median(list.map((r) => r.p99)),
        };
      };
      comparisons.push({
        runtime,
        store,
        before: pick("before"),
        after: pick("after"),
        raw: median(raws),
      });
    }
  }
  return comparisons;
}
