// Generates TypeScript declarations for a Rapport world from the contract's WIT, as componentize-qjs
// (QuickJS) passes values.
//
// Two things stand between `jco guest-types` and a QuickJS plugin:
// - jco 1.35 cannot read a WIT path: its bundled WASI shim no longer grants file access
//   ("failed to read path for WIT ... os error 44"). Its generator accepts the WIT as source
//   text, so this script reads the package's files itself, joins them into one document (the
//   `package` line once, first) and calls jco's own generator with it.
// - jco describes jco's own JS bindings; componentize-qjs maps a few types differently: 64-bit
//   integers are plain numbers (ids and times fit in 2^53), `option<T>` is `T | null`, and
//   lists of numbers are plain arrays. The declarations are rewritten to say so.
//
// usage: node scripts/guest-types.mjs <wit-dir> <world> <out-dir>
import { readdirSync, readFileSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { $init, generateTypes } from '@bytecodealliance/jco-transpile/component';

export async function guestTypes(witDir, world, outDir) {
  let packageLine = null;
  const bodies = [];
  for (const file of readdirSync(witDir).filter((f) => f.endsWith('.wit')).sort()) {
    const text = readFileSync(join(witDir, file), 'utf8');
    const body = text.replace(/^\s*package\s+[^;]+;\s*$/m, (line) => {
      packageLine = line.trim();
      return '';
    });
    bodies.push(`// ---- ${file}\n${body}`);
  }
  if (!packageLine) throw new Error(`no \`package\` declaration in ${witDir}/*.wit`);

  await $init;
  const files = generateTypes(world, {
    wit: { tag: 'source', val: `${packageLine}\n${bodies.join('\n')}` },
    world,
    guest: true,
    features: { tag: 'list', val: [] },
  });
  rmSync(outDir, { recursive: true, force: true });
  for (const [name, contents] of files) {
    const path = join(outDir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, asQuickJs(new TextDecoder().decode(contents)));
  }
  return files.length;
}

/** jco's type mapping rewritten to componentize-qjs's (its README's "WIT Type Mappings"). */
function asQuickJs(dts) {
  return dts
    .replace(/\bBigUint64Array\b|\bBigInt64Array\b|\bFloat64Array\b|\bFloat32Array\b/g, 'Array<number>')
    .replace(/\bbigint\b/g, 'number')
    .replace(/^(\s+\w+)\?: (.+),$/gm, '$1?: $2 | null,')
    .replace(/ \| undefined\b/g, ' | null | undefined');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [witDir, world, outDir] = process.argv.slice(2);
  if (!witDir || !world || !outDir) {
    console.error('usage: node scripts/guest-types.mjs <wit-dir> <world> <out-dir>');
    process.exit(2);
  }
  const n = await guestTypes(witDir, world, outDir);
  console.log(`wrote ${n} declaration files for world \`${world}\` into ${outDir}`);
}
