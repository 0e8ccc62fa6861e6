#!/usr/bin/env node
// Makes `npm start` and `npm test` work on a fresh clone of a fresh Debian machine: installs the npm
// dependencies when node_modules is missing or older than the lock file, and with --system the Debian
// packages the tests drive for real (influxdb, chromium). Does nothing when all is in place.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}

const marker = 'node_modules/.package-lock.json'
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync('package-lock.json').mtimeMs) {
  console.log('Installing npm dependencies (npm ci)…')
  run('npm', ['ci', '--no-audit', '--no-fund'])
}

if (process.argv.includes('--system')) {
  const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0
  const missing = [
    ['influxd', 'influxdb'],
    ['chromium', 'chromium'],
  ].filter(([bin]) => !has(bin))
  if (missing.length > 0) {
    const pkgs = missing.map(([, pkg]) => pkg)
    const isRoot = process.getuid?.() === 0
    if (!isRoot && !has('sudo')) {
      console.error(
        `The tests need Debian packages: ${pkgs.join(' ')}. Install them with: apt-get install -y ${pkgs.join(' ')}`,
      )
      process.exit(1)
    }
    const apt = (...args) =>
      execFileSync(isRoot ? 'apt-get' : 'sudo', [...(isRoot ? [] : ['apt-get']), ...args], {
        stdio: 'inherit',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      })
    console.log(`Installing Debian packages the tests use: ${pkgs.join(', ')}…`)
    apt('update', '-qq')
    apt('install', '-y', '-qq', '--no-install-recommends', ...pkgs)
  }
}
