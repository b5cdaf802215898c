/**
 * A sync server in a child process, as the runnable entries start it
 * (`server/main.ts`, the `bin`): its output kept, the URL it prints once it
 * listens, and a way to end it with everything below it.
 *
 * @example
 * ```ts
 * const server = startServerChild(process.execPath, ["--import", "tsx", "server/main.ts", "--port", "0"]);
 * const url = await server.url; // rejects with the output if it exits first, or after 30 s
 * server.child.kill("SIGTERM");
 * await server.exited;
 * ```
 *
 * @module
 */

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import process from "node:process";

/** A started server child: {@linkcode startServerChild}. */
export interface ServerChild {
  readonly child: ChildProcessWithoutNullStreams;
  /** The URL from its `server on http://127.0.0.1:PORT` line. */
  readonly url: Promise<string>;
  /** Its exit code once it exited (null after a signal). */
  readonly exited: Promise<number | null>;
  /** What it printed so far, stdout and stderr. */
  output(): string;
  /** SIGKILL to its process group (only for a child started `detached`). */
  killGroup(): void;
}

/**
 * Starts `command args`. With `detached`, the child leads a process group of
 * its own, which `killGroup` ends whole (a server below npm's shell included).
 */
export function startServerChild(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; detached?: boolean } = {},
): ServerChild {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  }) as unknown as ChildProcessWithoutNullStreams;
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no server URL in:\n${output}`)), 30_000);
    child.stdout.on("data", () => {
      const match = /server on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match === null) return;
      clearTimeout(timer);
      resolve(match[1]!);
    });
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${command} exited:\n${output}`));
    });
  });
  url.catch(() => undefined);
  const killGroup = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // The group is gone already.
    }
  };
  return { child, url, exited, output: () => output, killGroup };
}
