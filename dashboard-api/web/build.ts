import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

export interface PageAssets {
  readonly html: string
  readonly js: string
  readonly css: string
}

const cache = new Map<string, Promise<PageAssets>>()

/**
 * Bundles one page of `web/` (its TypeScript entry, HTML and optional CSS) once per process; esbuild takes
 * well under a second, so pages are always built from the sources they ship with.
 */
function pageAssets(entry: string, htmlFile: string, cssFile?: string): Promise<PageAssets> {
  let assets = cache.get(entry)
  if (assets === undefined) {
    assets = (async () => {
      const dir = fileURLToPath(new URL('.', import.meta.url))
      const result = await build({
        entryPoints: [`${dir}${entry}`],
        bundle: true,
        write: false,
        format: 'esm',
        target: 'es2022',
        minify: true,
        legalComments: 'none',
      })
      const [html, css] = await Promise.all([
        readFile(`${dir}${htmlFile}`, 'utf8'),
        cssFile ? readFile(`${dir}${cssFile}`, 'utf8') : '',
      ])
      return { html, js: result.outputFiles[0]?.text ?? '', css }
    })()
    cache.set(entry, assets)
  }
  return assets
}

export const wallAssets = () => pageAssets('wall.ts', 'index.html', 'wall.css')
export const installerAssets = () => pageAssets('installer.ts', 'installer.html')
