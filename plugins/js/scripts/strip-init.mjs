// Removes the `init` export that componentize-qjs leaves on every component it builds.
//
// componentize-qjs 0.4.5 pre-initializes QuickJS with Wizer through an exported
// `init(shim, script, entry-path, disable-gc)` function and leaves that export on the output.
// Rapport admits a component only when it exports exactly one world's functions, so a policy
// that also exports `init` is refused ("it exports `after`, `before`, `init`"); and nothing
// should be able to call it after the snapshot: it would replace the plugin's code.
//
// The component's last lines alias each export out of the inner instance and re-export it; this
// rewrites that tail without `init` (renumbering the function indices that follow it), then
// checks that the result no longer exports it.
//
// It also adds the plugin's configuration schema, when there is one, as the component's
// `rapport:config-schema` custom section: the host then checks every configuration an
// organization sets against it, and refuses a bad one naming the field.
//
// usage: node scripts/strip-init.mjs <in.wasm> <out.wasm> [config.schema.json]
import { readFileSync, writeFileSync } from 'node:fs';
import { print, parse, componentWit } from '@bytecodealliance/jco-transpile/wasm-tools';

const ALIAS = /^  \(alias export (\d+) "([^"]+)" \(func \(;(\d+);\)\)\)$/;
const EXPORT = /^  \(export \(;(\d+);\) "([^"]+)" \(func (\d+)\)\)$/;

export async function stripInit(input, output, schema) {
  const lines = (await print(readFileSync(input))).trimEnd().split('\n');
  if (lines.at(-1) !== ')') throw new Error(`${input}: unexpected component layout (no closing paren)`);

  // The tail: pairs of `(alias export I "name" (func (;k;)))` + `(export (;k+1;) "name" (func k))`.
  let start = lines.length - 1;
  while (start >= 2 && ALIAS.test(lines[start - 2]) && EXPORT.test(lines[start - 1])) start -= 2;
  const pairs = [];
  for (let i = start; i < lines.length - 1; i += 2) {
    const [, instance, name, index] = lines[i].match(ALIAS);
    pairs.push({ instance, name, index: Number(index) });
  }
  if (!pairs.some((p) => p.name === 'init')) {
    throw new Error(`${input}: no \`init\` export at the end of the component; is it componentize-qjs output?`);
  }
  let next = pairs[0].index;
  const tail = [];
  for (const { instance, name } of pairs.filter((p) => p.name !== 'init')) {
    tail.push(`  (alias export ${instance} "${name}" (func (;${next};)))`);
    tail.push(`  (export (;${next + 1};) "${name}" (func ${next}))`);
    next += 2;
  }
  if (schema !== undefined) {
    // Parsed (a schema that is not JSON stops the build, not the install) and written compact:
    // no raw control characters for the text format's string.
    const compact = JSON.stringify(JSON.parse(schema));
    const quoted = compact.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    tail.push(`  (@custom "rapport:config-schema" "${quoted}")`);
  }
  const bytes = await parse([...lines.slice(0, start), ...tail, ')'].join('\n'));
  if (/^\s*export init:/m.test(await componentWit(bytes))) throw new Error(`${output}: still exports \`init\``);
  writeFileSync(output, bytes);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [input, output, schema] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node scripts/strip-init.mjs <in.wasm> <out.wasm> [config.schema.json]');
    process.exit(2);
  }
  await stripInit(input, output, schema && readFileSync(schema, 'utf8'));
}
