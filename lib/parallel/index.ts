/**
 * Parallel-training modules: thin TypeScript over the communicator and GEMM.
 *
 * @module
 */
export {
  DistributedDataParallel,
  DEFAULT_BUCKET_CAP_MB,
  DEFAULT_FIRST_BUCKET_CAP_MB,
  type DdpArray,
  type DdpOptions,
  type GradientCompression,
  type BucketInfo,
  type BucketTiming,
  type JoinOptions,
} from './ddp.js';
export { DistributedSampler, permutation, type DistributedSamplerOptions } from './sampler.js';
export { linearScaledLr, WarmupScheduler, type WarmupSchedulerOptions } from './lrSchedule.js';
export {
  Linear,
  ReLU,
  GELU,
  MSELoss,
  SGD,
  Sequential,
  seededRandom,
  type Layer,
  type LinearOptions,
  type SgdOptions,
} from './layers.js';
