#!/usr/bin/env node
// Makes solc-js (the official compiler built to WebAssembly) behave like the native `solc`
// executable that py-solc-x and brownie call, so contracts compile offline:
//   solc --version                       -> prints the version line py-solc-x parses
//   solc --standard-json [--allow-paths A,B] [--base-path P]  <input.json
//                                        -> compiles the standard-JSON input read from stdin and
//                                           writes ONLY the output JSON to stdout
// Imports are resolved against the base path, the allowed paths and the working directory.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

function argValue(args, name) {
  const i = args.indexOf(name);
  if (i >= 0 && i + 1 < args.length) return args[i + 1];
  const eq = args.find((a) => a.startsWith(name + '='));
  return eq ? eq.slice(name.length + 1) : undefined;
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes('--version') || args.includes('-v')) {
    process.stdout.write('solc, the solidity compiler commandline interface\n');
    process.stdout.write('Version: ' + solc.version() + '\n');
    return 0;
  }
  if (!args.includes('--standard-json')) {
    process.stderr.write('solc shim: only --version and --standard-json are supported\n');
    return 2;
  }
  const roots = [process.cwd()];
  const basePath = argValue(args, '--base-path');
  if (basePath) roots.unshift(path.resolve(basePath));
  const allow = argValue(args, '--allow-paths');
  if (allow) allow.split(',').filter(Boolean).forEach((p) => roots.push(path.resolve(p)));

  const findImports = (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((r) => path.join(r, importPath));
    for (const c of candidates) {
      try {
        return { contents: fs.readFileSync(c, 'utf8') };
      } catch (e) { /* try the next root */ }
    }
    return { error: 'File not found: ' + importPath };
  };

  const input = fs.readFileSync(0, 'utf8');
  const output = solc.compile(input, { import: findImports });
  process.stdout.write(output);
  return 0;
}

process.exitCode = main();
