import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../lib/errors.js';
import { rendezvousFromEnv } from '../lib/rendezvous.js';

function errorOf(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return e as InvalidArgumentError;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('rendezvousFromEnv defaults', () => {
  it('with nothing set: rank 0 of 1 on 127.0.0.1:29500', () => {
    expect(rendezvousFromEnv({})).toEqual({
      rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1,
      masterAddr: '127.0.0.1', masterPort: 29500, storePort: 29500,
      token: undefined, source: 'default', torchElastic: false,
    });
  });

  it('reads process.env when no env is given', () => {
    const info = rendezvousFromEnv();
    expect(info.worldSize).toBeGreaterThanOrEqual(1);
  });

  it('treats empty variables as unset', () => {
    expect(rendezvousFromEnv({ RANK: '', WORLD_SIZE: '', MASTER_ADDR: '', MASTER_PORT: '', RINGTREE_TOKEN: '' })).toMatchObject({
      rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 29500, token: undefined, source: 'default',
    });
  });
});

describe('torchrun', () => {
  it('reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT', () => {
    const info = rendezvousFromEnv({
      RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: '10.0.0.7', MASTER_PORT: '12345', RINGTREE_TOKEN: 'tok',
    });
    expect(info).toEqual({
      rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4,
      masterAddr: '10.0.0.7', masterPort: 12345, storePort: 12345,
      token: 'tok', source: 'torchrun', torchElastic: false,
    });
  });

  it('defaults the local fields to a single host', () => {
    expect(rendezvousFromEnv({ RANK: '2', WORLD_SIZE: '4' })).toMatchObject({ localRank: 2, localWorldSize: 4 });
    expect(rendezvousFromEnv({ RANK: '5', WORLD_SIZE: '8', LOCAL_WORLD_SIZE: '4' })).toMatchObject({ localRank: 1, localWorldSize: 4 });
  });

  it('wins over Open MPI and Slurm variables', () => {
    const info = rendezvousFromEnv({
      RANK: '1', WORLD_SIZE: '2',
      OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4',
      SLURM_PROCID: '5', SLURM_NTASKS: '6',
    });
    expect(info).toMatchObject({ rank: 1, worldSize: 2, source: 'torchrun' });
  });

  it('a RANK without WORLD_SIZE is checked against the default world size', () => {
    expect(errorOf(() => rendezvousFromEnv({ RANK: '3' })).message).toContain('RANK=3');
    expect(rendezvousFromEnv({ RANK: '0' })).toMatchObject({ rank: 0, worldSize: 1, source: 'torchrun' });
  });
});

describe('Open MPI', () => {
  it('reads OMPI_COMM_WORLD_*', () => {
    const info = rendezvousFromEnv({
      OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2', MASTER_ADDR: 'head',
    });
    expect(info).toMatchObject({ rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: 'head', masterPort: 29500, source: 'openmpi' });
  });

  it('wins over Slurm', () => {
    expect(rendezvousFromEnv({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', SLURM_PROCID: '1', SLURM_NTASKS: '2' })).toMatchObject({ rank: 0, source: 'openmpi' });
  });

  it('names the Open MPI variable in errors', () => {
    expect(errorOf(() => rendezvousFromEnv({ OMPI_COMM_WORLD_RANK: 'x', OMPI_COMM_WORLD_SIZE: '2' })).message).toContain('OMPI_COMM_WORLD_RANK=x is not an integer');
  });
});

describe('Slurm', () => {
  it('reads SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE', () => {
    expect(rendezvousFromEnv({ SLURM_PROCID: '6', SLURM_NTASKS: '8', SLURM_LOCALID: '2', SLURM_NTASKS_PER_NODE: '4' })).toMatchObject({
      rank: 6, worldSize: 8, localRank: 2, localWorldSize: 4, source: 'slurm',
    });
  });

  it('parses the 4(x2) form and per-node lists', () => {
    expect(rendezvousFromEnv({ SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NTASKS_PER_NODE: '4(x2)' })).toMatchObject({ localWorldSize: 4 });
    expect(rendezvousFromEnv({ SLURM_PROCID: '4', SLURM_NTASKS: '5', SLURM_LOCALID: '0', SLURM_TASKS_PER_NODE: '2(x2),1', SLURM_NODEID: '2' })).toMatchObject({ localWorldSize: 1 });
    expect(rendezvousFromEnv({ SLURM_PROCID: '3', SLURM_NTASKS: '5', SLURM_LOCALID: '1', SLURM_TASKS_PER_NODE: '2(x2),1', SLURM_NODEID: '1' })).toMatchObject({ localWorldSize: 2 });
  });

  it('rejects a malformed tasks-per-node value, naming it', () => {
    expect(errorOf(() => rendezvousFromEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_NTASKS_PER_NODE: 'two' })).message).toContain('SLURM_NTASKS_PER_NODE=two');
  });
});

describe('overrides', () => {
  it('win over the environment field by field', () => {
    const info = rendezvousFromEnv(
      { RANK: '1', WORLD_SIZE: '4', MASTER_ADDR: 'a', MASTER_PORT: '1000', RINGTREE_TOKEN: 'env' },
      { rank: 3, masterAddr: 'b', masterPort: 2000, token: 'opt' },
    );
    expect(info).toMatchObject({ rank: 3, worldSize: 4, masterAddr: 'b', masterPort: 2000, storePort: 2000, token: 'opt', source: 'options' });
  });

  it('alone give a full answer', () => {
    expect(rendezvousFromEnv({}, { rank: 1, worldSize: 2, localRank: 0, localWorldSize: 1 })).toMatchObject({
      rank: 1, worldSize: 2, localRank: 0, localWorldSize: 1, source: 'options',
    });
  });

  it('are validated and named', () => {
    expect(errorOf(() => rendezvousFromEnv({}, { rank: 1.5, worldSize: 2 })).message).toContain('option rank=1.5 is not an integer');
    expect(errorOf(() => rendezvousFromEnv({}, { rank: 2, worldSize: 2 })).message).toContain('option rank=2');
    expect(errorOf(() => rendezvousFromEnv({}, { masterAddr: ' ' })).message).toContain('masterAddr');
    expect(errorOf(() => rendezvousFromEnv({}, { worldSize: 2, masterPort: 70000 })).message).toContain('option masterPort=70000');
  });

  it('an empty token option means no token even when RINGTREE_TOKEN is set', () => {
    expect(rendezvousFromEnv({ RINGTREE_TOKEN: 'env' }, { token: '' }).token).toBeUndefined();
  });
});

describe('validation', () => {
  it('names a non-integer variable', () => {
    expect(errorOf(() => rendezvousFromEnv({ RANK: 'abc', WORLD_SIZE: '2' })).message).toContain('RANK=abc is not an integer');
    expect(errorOf(() => rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '2.0' })).message).toContain('WORLD_SIZE=2.0 is not an integer');
    expect(errorOf(() => rendezvousFromEnv({ MASTER_PORT: '29500x' })).message).toContain('MASTER_PORT=29500x is not an integer');
  });

  it('checks rank against world size', () => {
    const e = errorOf(() => rendezvousFromEnv({ RANK: '4', WORLD_SIZE: '4' }));
    expect(e.message).toContain('RANK=4 must be in 0..3');
    expect(e.message).toContain('WORLD_SIZE=4');
    expect(errorOf(() => rendezvousFromEnv({ RANK: '-1', WORLD_SIZE: '4' })).message).toContain('RANK=-1');
    expect(errorOf(() => rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '0' })).message).toContain('WORLD_SIZE=0 must be at least 1');
  });

  it('checks local rank against local world size', () => {
    expect(errorOf(() => rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '4', LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2' })).message).toContain('LOCAL_RANK=2 must be in 0..1');
    expect(errorOf(() => rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '4' })).message).toContain('LOCAL_WORLD_SIZE=4 exceeds WORLD_SIZE=2');
  });

  it('checks ports; 0 only for a world of one', () => {
    expect(errorOf(() => rendezvousFromEnv({ MASTER_PORT: '65536' })).message).toContain('MASTER_PORT=65536');
    expect(rendezvousFromEnv({ MASTER_PORT: '0' })).toMatchObject({ masterPort: 0, storePort: 0 });
    expect(errorOf(() => rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '0' })).message).toContain('MASTER_PORT=0');
    expect(errorOf(() => rendezvousFromEnv({ RINGTREE_STORE_PORT: 'p' })).message).toContain('RINGTREE_STORE_PORT=p');
  });
});

