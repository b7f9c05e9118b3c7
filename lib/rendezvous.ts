/**
 * Reads where this process sits in the job from the launcher's environment:
 * torchrun (`RANK`, `WORLD_SIZE`, ...), Open MPI (`OMPI_COMM_WORLD_*`) or Slurm
 * (`SLURM_*`), with explicit options winning over all of them.
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';

/** Where this process sits in the job, and how to reach the store. */
export interface RendezvousInfo {
  /** Global rank, 0 <= rank < worldSize. */
  rank: number;
  /** Number of processes in the job. */
  worldSize: number;
  /** Rank among the processes on this host. */
  localRank: number;
  /** Number of processes on this host. */
  localWorldSize: number;
  /** Host of the store (MASTER_ADDR); default '127.0.0.1'. */
  masterAddr: string;
  /** MASTER_PORT; default 29500. */
  masterPort: number;
  /**
   * The port ringtree's store serves on: `RINGTREE_STORE_PORT` when set; else,
   * under torchrun's elastic agent (whose own store holds MASTER_PORT),
   * `masterPort + 1`; else `masterPort`.
   */
  storePort: number;
  /** Shared store secret (`RINGTREE_TOKEN` or the `token` option); undefined when none. */
  token: string | undefined;
  /** What decided rank and world size. */
  source: 'options' | 'torchrun' | 'openmpi' | 'slurm' | 'default';
  /** True under torchrun's elastic agent (any `TORCHELASTIC_*` variable set). */
  torchElastic: boolean;
}

/** Explicit values; each wins over the environment. */
export interface RendezvousOverrides {
  rank?: number;
  worldSize?: number;
  localRank?: number;
  localWorldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  token?: string;
}

/** Default MASTER_PORT, as torchrun's. */
export const DEFAULT_MASTER_PORT = 29500;
/** Default MASTER_ADDR. */
export const DEFAULT_MASTER_ADDR = '127.0.0.1';

interface LauncherVars {
  source: 'torchrun' | 'openmpi' | 'slurm';
  rank: string;
  worldSize: string;
  localRank: string;
  localWorldSize: string;
}

const LAUNCHERS: readonly LauncherVars[] = [
  { source: 'torchrun', rank: 'RANK', worldSize: 'WORLD_SIZE', localRank: 'LOCAL_RANK', localWorldSize: 'LOCAL_WORLD_SIZE' },
  { source: 'openmpi', rank: 'OMPI_COMM_WORLD_RANK', worldSize: 'OMPI_COMM_WORLD_SIZE', localRank: 'OMPI_COMM_WORLD_LOCAL_RANK', localWorldSize: 'OMPI_COMM_WORLD_LOCAL_SIZE' },
  { source: 'slurm', rank: 'SLURM_PROCID', worldSize: 'SLURM_NTASKS', localRank: 'SLURM_LOCALID', localWorldSize: 'SLURM_NTASKS_PER_NODE' },
];

const REMEDY = 'Launch with `ringtree launch`, torchrun, mpirun or srun, or pass rank/worldSize explicitly.';

/** A value as read: where it came from (for messages) and its text. */
interface Raw {
  name: string;
  text: string;
}

function read(env: NodeJS.ProcessEnv, name: string): Raw | undefined {
  const text = env[name];
  // `FOO=` in a shell means "unset" far more often than "empty".
  if (text === undefined || text.trim() === '') return undefined;
  return { name, text: text.trim() };
}

