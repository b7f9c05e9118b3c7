// The 2-rank allreduce through the kernel where both ranks' arrays are on
// huge pages (pairAllReduce), else through the ring: both must give the
// reference's result, and each must run where it should.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { launchResults } from './processes.js';

const THP = '/sys/kernel/mm/transparent_hugepage/enabled';
const kernelAllows = existsSync(THP) && !readFileSync(THP, 'utf8').includes('[never]');

interface Result { rank: number; hugePages: boolean; wrong: string[]; messagesPerOp: Record<string, number> }

describe('the 2-rank allreduce, direct on huge pages (2 ranks)', () => {
  it('is right for each dtype and op, in place and out of place, on plain and allocHost arrays', () => {
    for (const r of launchResults<Result>('test/workers/pair-paths.mjs', 2, { RINGTREE_DIRECT_MIN_BYTES: '1' })) {
      expect(r.wrong, `rank ${r.rank}`).toEqual([]);
      expect(Object.keys(r.messagesPerOp)).toHaveLength(20);
      for (const [key, perOp] of Object.entries(r.messagesPerOp)) {
        const [layout, dtype, , count] = key.split(' ');
        const segBytes = Math.ceil(Number(count) / 2) * (dtype === 'float64' ? 8 : 4);
        // Direct: the offer and two "done"s. The ring: the offer and two
        // messages per 256 KiB chunk of a segment.
        const direct = layout === 'allocHost' && kernelAllows && r.hugePages;
        expect(perOp, key).toBe(direct ? 3 : 1 + 2 * Math.ceil(segBytes / 262_144));
      }
    }
  });
});
