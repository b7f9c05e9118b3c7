// Minimal reproductions of ranks that finish and destroy() while a peer is
// still inside init() or inside the same collective (see the it.fails cases
// in test/collectives.test.ts). Prints "ok" or "FAIL <error>"; exits 1 on FAIL.
//
// Env RINGTREE_TEST_MODE:
//   initDestroy           every rank: init(), destroy()
//   allReduceThenDestroy  every rank: allReduce(1000 floats), destroy()
//   burstThenDestroy      every rank: 256 small allReduces in flight, destroy()
import { init } from '../../dist/index.js';

const mode = process.env.RINGTREE_TEST_MODE;
try {
  const comm = await init();
  if (mode === 'allReduceThenDestroy') {
    const x = new Float32Array(1000).fill(comm.rank);
    await comm.allReduce(x);
    if (x[0] !== (comm.size * (comm.size - 1)) / 2) throw new Error(`wrong sum ${x[0]}`);
  } else if (mode === 'burstThenDestroy') {
    // At 2 ranks these travel as batches: a rank can finish all 256 and
    // leave while its peer still has records of the batch to take.
    const x = new Float32Array(2).fill(comm.rank + 1);
    const outs = Array.from({ length: 256 }, () => new Float32Array(2));
    await Promise.all(outs.map((out) => comm.allReduce(x, { out })));
    await comm.destroy();  // at once: the check below would give the peer time
    const want = (comm.size * (comm.size + 1)) / 2;
    outs.forEach((out, k) => {
      if (out[0] !== want || out[1] !== want) throw new Error(`op ${k}: wrong sum ${out[0]}, want ${want}`);
    });
  } else if (mode !== 'initDestroy') {
    throw new Error(`unknown RINGTREE_TEST_MODE ${mode}`);
  }
  await comm.destroy();
  console.log('ok');
} catch (e) {
  console.log(`FAIL ${e?.name}: ${String(e?.message).split('\n')[0]}`);
  process.exitCode = 1;
}
