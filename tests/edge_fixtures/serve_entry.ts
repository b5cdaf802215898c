/**
 * The `./serve` entry, which listens on Node through `@hono/node-server`:
 * the control case of the bundle check, it must not bundle for workerd.
 *
 * @module
 */

export { serve } from "@declarative/sync/serve";
