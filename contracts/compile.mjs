// Compile contracts/src (plus Chainlink's Operator and LinkToken from node_modules) with the pinned
// solcjs 0.8.19 and write deterministic artifacts to contracts/build.
//
//   node contracts/compile.mjs          rebuild contracts/build
//   node contracts/compile.mjs --check  exit 1 if contracts/build does not match the sources
//
// The manifest's sourcesHash is sha256 over every .sol file under contracts/src, sorted by path,
// each contributing "<path relative to contracts/src>\n<sha256 hex of its bytes>\n". Python recomputes
// it the same way (tests/chain/test_artifacts.py), so a forgotten rebuild fails the tests.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const srcDir = path.join(here, "src");
const buildDir = process.env.ORACLE_CONTRACTS_BUILD_DIR ?? path.join(here, "build");
const nodeModules = path.join(root, "node_modules");
const require = createRequire(path.join(root, "package.json"));
const solc = require("solc");

// Contracts from packages that we compile from node_modules (not copies) for later deployment.
const EXTERNAL = {
  Operator: "@chainlink/contracts/src/v0.8/operatorforwarder/Operator.sol",
  LinkToken: "@chainlink/contracts/src/v0.8/shared/token/ERC677/LinkToken.sol",
  AggregatorV3Interface: "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol",
};

const SETTINGS = {
  evmVersion: "paris",
  optimizer: { enabled: true, runs: 10000 },
  metadata: { bytecodeHash: "none" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function listSol(dir, base = dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSol(full, base));
    else if (entry.name.endsWith(".sol")) out.push(path.relative(base, full).split(path.sep).join("/"));
  }
  return out.sort();
}

function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

function sourceHashes() {
  const files = {};
  const h = createHash("sha256");
  for (const rel of listSol(srcDir)) {
    const digest = sha256(readFileSync(path.join(srcDir, rel)));
    files[rel] = digest;
    h.update(`${rel}\n${digest}\n`);
  }
  return { files, sourcesHash: h.digest("hex") };
}

function packageVersion(name) {
  return JSON.parse(readFileSync(path.join(nodeModules, name, "package.json"), "utf8")).version;
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

function writeJson(file, value) {
  writeFileSync(file, JSON.stringify(sortKeys(value), null, 2) + "\n");
}

function manifest() {
  const { files, sourcesHash } = sourceHashes();
  return {
    compiler: solc.version(),
    settings: SETTINGS,
    sourcesHash,
    sources: files,
    packages: {
      "@chainlink/contracts": packageVersion("@chainlink/contracts"),
      "@openzeppelin/contracts": packageVersion("@openzeppelin/contracts"),
    },
    external: EXTERNAL,
  };
}

function findImports(importPath) {
  // Package imports resolve from node_modules; our own files are passed in as sources.
  const candidates = [path.join(nodeModules, importPath), path.join(srcDir, importPath)];
  for (const file of candidates) {
    if (existsSync(file)) return { contents: readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

function compile() {
  const sources = {};
  const ours = listSol(srcDir);
  for (const rel of ours) sources[`src/${rel}`] = { content: readFileSync(path.join(srcDir, rel), "utf8") };
  for (const imp of Object.values(EXTERNAL)) {
    sources[imp] = { content: readFileSync(path.join(nodeModules, imp), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) {
    // Warnings in package code are not ours to fix; show errors and warnings in our own sources.
    const ours = e.sourceLocation?.file?.startsWith("src/") ?? false;
    if (e.severity === "error" || ours) console.error(e.formattedMessage);
  }
  if (errors.length) throw new Error(`solc reported ${errors.length} error(s)`);

  const artifacts = {};
  const wanted = new Set([...ours.map((r) => `src/${r}`), ...Object.values(EXTERNAL)]);
  for (const [file, contracts] of Object.entries(output.contracts)) {
    if (!wanted.has(file)) continue;
    for (const [name, c] of Object.entries(contracts)) {
      if (name in artifacts) throw new Error(`duplicate contract name ${name} (${file})`);
      artifacts[name] = {
        contractName: name,
        sourceName: file,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
    }
  }
  return artifacts;
}

function check() {
  const file = path.join(buildDir, "manifest.json");
  if (!existsSync(file)) {
    console.error(`stale: ${file} is missing; run node contracts/compile.mjs`);
    return 1;
  }
  const stored = JSON.parse(readFileSync(file, "utf8"));
  delete stored.contracts;
  const fresh = sortKeys(manifest());
  if (JSON.stringify(sortKeys(stored)) !== JSON.stringify(fresh)) {
    const changed = Object.keys({ ...stored.sources, ...fresh.sources })
      .filter((k) => stored.sources?.[k] !== fresh.sources[k]);
    console.error(`stale: contracts/build does not match contracts/src (changed: ${changed.join(", ") || "settings"})`);
    return 1;
  }
  console.log(`up to date: ${fresh.sourcesHash}`);
  return 0;
}

function build() {
  const started = Date.now();
  const artifacts = compile();
  rmSync(buildDir, { recursive: true, force: true });
  mkdirSync(buildDir, { recursive: true });
  for (const [name, art] of Object.entries(artifacts)) writeJson(path.join(buildDir, `${name}.json`), art);
  const m = manifest();
  m.contracts = Object.keys(artifacts).sort();
  writeJson(path.join(buildDir, "manifest.json"), m);
  console.log(`compiled ${Object.keys(artifacts).length} contracts in ${Date.now() - started} ms -> ${buildDir}`);
}

if (process.argv.includes("--check")) process.exit(check());
build();
