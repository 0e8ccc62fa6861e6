import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

export interface WallAssets {
  readonly html: string
  readonly js: string
  readonly css: string
}

let cached: Promise<WallAssets> | undefined

/** Bundles the wall display once per process (esbuild takes well under a second). */
export function wallAssets(): Promise<WallAssets> {
  cached ??= (async () => {
    const dir = fileURLToPath(new URL('.', import.meta.url))
    const result = await build({
      entryPoints: [`${dir}wall.ts`],
      bundle: true,
      write: false,
      format: 'esm',
      target: 'es2022',
      minify: true,
      legalComments: 'none',
    })
    const js = result.outputFiles[0]?.text ?? ''
    const [html, css] = await Promise.all([
      readFile(`${dir}index.html`, 'utf8'),
      readFile(`${dir}wall.css`, 'utf8'),
    ])
    return { html, js, css }
  })()
  return cached
}