describe('torchrun elastic agent', () => {
  it('serves the store on MASTER_PORT + 1 when TORCHELASTIC_RUN_ID is set', () => {
    expect(rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '29500', TORCHELASTIC_RUN_ID: 'abc' })).toMatchObject({
      masterPort: 29500, storePort: 29501, torchElastic: true,
    });
  });

  it('any TORCHELASTIC_* variable counts', () => {
    expect(rendezvousFromEnv({ TORCHELASTIC_RESTART_COUNT: '0' })).toMatchObject({ torchElastic: true, storePort: 29501 });
  });

  it('RINGTREE_STORE_PORT wins', () => {
    expect(rendezvousFromEnv({ MASTER_PORT: '29500', TORCHELASTIC_RUN_ID: 'abc', RINGTREE_STORE_PORT: '40000' })).toMatchObject({ storePort: 40000 });
  });

  it('MASTER_PORT=65535 leaves no room and says so', () => {
    expect(errorOf(() => rendezvousFromEnv({ MASTER_PORT: '65535', TORCHELASTIC_RUN_ID: 'x' })).message).toContain('RINGTREE_STORE_PORT');
  });

  it('without the agent, storePort is MASTER_PORT', () => {
    expect(rendezvousFromEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '1234' })).toMatchObject({ storePort: 1234, torchElastic: false });
  });
});
