/**
 * ringtree: collective communication and GEMM for TypeScript.
 *
 * Importing this module never loads the native addon; the first `init()`,
 * `info()` or native call does.
 *
 * @module
 */
export * from './errors.js';
export { init, hostId, type InitOptions } from './init.js';
export {
  Communicator,
  CPU_ALGORITHMS,
  type HostArray,
  type Algorithm,
  type CollectiveName,
  type OpOptions,
  type CollectiveOptions,
  type AllReduceOptions,
  type ReduceScatterOptions,
  type BroadcastOptions,
  type ReduceOptions,
  type P2pOptions,
  type P2pSpec,
  type EngineTuning,
  type OpKindStats,
  type CommStats,
  type SplitOptions,
} from './comm.js';
export { NCCL_ALGORITHMS, type NcclAlgorithm } from './ncclBackend.js';
export type { FlightRecord } from './flightRecorder.js';
export { DeviceArray, newHost, isDeviceArray, cudaDriverCandidates, ncclCandidates, DEVICE_OP_TIMEOUT_MS, type DeviceArrayOptions, type HostTypedArray } from './device.js';
export {
  type DType,
  type ReduceOpName,
  DTYPES,
  REDUCE_OPS,
  dtypeSize,
  dtypeOf,
  toBfloat16Bits,
  fromBfloat16Bits,
  toFloat16Bits,
  fromFloat16Bits,
  float32ToBfloat16,
  bfloat16ToFloat32,
  float32ToFloat16,
  float16ToFloat32,
} from './dtype.js';
export { info, formatInfoReport, DEFAULT_MASTER_PORT, type RingtreeInfo, type AddonInfo, type BuildInfo, type RendezvousInfo, type FutureSection } from './info.js';
export { launch, removeJobSegments, DEFAULT_GRACE_MS, DEFAULT_MULTINODE_MASTER_PORT, type LaunchOptions, type LaunchResult, type LaunchAttempt, type RankOutcome } from './launch.js';
export { usableCores, coreInfo, shmInfo, type CoreInfo, type ShmInfo } from './system.js';
export { StoreServer, StoreClient, type Store, type StoreServerOptions, type StoreClientOptions } from './store.js';
export { rendezvousFromEnv, type RendezvousOverrides } from './rendezvous.js';
export { type RendezvousInfo as EnvRendezvous } from './rendezvous.js';
export { allocHost } from './hostMemory.js';
export { gemm, gemmSync, blasInfo, type GemmOptions, type GemmArray, type GemmDType, type GemmEpilogue, type BlasInfo } from './gemm.js';
export * from './parallel/index.js';
