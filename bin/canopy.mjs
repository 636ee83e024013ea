#!/usr/bin/env node
// The `canopy` command. Runs the TypeScript sources through tsx so there is no separate build
// step between `npm install` and `npm start`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
