// The frame the prepared GPU checks (scripts/gpu-*.mjs) share: their command
// line, the steps with their outcomes, subprocesses, and the closing summary
// and exit status (1 if a step failed; a script passes its own codes).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * @param {string} tag the prefix of every line the script prints, e.g. 'gpu-check'
 * @param {string} usage printed for --help / -h (then the process exits 0)
 */
export function checkScript(tag, usage) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const args = process.argv.slice(2);
  const flag = (name) => args.includes(name);
  const option = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  if (flag('--help') || flag('-h')) {
    console.log(usage);
    process.exit(0);
  }
  const results = [];
  const t0 = Date.now();
  const mark = (ok) => (ok === true ? 'ok' : ok === false ? 'FAILED' : 'skipped');
  const check = {
    root, args, flag, option, results, t0, mark,
    dryRun: flag('--dry-run'),
    outDir: path.resolve(option('--out', process.env.OUT || path.join(root, 'bench', 'results'))),
    /** Runs before the summary line (the script writes its results there). */
    beforeExit: () => {},
    /** Record and print a step's outcome: ok true, false (failed) or null (skipped). */
    step(name, ok, detail = '') {
      results.push({ name, ok, detail, seconds: (Date.now() - t0) / 1000 });
      console.log(`[${tag}] ${name}: ${mark(ok)}${detail ? ` - ${detail}` : ''}`);
    },
    /** Print the summary and exit: `code`, else 1 if a step failed, else 0. */
    finish(code) {
      check.beforeExit();
      console.log(`[${tag}] done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${results.map((r) => `${r.name}=${mark(r.ok)}`).join(' ')}`);
      process.exit(code ?? (results.some((r) => r.ok === false) ? 1 : 0));
    },
    /** spawnSync in the repository root, text output, never throws. */
    run(cmd, argv, opts = {}) {
      const r = spawnSync(cmd, argv, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
      return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
    },
    /** The last line of `text` that parses as a JSON object, or null. */
    lastJson(text) {
      const lines = text.trim().split('\n').filter((l) => l.trim().startsWith('{'));
      try { return lines.length ? JSON.parse(lines[lines.length - 1]) : null; } catch { return null; }
    },
  };
  return check;
}
