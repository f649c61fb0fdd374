// Validates outputs of constrained generation with ajv (JSON Schema 2020-12).
// Input: a JSON-lines file, one {"label", "schema" (a path, or null for
// "any JSON object"), "output" (the generated text), "finish"} per line.
// Prints one line per failure and a summary "N valid, M invalid"; exit 1 on
// any invalid output.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";

const ajv = new Ajv2020({ strict: false, allErrors: true });
const compiled = new Map();
const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.trim());
let valid = 0;
let invalid = 0;
for (const line of lines) {
  const r = JSON.parse(line);
  let why = null;
  let doc;
  try {
    doc = JSON.parse(r.output);
  } catch (e) {
    why = "not JSON: " + e.message;
  }
  if (!why && r.schema) {
    let v = compiled.get(r.schema);
    if (!v) {
      v = ajv.compile(JSON.parse(readFileSync(r.schema, "utf8")));
      compiled.set(r.schema, v);
    }
    if (!v(doc)) why = "schema: " + ajv.errorsText(v.errors);
  } else if (!why && (typeof doc !== "object" || doc === null || Array.isArray(doc))) {
    why = "not a JSON object";
  }
  if (why) {
    invalid++;
    console.log(`INVALID ${r.label} (finish ${r.finish}): ${why}\n  output: ${JSON.stringify(r.output).slice(0, 400)}`);
  } else {
    valid++;
  }
}
console.log(`${valid} valid, ${invalid} invalid`);
process.exit(invalid ? 1 : 0);
