// The tree-algorithm case table, shared by tree-rank.mjs and test/tree.test.ts
// (which enumerates it to insist that every rank reported every case).
// Inputs and references come from collectiveTable.mjs (exact float results).
export const TREE_BIG = 2 ** 20 + 3;

const REDUCING = [['float32', 'sum'], ['float32', 'max'], ['float32', 'avg'], ['int32', 'sum'], ['int32', 'prod'], ['bfloat16', 'sum'], ['int64', 'min']];
const MOVING = ['float32', 'bfloat16', 'int64', 'int8'];

/** Cases: { id, coll, dtype, op, count, inPlace, root, algorithm, chunkBytes?, seed }. */
export function treeCases(size, table) {
  const cases = [];
  const add = (coll, dtype, op, count, inPlace, root, extra = {}) => {
    const algorithm = extra.algorithm ?? 'tree';
    const tag = [coll, algorithm, dtype, op ?? 'copy', `n${count}`, inPlace ? 'inplace' : 'outofplace'];
    if (root >= 0) tag.push(`root${root}`);
    if (extra.chunkBytes) tag.push(`chunk${extra.chunkBytes}`);
    cases.push({ id: tag.join('/'), coll, dtype, op, count, inPlace, root, algorithm, seed: cases.length * 1000 + 29, ...extra });
  };
  const counts = [0, 1, 7, 1023];
  let i = 0;
  for (const [dtype, op] of REDUCING) {
    for (const count of counts) {
      add('allReduce', dtype, op, count, i % 2 === 0, -1);
      add('reduce', dtype, op, count, i % 2 === 1, i % size);
      i++;
    }
    // Many chunks per half (100-byte chunks; 4 KiB slots in the slots config).
    add('allReduce', dtype, op, 5003, i % 2 === 0, -1, { chunkBytes: 100 });
    add('reduce', dtype, op, 5003, i % 2 === 0, (i + 1) % size, { chunkBytes: 100 });
    i++;
  }
  for (const dtype of MOVING) {
    for (const count of counts) { add('broadcast', dtype, null, count, i % 2 === 0, i % size); i++; }
    add('broadcast', dtype, null, 5003, i % 2 === 0, (i + 1) % size, { chunkBytes: 100 });
    i++;
  }
  // Every root, both placements.
  for (let root = 0; root < size; root++) {
    for (const inPlace of [false, true]) {
      add('broadcast', 'float32', null, 1023, inPlace, root, { chunkBytes: 256 });
      add('reduce', 'int32', 'sum', 1023, inPlace, root, { chunkBytes: 256 });
    }
  }
  // 'auto' (tree below the crossover, ring above).
  add('allReduce', 'float32', 'sum', 1023, false, -1, { algorithm: 'auto' });
  add('allReduce', 'int32', 'sum', 300_000, true, -1, { algorithm: 'auto' });
  add('broadcast', 'float32', null, 1023, false, size - 1, { algorithm: 'auto' });
  if (table === 'full') {
    add('allReduce', 'float32', 'sum', TREE_BIG, false, -1);
    add('allReduce', 'bfloat16', 'sum', TREE_BIG, true, -1);
    add('allReduce', 'int64', 'min', TREE_BIG, false, -1);
    add('broadcast', 'int8', null, TREE_BIG, true, size - 1);
    add('reduce', 'float32', 'avg', TREE_BIG, false, size > 1 ? 1 : 0);
  }
  return cases;
}
