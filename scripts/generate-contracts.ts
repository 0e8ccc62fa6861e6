/**
 * Regenerates the firmware-facing artefacts of firmware-contracts/ from the zod schemas:
 *   firmware-contracts/generated/json-schema/*.schema.json   one JSON Schema (draft 2020-12) per message/kind
 *   firmware-contracts/generated/CONTRACT.md                  the contract document
 *   firmware-contracts/fixtures/*.json                        golden fixtures, valid and invalid
 *
 *   npx tsx scripts/generate-contracts.ts           write them (and delete stale ones)
 *   npx tsx scripts/generate-contracts.ts --check   exit 1 if the committed files differ
 *
 * Output is deterministic (no clock, no randomness), so re-running produces byte-identical files.
 */
import type { Dirent } from 'node:fs'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { renderContractDoc } from '../firmware-contracts/contract-doc.ts'
import { fixtureFileContent, goldenFixtures } from '../firmware-contracts/golden-fixtures.ts'
import { contractJsonSchemas } from '../firmware-contracts/json-schema.ts'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const JSON_SCHEMA_DIR = 'firmware-contracts/generated/json-schema'
export const CONTRACT_DOC_PATH = 'firmware-contracts/generated/CONTRACT.md'
export const FIXTURES_DIR = 'firmware-contracts/fixtures'
/** Directories the generator owns entirely: a file in them that it does not produce is stale. */
export const GENERATED_DIRS = [JSON_SCHEMA_DIR, FIXTURES_DIR, 'firmware-contracts/generated'] as const
export const REGENERATE_COMMAND = 'npm run contracts:generate (tsx scripts/generate-contracts.ts)'

/** Every generated file, repo-relative POSIX path -> content, sorted by path. */
export function generateContractFiles(): Map<string, string> {
  const files = new Map<string, string>()
  for (const { name, schema } of contractJsonSchemas()) {
    files.set(`${JSON_SCHEMA_DIR}/${name}.schema.json`, `${JSON.stringify(schema, null, 2)}\n`)
  }
  files.set(CONTRACT_DOC_PATH, renderContractDoc())
  for (const fixture of goldenFixtures())
    files.set(`${FIXTURES_DIR}/${fixture.file}`, fixtureFileContent(fixture))
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** Files present in the generated directories, repo-relative; only direct children (the dirs are flat). */
export async function listGeneratedFiles(root = REPO_ROOT): Promise<string[]> {
  const found: string[] = []
  for (const dir of GENERATED_DIRS) {
    let entries: Dirent[]
    try {
      entries = await readdir(join(root, dir), { withFileTypes: true })
    } catch {
      continue
    }
    for (const e of entries) if (e.isFile()) found.push(`${dir}/${e.name}`)
  }
  return found.sort()
}

export interface Drift {
  readonly path: string
  readonly problem: 'missing' | 'different' | 'stale'
}

/** Differences between the working tree and what the generator produces now. */
export async function findDrift(root = REPO_ROOT): Promise<Drift[]> {
  const expected = generateContractFiles()
  const drift: Drift[] = []
  for (const [path, content] of expected) {
    let actual: string | undefined
    try {
      actual = await readFile(join(root, path), 'utf8')
    } catch {
      actual = undefined
    }
    if (actual === undefined) drift.push({ path, problem: 'missing' })
    else if (actual !== content) drift.push({ path, problem: 'different' })
  }
  for (const path of await listGeneratedFiles(root)) {
    if (!expected.has(path)) drift.push({ path, problem: 'stale' })
  }
  return drift
}

async function write(root: string): Promise<void> {
  const files = generateContractFiles()
  for (const [path, content] of files) {
    await mkdir(dirname(join(root, path)), { recursive: true })
    await writeFile(join(root, path), content)
  }
  for (const path of await listGeneratedFiles(root)) {
    if (!files.has(path)) await rm(join(root, path))
  }
  console.log(`wrote ${files.size} files under firmware-contracts/`)
}

async function main(): Promise<void> {
  if (process.argv.includes('--check')) {
    const drift = await findDrift()
    for (const d of drift) console.error(`${d.path}: ${d.problem}`)
    if (drift.length > 0) {
      console.error(`generated contract files are out of date: run ${REGENERATE_COMMAND}`)
      process.exitCode = 1
    } else console.log('generated contract files are up to date')
    return
  }
  await write(REPO_ROOT)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main()
}
