// Validate Kubernetes manifests (YAML, many documents, e.g. `kubectl kustomize` output on
// stdin) against the Kubernetes OpenAPI schemas, offline: kubernetes-models (npm, pinned
// in package.json) ships one validator per API type, generated from the Kubernetes
// OpenAPI spec and compiled with ajv. Unknown kinds and unknown fields are errors.
//   node validate.mjs < manifests.yaml      exit 0 valid, 1 invalid (one line per error)
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const text = readFileSync(0, "utf8");
let failed = 0, checked = 0;
for (const doc of parseAllDocuments(text)) {
  if (doc.errors.length) {
    console.log(`YAML: ${doc.errors[0].message}`);
    failed++;
    continue;
  }
  const obj = doc.toJS();
  if (obj === null) continue;
  const where = `${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"}`;
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    console.log(`${where}: no apiVersion or kind`);
    failed++;
    continue;
  }
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
  const path = `kubernetes-models/${group ? group + "/" : ""}${version}/${obj.kind}`;
  let Model;
  try {
    Model = (await import(path))[obj.kind];
  } catch {
    console.log(`${where}: ${obj.apiVersion} ${obj.kind} is not a Kubernetes API type this validator knows`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    checked++;
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }])
      console.log(`${where}: ${err.instancePath || "/"} ${err.message}${err.params?.additionalProperty ? ` (${err.params.additionalProperty})` : ""}`);
    failed++;
  }
}
console.log(`${checked} valid, ${failed} invalid`);
process.exit(failed ? 1 : 0);
