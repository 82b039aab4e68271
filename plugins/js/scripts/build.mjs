// Builds one TypeScript (or JavaScript) plugin into a Rapport component that imports no WASI.
//
//   node scripts/build.mjs --wit <wit-dir> --world policy|scorer|reporter --entry src/x.ts --out x.wasm
//                          [--config-schema config.schema.json]
//
// 1. declarations for the world from the WIT (scripts/guest-types.mjs, into `types/`);
// 2. `tsc` type-checks and emits JavaScript next to the output;
// 3. `componentize-qjs --stub-wasi --sync` builds the component: QuickJS snapshotted with the
//    code, every WASI import replaced by a trap, the synchronous ABI the host calls;
// 4. the `init` export componentize-qjs leaves behind is removed, and the configuration's JSON
//    Schema added (scripts/strip-init.mjs).
//
// The builders are called directly: `jco componentize` bundles an older componentize-js, and
// `--aot` would download at build time.
import { spawnSync } from 'node:child_process';
import { mkdirSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve, relative, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { guestTypes } from './guest-types.mjs';
import { stripInit } from './strip-init.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    wit: { type: 'string', default: 'wit' },
    world: { type: 'string' },
    entry: { type: 'string' },
    out: { type: 'string' },
    // The JSON Schema of the plugin's configuration, shipped in the component.
    'config-schema': { type: 'string' },
    // Keep QuickJS's WASI imports (filesystem, clocks, random...): only to show that Rapport
    // refuses such a component.
    'with-wasi': { type: 'boolean', default: false },
  },
});
for (const required of ['world', 'entry', 'out']) {
  if (!args[required]) {
    console.error(`missing --${required}\nusage: node scripts/build.mjs --wit <wit-dir> --world <world> --entry <src/x.ts> --out <x.wasm>`);
    process.exit(2);
  }
}
const bin = (name) => {
  const path = join(root, 'node_modules', '.bin', name);
  if (!existsSync(path)) {
    console.error(`${path} is missing: install the build tools with \`npm ci\` in ${root} (or \`make setup\` in Rapport)`);
    process.exit(2);
  }
  return path;
};
const run = (cmd, argv) => {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) {
    process.stdout.write(r.stdout ?? '');
    console.error(`${basename(cmd)} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
};

const wit = resolve(root, args.wit);
const out = resolve(args.out);
const jsDir = join(dirname(out), `${basename(out, '.wasm')}.js`);
mkdirSync(dirname(out), { recursive: true });

await guestTypes(wit, args.world, join(root, 'types'));
rmSync(jsDir, { recursive: true, force: true });
run(bin('tsc'), ['-p', join(root, 'tsconfig.json'), '--outDir', jsDir]);
const entry = join(jsDir, relative(root, resolve(root, args.entry)).replace(/\.ts$/, '.js'));
const raw = `${out}.raw`;
run(bin('componentize-qjs'), [
  '--wit', wit, '--world', args.world, '--js', entry, '--module-root', jsDir,
  ...(args['with-wasi'] ? [] : ['--stub-wasi']), '--sync', '--output', raw,
]);
const schema = args['config-schema'] && readFileSync(resolve(root, args['config-schema']), 'utf8');
await stripInit(raw, out, schema);
rmSync(raw);
console.log(`built ${out}`);
