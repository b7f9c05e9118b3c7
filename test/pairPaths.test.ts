// Two ranks whose collective picks its path per op by recent times
// (pairReduceScatter, pairAllReduce): both paths must give the reference's
// result, and both must run.
import { describe, expect, it } from 'vitest';
import { launchResults } from './processes.js';

interface Result { rank: number; wrong: string[]; messagesPerOp: Record<string, number> }

describe('2-rank collectives through the slots or direct, chosen per op (2 ranks)', () => {
  // [collective, messages direct, messages per 256 KiB chunk of a segment through the slots]
  const kinds = [['reduceScatter', 2, 1], ['allReduce', 3, 2]] as const;
  for (const [kind, direct, perChunk] of kinds) {
    it(`${kind}: right on both paths, for each dtype and op, in place and out of place`, () => {
      for (const r of launchResults<Result>('test/workers/pair-paths.mjs', 2, { OP: kind })) {
        expect(r.wrong, `rank ${r.rank}`).toEqual([]);
        expect(Object.keys(r.messagesPerOp)).toHaveLength(10);
        for (const [key, perOp] of Object.entries(r.messagesPerOp)) {
          const [dtype, , total] = key.split(' ');
          const segBytes = Math.ceil(Number(total) / 2) * (dtype === 'float64' ? 8 : 4);
          const slots = 1 + perChunk * Math.ceil(segBytes / 262_144);
          if (slots <= direct) continue;  // one chunk: the paths send as many
          expect(perOp, `${key}: some ops direct`).toBeLessThan(slots);
          expect(perOp, `${key}: some ops through the slots`).toBeGreaterThan(direct);
        }
      }
    });
  }
});