function parseInteger(raw: Raw): number {
  if (!/^[+-]?\d+$/.test(raw.text)) throw new InvalidArgumentError(`${raw.name}=${raw.text} is not an integer`, { op: 'rendezvous', remedy: REMEDY });
  const n = Number(raw.text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${raw.name}=${raw.text} is out of range`, { op: 'rendezvous', remedy: REMEDY });
  return n;
}

/**
 * Slurm's tasks-per-node lists look like `4`, `4(x2)` or `2(x3),1`: one count
 * per node. Returns the count for node `nodeId` (or the first node's).
 */
function parseSlurmTasksPerNode(raw: Raw, nodeId: number | undefined): number {
  const perNode: number[] = [];
  for (const part of raw.text.split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (!m) throw new InvalidArgumentError(`${raw.name}=${raw.text} is not a Slurm task count such as 4 or 4(x2)`, { op: 'rendezvous', remedy: REMEDY });
    const count = Number(m[1]);
    const repeat = m[2] === undefined ? 1 : Number(m[2]);
    for (let i = 0; i < repeat && perNode.length < 1_000_000; i++) perNode.push(count);
  }
  const index = nodeId !== undefined && nodeId >= 0 && nodeId < perNode.length ? nodeId : 0;
  return perNode[index]!;
}

function checkOverride(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new InvalidArgumentError(`option ${name}=${String(value)} is not an integer`, { op: 'rendezvous' });
  }
  return value;
}

/**
 * Work out rank, world size, local rank and the store address from the
 * launcher's environment.
 *
 * Precedence: `overrides` (per field) > torchrun (`RANK`, `WORLD_SIZE`,
 * `LOCAL_RANK`, `LOCAL_WORLD_SIZE`) > Open MPI (`OMPI_COMM_WORLD_*`) > Slurm
 * (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE` or
 * `SLURM_TASKS_PER_NODE`) > defaults. One launcher supplies all four
 * rank fields (the first whose rank or world size is set); they are never
 * mixed. Defaults: rank 0, world size 1; local world size = world size and
 * local rank = rank mod local world size (a single host);
 * `MASTER_ADDR` '127.0.0.1'; `MASTER_PORT` 29500. Empty variables count as unset.
 *
 * @param env the environment to read; default `process.env`.
 * @param overrides explicit values, each winning over the environment.
 * @throws InvalidArgumentError naming the variable or option: a non-integer
 *   ("RANK=abc is not an integer"), rank outside 0..worldSize-1, localRank
 *   outside 0..localWorldSize-1, a port outside 1..65535 (0 is allowed only
 *   for world size 1), an empty address.
 */
export function rendezvousFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: RendezvousOverrides = {}): RendezvousInfo {
  const op = 'rendezvous';
  const launcher = LAUNCHERS.find((l) => read(env, l.rank) !== undefined || read(env, l.worldSize) !== undefined);

  // Each field: its value and the name to blame in messages.
  const field = (override: keyof RendezvousOverrides, envName: string | undefined): { value: number; name: string } | undefined => {
    const o = checkOverride(override, overrides[override]);
    if (o !== undefined) return { value: o, name: `option ${override}` };
    if (envName === undefined) return undefined;
    const raw = read(env, envName);
    return raw === undefined ? undefined : { value: parseInteger(raw), name: envName };
  };

  const worldSize = field('worldSize', launcher?.worldSize) ?? { value: 1, name: launcher ? `${launcher.worldSize} (unset, default 1)` : 'worldSize (default 1)' };
  const rank = field('rank', launcher?.rank) ?? { value: 0, name: launcher ? `${launcher.rank} (unset, default 0)` : 'rank (default 0)' };

  let localWorldSize: { value: number; name: string } | undefined;
  const lwsOverride = checkOverride('localWorldSize', overrides.localWorldSize);
  if (lwsOverride !== undefined) localWorldSize = { value: lwsOverride, name: 'option localWorldSize' };
  else if (launcher?.source === 'slurm') {
    const raw = read(env, 'SLURM_NTASKS_PER_NODE') ?? read(env, 'SLURM_TASKS_PER_NODE');
    const nodeRaw = read(env, 'SLURM_NODEID');
    if (raw) localWorldSize = { value: parseSlurmTasksPerNode(raw, nodeRaw ? parseInteger(nodeRaw) : undefined), name: raw.name };
  } else if (launcher) {
    const raw = read(env, launcher.localWorldSize);
    if (raw) localWorldSize = { value: parseInteger(raw), name: raw.name };
  }
  localWorldSize ??= { value: worldSize.value, name: 'localWorldSize (default: worldSize)' };
  const localRank = field('localRank', launcher?.localRank) ?? {
    value: localWorldSize.value > 0 ? rank.value % localWorldSize.value : 0,
    name: 'localRank (default: rank mod localWorldSize)',
  };

  const fail = (message: string) => {
    throw new InvalidArgumentError(message, { op, remedy: REMEDY });
  };
  if (worldSize.value < 1) fail(`${worldSize.name}=${worldSize.value} must be at least 1`);
  if (rank.value < 0 || rank.value >= worldSize.value) fail(`${rank.name}=${rank.value} must be in 0..${worldSize.value - 1} (${worldSize.name}=${worldSize.value})`);
  if (localWorldSize.value < 1) fail(`${localWorldSize.name}=${localWorldSize.value} must be at least 1`);
  if (localWorldSize.value > worldSize.value) fail(`${localWorldSize.name}=${localWorldSize.value} exceeds ${worldSize.name}=${worldSize.value}`);
  if (localRank.value < 0 || localRank.value >= localWorldSize.value) {
    fail(`${localRank.name}=${localRank.value} must be in 0..${localWorldSize.value - 1} (${localWorldSize.name}=${localWorldSize.value})`);
  }

  let masterAddr: string;
  if (overrides.masterAddr !== undefined) {
    if (typeof overrides.masterAddr !== 'string' || overrides.masterAddr.trim() === '') {
      throw new InvalidArgumentError(`option masterAddr=${JSON.stringify(overrides.masterAddr)} must be a non-empty host name or address`, { op });
    }
    masterAddr = overrides.masterAddr.trim();
  } else {
    masterAddr = read(env, 'MASTER_ADDR')?.text ?? DEFAULT_MASTER_ADDR;
  }

  const checkPort = (port: { value: number; name: string }) => {
    const min = worldSize.value === 1 ? 0 : 1;
    if (port.value < min || port.value > 65535) {
      fail(`${port.name}=${port.value} must be a port in ${min}..65535${min === 1 ? ' (0, an ephemeral port, works only for world size 1)' : ''}`);
    }
  };
  const masterPort = field('masterPort', 'MASTER_PORT') ?? { value: DEFAULT_MASTER_PORT, name: 'MASTER_PORT (default)' };
  checkPort(masterPort);

  const torchElastic = Object.keys(env).some((k) => k.startsWith('TORCHELASTIC_') && env[k] !== undefined);
  let storePort: number;
  const storePortRaw = read(env, 'RINGTREE_STORE_PORT');
  if (storePortRaw) {
    const p = { value: parseInteger(storePortRaw), name: 'RINGTREE_STORE_PORT' };
    checkPort(p);
    storePort = p.value;
  } else if (torchElastic && masterPort.value !== 0) {
    // The elastic agent's own TCPStore already holds MASTER_PORT.
    if (masterPort.value === 65535) fail(`${masterPort.name}=65535 leaves no room for ringtree's store at MASTER_PORT+1 under torchrun's elastic agent; set RINGTREE_STORE_PORT`);
    storePort = masterPort.value + 1;
  } else {
    storePort = masterPort.value;
  }

  const tokenText = overrides.token !== undefined ? overrides.token : env.RINGTREE_TOKEN;
  if (tokenText !== undefined && typeof tokenText !== 'string') throw new InvalidArgumentError('option token must be a string', { op });

  const source: RendezvousInfo['source'] =
    overrides.rank !== undefined || overrides.worldSize !== undefined ? 'options' : (launcher?.source ?? 'default');

  return {
    rank: rank.value,
    worldSize: worldSize.value,
    localRank: localRank.value,
    localWorldSize: localWorldSize.value,
    masterAddr,
    masterPort: masterPort.value,
    storePort,
    token: tokenText ? tokenText : undefined,
    source,
    torchElastic,
  };
}
