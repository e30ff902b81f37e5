// The PATCH oracle of tests/it/scim_patch_oracle.rs: reads JSON lines
//   {"kind": "User" | "Group", "resource": {...}, "operations": [...]}
// from stdin and writes one JSON line per input, in order:
//   {"scimmy": OUTCOME, "scim_patch": OUTCOME}
// where OUTCOME is {"ok": true, "resource": {...}} or {"ok": false, "scimType": ..., "detail": ...}.
// Two independent implementations of RFC 7644 §3.5.2: scimmy (schema-aware) and scim-patch
// (schema-less). Node resolves them from NODE_PATH (.node-peers/node_modules).
"use strict";

const readline = require("readline");
const SCIMMY = require("scimmy");
const { scimPatch } = require("scim-patch");

const PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

SCIMMY.Resources.declare(SCIMMY.Resources.User).extend(SCIMMY.Schemas.EnterpriseUser, false);
SCIMMY.Resources.declare(SCIMMY.Resources.Group);

function failure(err) {
  return { ok: false, scimType: err.scimType || err.constructor.name, detail: String(err.message) };
}

// scimmy applies the whole request; only when it crashes are the operations applied again one
// at a time, in order, as the request would (a refusal of any refuses the request), so that a
// crash of scimmy 1.3.5 can be told apart: a `remove` with a value list from an attribute the
// resource does not have throws a TypeError ("Cannot read properties of undefined");
// removing from nothing changes nothing (RFC 7644 §3.5.2.2), so that operation is skipped
// and counted in `skipped`.
const crashed = (err) => /Cannot read properties of undefined/.test(String(err.message));

async function scimmyApply(Schema, resource, operations) {
  const message = new SCIMMY.Messages.PatchOp({ schemas: [PATCH_OP], Operations: operations });
  const patched = await message.apply(new Schema(resource));
  // scimmy answers `undefined` when the operations changed nothing.
  return patched === undefined ? resource : JSON.parse(JSON.stringify(patched));
}

async function viaScimmy(kind, resource, operations) {
  const Schema = kind === "User" ? SCIMMY.Schemas.User : SCIMMY.Schemas.Group;
  try {
    return { ok: true, resource: await scimmyApply(Schema, resource, operations), skipped: 0 };
  } catch (err) {
    if (!crashed(err)) return failure(err);
  }
  let current = resource;
  let skipped = 0;
  for (const operation of operations) {
    try {
      current = await scimmyApply(Schema, current, [operation]);
    } catch (err) {
      if (crashed(err) && String(operation.op).toLowerCase() === "remove" && operation.value !== undefined) {
        skipped += 1;
        continue;
      }
      return failure(err);
    }
  }
  return { ok: true, resource: current, skipped };
}

function viaScimPatch(resource, operations) {
  try {
    const copy = JSON.parse(JSON.stringify(resource));
    return { ok: true, resource: scimPatch(copy, operations, { mutateDocument: true, treatMissingAsAdd: true }) };
  } catch (err) {
    return failure(err);
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const out = [];
  for await (const line of lines) {
    if (!line.trim()) continue;
    const { kind, resource, operations } = JSON.parse(line);
    const scimmy = await viaScimmy(kind, JSON.parse(JSON.stringify(resource)), JSON.parse(JSON.stringify(operations)));
    const scim_patch = viaScimPatch(resource, JSON.parse(JSON.stringify(operations)));
    out.push(JSON.stringify({ scimmy, scim_patch }));
  }
  process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
}

main().catch((err) => {
  process.stderr.write(`patch_oracle: ${err.stack || err}\n`);
  process.exit(1);
});
