#!/usr/bin/env node
/**
 * The `ringtree` command: `ringtree launch`, `ringtree doctor`, `ringtree bench`, and the
 * subcommands others add to {@link commands}.
 *
 * Exit codes: 0 success; 1 a failure (a failed rank's own code for launch);
 * 2 a usage error.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { packageRoot } from './binding.js';
import { InvalidArgumentError } from './errors.js';
import { formatInfoReport, info } from './info.js';
import { DEFAULT_GRACE_MS, launch } from './launch.js';
import { runBench } from './bench/cli.js';

/** A usage mistake: printed with a pointer to `--help`, exit code 2. */
class UsageError extends Error {}

/** One subcommand: its one-line summary for `ringtree --help`, and its handler (resolves to the exit code). */
interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function parseStrict<T extends ParseArgsConfig['options']>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(e.message)?.[1] ?? args.find((a) => a.startsWith('-')) ?? '?';
      throw new UsageError(`${command}: unknown option '${flag}'`);
    }
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const word = /'([^']+)'/.exec(e.message)?.[1] ?? '?';
      throw new UsageError(`${command}: unexpected argument '${word}'`);
    }
    throw new UsageError(`${command}: ${e.message.split('\n')[0]}`);
  }
}

function integerFlag(command: string, name: string, text: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${command}: --${name} expects an integer in [${min}, ${max}], got '${text}'`);
  }
  return value;
}

// ---------------------------------------------------------------- launch

const LAUNCH_HELP = `Usage: ringtree launch --nproc N [options] script [script args...]

Start N processes on this node as ranks of one job (torchrun-style).

Options:
  --nproc N, --nproc-per-node N  processes on this node (required)
  --nnodes M                     nodes in the job (default 1)
  --node-rank K                  this node's index, 0..M-1 (default 0)
  --master-addr A                address of rank 0's host (default 127.0.0.1)
  --master-port P                rendezvous port (default: a free port when
                                 --nnodes is 1, else 29500)
  --max-restarts R               restart the whole group up to R times after
                                 a failure (default 0)
  --grace-ms G                   after a rank fails, wait G ms for the others
                                 to exit, then SIGTERM, then after G ms more
                                 SIGKILL (default ${DEFAULT_GRACE_MS})
  --node-arg OPT                 pass OPT to node for .js/.mjs/.cjs scripts
                                 (repeatable), e.g. --node-arg=--enable-source-maps
  -h, --help                     show this help

A .js/.mjs/.cjs script runs under this Node; anything else is executed
directly. Launcher options go before the script; everything after the script
is passed to it.

Each rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
GROUP_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, RINGTREE_TOKEN, RINGTREE_JOB_ID,
RINGTREE_RESTART_COUNT, and OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (usable
cores / N, unless you set them). Output lines are prefixed "[rank R] ".

RINGTREE_TOKEN authenticates ranks to the rendezvous store. On one node the
launcher makes a random one. For --nnodes > 1 you must export the same
RINGTREE_TOKEN on every node (e.g. RINGTREE_TOKEN=$(openssl rand -hex 32),
shared with the job), or the nodes cannot join each other.

Exits 0 when every rank exits 0; otherwise with the first failed rank's exit
code (128 + signal number if it was killed), after one line per failed rank.
`;

/** Launcher flags, and whether each takes a value; used to find where the script starts. */
const LAUNCH_OPTIONS = {
  nproc: { type: 'string' },
  'nproc-per-node': { type: 'string' },
  nnodes: { type: 'string' },
  'node-rank': { type: 'string' },
  'master-addr': { type: 'string' },
  'master-port': { type: 'string' },
  'max-restarts': { type: 'string' },
  'grace-ms': { type: 'string' },
  'node-arg': { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Split `argv` into launcher flags and `[script, ...scriptArgs]` at the first positional or `--`. */
function splitLaunchArgs(argv: string[]): { flags: string[]; rest: string[] } {
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') return { flags, rest: argv.slice(i + 1) };
    if (!token.startsWith('-') || token === '-') return { flags, rest: argv.slice(i) };
    flags.push(token);
    const name = token.startsWith('--') ? token.slice(2) : '';
    const spec = (LAUNCH_OPTIONS as Record<string, { type: string }>)[name];
    if (spec?.type === 'string' && i + 1 < argv.length) flags.push(argv[++i]!);
  }
  return { flags, rest: [] };
}

async function runLaunch(argv: string[]): Promise<number> {
  const { flags, rest } = splitLaunchArgs(argv);
  const { values } = parseStrict('ringtree launch', flags, LAUNCH_OPTIONS);
  if (values.help) {
    process.stdout.write(LAUNCH_HELP);
    return 0;
  }
  const name = 'ringtree launch';
  if (values.nproc !== undefined && values['nproc-per-node'] !== undefined && values.nproc !== values['nproc-per-node']) {
    throw new UsageError(`${name}: --nproc and --nproc-per-node disagree`);
  }
  const nproc = integerFlag(name, 'nproc', values.nproc ?? values['nproc-per-node'], 1, 4096);
  if (nproc === undefined) throw new UsageError(`${name}: --nproc is required`);
  const nnodes = integerFlag(name, 'nnodes', values.nnodes, 1, 65536) ?? 1;
  const nodeRank = integerFlag(name, 'node-rank', values['node-rank'], 0, nnodes - 1) ?? 0;
  const masterPort = integerFlag(name, 'master-port', values['master-port'], 1, 65535);
  const maxRestarts = integerFlag(name, 'max-restarts', values['max-restarts'], 0);
  const graceMs = integerFlag(name, 'grace-ms', values['grace-ms'], 0, 3_600_000);
  const [script, ...args] = rest;
  if (script === undefined) throw new UsageError(`${name}: missing the script to run`);

  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts += 1;
    // A second interrupt means "now": exiting runs the launcher's exit hook,
    // which SIGKILLs every rank's process group.
    if (interrupts > 1) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    controller.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await launch({
      script, args, nproc, nnodes, nodeRank, masterPort, maxRestarts, graceMs,
      ...(values['master-addr'] !== undefined ? { masterAddr: values['master-addr'] } : {}),
      nodeArgs: values['node-arg'] ?? [],
      signal: controller.signal,
    });
    return result.exitCode;
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new UsageError(`${name}: ${err.message}`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// ---------------------------------------------------------------- doctor

const DOCTOR_HELP = `Usage: ringtree doctor [--json]

Check this host for ringtree: the native addon and how it was built, SIMD,
usable cores, /dev/shm, network interfaces, the rendezvous port. Prints each
problem with its fix.

Options:
  --json      print exactly JSON.stringify(info()) (see RingtreeInfo)
  -h, --help  show this help

Exits 1 when the native addon cannot be loaded, else 0 (warnings included).
`;

async function runDoctor(argv: string[]): Promise<number> {
  const { values } = parseStrict('ringtree doctor', argv, {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(DOCTOR_HELP);
    return 0;
  }
  const report = await info();
  process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : formatInfoReport(report));
  return report.addon.loaded ? 0 : 1;
}

// ---------------------------------------------------------------- entry

/** Subcommands by name. Add one here (with its own `--help`) to extend the CLI. */
const commands: Record<string, Command> = {
  launch: { summary: 'run N processes as ranks of one job (torchrun-style)', run: runLaunch },
  doctor: { summary: 'check this host and build; print problems with their fixes', run: runDoctor },
  bench: { summary: 'benchmark collectives (nccl-tests columns, ring vs tree, crossover, plot)', run: runBench },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const list = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`).join('\n');
  return `Usage: ringtree <command> [options]

Commands:
${list}

Options:
  -h, --help     show this help (ringtree <command> --help for a command's)
  -v, --version  print the version

Docs: https://www.npmjs.com/package/ringtree
`;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic !== undefined && commands[topic]) return commands[topic].run(['--help']);
    process.stdout.write(mainHelp());
    return first === undefined ? 2 : 0;
  }
  if (first === '-v' || first === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (first.startsWith('-')) throw new UsageError(`ringtree: unknown option '${first}'`);
  const command = commands[first];
  if (!command) throw new UsageError(`ringtree: unknown command '${first}' (commands: ${Object.keys(commands).join(', ')})`);
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\nRun 'ringtree --help' for usage.\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`ringtree: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
