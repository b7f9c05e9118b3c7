// Two ranks whose collective picks its path per op by recent times
// (pairReduceScatter): both paths must give the reference's result, and
// both must run.
import { describe, expect, it } from 'vitest';
import { launchResults } from './processes.js';

describe('the 2-rank reduce-scatter, through the slots or direct per op (2 ranks)', () => {
  it('is right on both paths, for each dtype and op, in place and out of place', () => {
    interface Result { rank: number; wrong: string[]; messagesPerOp: Record<string, number> }
    for (const r of launchResults<Result>('test/workers/pair-reducescatter.mjs', 2, {})) {
      expect(r.wrong, `rank ${r.rank}`).toEqual([]);
      expect(Object.keys(r.messagesPerOp)).toHaveLength(10);
      for (const [key, perOp] of Object.entries(r.messagesPerOp)) {
        const [dtype, , count] = key.split(' ');
        const segBytes = Number(count) * (dtype === 'float64' ? 8 : 4);
        // Direct: the offer and the "done". Through the slots: the offer and
        // one message per 256 KiB chunk of the segment.
        const slotMessages = 1 + Math.ceil(segBytes / 262_144);
        if (slotMessages === 2) continue;  // one chunk: both paths send two
        expect(perOp, `${key}: some ops direct`).toBeLessThan(slotMessages);
        expect(perOp, `${key}: some ops through the slots`).toBeGreaterThan(2);
      }
    }
  });
});
