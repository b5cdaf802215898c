/**
 * An HTTP proxy on 127.0.0.1 in front of a database server (sqld): it counts
 * the requests that reach the database and can hold each one back for a
 * while, as a database across a network would. Tests read the count to
 * check how many round trips an operation costs; benchmarks set `delayMs`
 * to measure an operation over a slow link.
 *
 * @example
 * ```ts
 * await using proxy = await startCountingProxy(sqld.url, { delayMs: 20 });
 * const client = createClient({ url: proxy.url });
 * const before = proxy.requests();
 * await client.execute("SELECT 1");
 * proxy.requests() - before; // 1
 * ```
 *
 * @module
 */

import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";

/** A running proxy: {@linkcode startCountingProxy}. */
export interface CountingProxy {
  /** `http://127.0.0.1:PORT`: give it to the database client instead of the server's URL. */
  readonly url: string;
  /** Requests forwarded so far (every method and path). */
  requests(): number;
  /** The paths of the requests forwarded so far, in order. */
  paths(): readonly string[];
  /** Milliseconds each request is held back before it is forwarded. */
  delayMs: number;
  /** Stops the proxy. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a proxy forwarding to `target` (`http://host:port`). */
export function startCountingProxy(
  target: string,
  options: { delayMs?: number } = {},
): Promise<CountingProxy> {
  const upstream = new URL(target);
  const seen: string[] = [];
  const server = createServer((incoming, outgoing) => {
    seen.push(`${incoming.method} ${incoming.url}`);
    const forward = () => {
      const onward = httpRequest({
        hostname: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: { ...incoming.headers, host: upstream.host },
      }, (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      });
      onward.on("error", () => {
        if (!outgoing.headersSent) outgoing.writeHead(502);
        outgoing.end();
      });
      incoming.pipe(onward);
    };
    if (proxy.delayMs > 0) setTimeout(forward, proxy.delayMs);
    else forward();
  });
  const proxy: CountingProxy = {
    url: "",
    requests: () => seen.length,
    paths: () => seen,
    delayMs: options.delayMs ?? 0,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections?.();
        server.close(() => done());
      }),
    [Symbol.asyncDispose]: () => proxy.close(),
  };
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      Object.assign(proxy, { url: `http://127.0.0.1:${port}` });
      resolve(proxy);
    });
  });
}
