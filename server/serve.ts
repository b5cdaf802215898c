/**
 * Serves a fetch handler on the runtime at hand: `Deno.serve` on Deno,
 * `Bun.serve` on Bun, `@hono/node-server` on Node. Used by `main.ts`, the demo,
 * the end-to-end tests and the benchmarks, so all of them run the same way on
 * all three runtimes.
 *
 * @example
 * ```ts
 * const server = await serve(app.fetch, { hostname: "127.0.0.1", port: 0 });
 * console.log(server.url); // http://127.0.0.1:43123
 * await server.close();
 * ```
 *
 * @module
 */

import { serve as serveNode } from "@hono/node-server";

/** A fetch handler. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Where to listen. */
export interface ServeOptions {
  /** Interface to bind (default 127.0.0.1). */
  hostname?: string;
  /** Port (default 0: any free port). */
  port?: number;
}

/** A listening server. */
export interface RunningServer {
  /** The runtime serving it. */
  readonly runtime: "deno" | "bun" | "node";
  /** The bound port. */
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /** Stops accepting connections and resolves once in-flight requests are answered. */
  close(): Promise<void>;
  /**
   * Closes the server, as {@linkcode RunningServer.close}: `await using
   * server = await serve(app.fetch)` closes it when the block ends.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

interface DenoLike {
  serve(
    options: { hostname: string; port: number; onListen?: () => void },
    handler: FetchHandler,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}
interface BunLike {
  serve(options: { hostname: string; port: number; fetch: FetchHandler; idleTimeout: number }): {
    port: number;
    stop(closeActiveConnections?: boolean): Promise<void> | void;
  };
}

/** Serves `fetch` until `close()`. */
export function serve(fetch: FetchHandler, options: ServeOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const { Deno, Bun } = globalThis as { Deno?: DenoLike; Bun?: BunLike };

  if (Deno !== undefined) {
    const server = Deno.serve({ hostname, port, onListen: () => {} }, fetch);
    return Promise.resolve(running("deno", host, server.addr.port, () => server.shutdown()));
  }
  if (Bun !== undefined) {
    // Bun ends a connection that sent nothing for 10 s by default: a held
    // pull (up to 30 s) would be cut. Its longest is 255 s.
    const server = Bun.serve({ hostname, port, fetch, idleTimeout: 120 });
    return Promise.resolve(running("bun", host, server.port, async () => {
      await server.stop();
    }));
  }
  return new Promise((resolve, reject) => {
    const server = serveNode({ fetch, hostname, port }, (info) => {
      resolve(
        running(
          "node",
          host,
          info.port,
          () => closeNode(server as unknown as NodeServer),
        ),
      );
    });
    server.once("error", reject);
    // Node closes an idle keep-alive connection after 5 s, about when a
    // client (undici: 4 s) may reuse it, and the request on it then fails.
    // Clients close theirs first when the server waits longer.
    Object.assign(server, { keepAliveTimeout: 65_000, headersTimeout: 66_000 });
  });
}

function running(
  runtime: RunningServer["runtime"],
  host: string,
  port: number,
  close: () => Promise<void>,
): RunningServer {
  return { runtime, port, url: `http://${host}:${port}`, close, [Symbol.asyncDispose]: close };
}

// What `closeNode` uses of Node's `http.Server`.
interface NodeServer {
  close(callback: (error?: Error) => void): void;
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

// How long a shutdown waits for the requests in flight before it closes
// their connections, ms.
const CLOSE_GRACE_MS = 2_000;

// Stops accepting connections and resolves once they are all closed. Node
// closes those idle at that moment; others are closed as they go idle, and
// whatever is still open after the grace period is closed: a connection
// whose client gave up on a request (a held pull aborted) is not always
// seen as idle again, and would otherwise stay open for the 65 s keep-alive.
function closeNode(server: NodeServer): Promise<void> {
  return new Promise<void>((done, fail) => {
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    server.close((error) => {
      clearInterval(sweep);
      clearTimeout(cut);
      if (error) fail(error);
      else done();
    });
    server.closeIdleConnections();
  });
}
