/**
 * ringtree: collective communication and GEMM for TypeScript.
 *
 * @module
 */
export * from './errors.js';
