// The package's weight as an app ships it: src/index.js bundled and minified by esbuild,
// then gzipped (level 9). Prints bytes; `--max <bytes>` fails above that gzipped size.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const result = await build({
  entryPoints: [new URL("../src/index.js", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "esm",
  write: false,
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`danmaku-client: ${code.length} bytes minified, ${gzipped} bytes minified+gzipped`);
const max = process.argv.indexOf("--max");
if (max > 0 && gzipped > Number(process.argv[max + 1])) {
  console.error(`over the budget of ${process.argv[max + 1]} bytes gzipped`);
  process.exit(1);
}
