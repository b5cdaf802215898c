/**
 * Everything the `./server` and `./edge` entries export, for a bundle that
 * shows what they pull in: nothing from `node:*`.
 *
 * @module
 */

export * from "@declarative/sync/server";
export * from "@declarative/sync/edge";
