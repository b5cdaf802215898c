/**
 * The worker module as `bun run` serves it (a default export with `fetch`),
 * on 127.0.0.1 and a port the system picks: Bun's own default would listen
 * on every interface, port 3000.
 *
 * @module
 */

import worker from "./worker.ts";

export default { hostname: "127.0.0.1", port: 0, fetch: worker.fetch };
