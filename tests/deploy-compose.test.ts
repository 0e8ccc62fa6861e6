import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'

// The deployment a regency's IT person starts with `docker compose up`, read the way Compose reads it:
// `docker-compose config` resolves variables and defaults, and PyYAML (docker-compose's own dependency)
// turns its YAML into JSON. CI installs docker-compose (.ci/run).
const ROOT = new URL('..', import.meta.url).pathname
const SECRETS = ['INFLUX_TOKEN', 'INFLUX_ADMIN_PASSWORD', 'API_TOKEN'] as const
const OPTIONAL = ['INFLUX_ADMIN_USER', 'INFLUX_ORG', 'INFLUX_BUCKET', 'INFLUX_RETENTION'] as const

const VolumeSchema = z.union([
  z.string(),
  z.object({ type: z.string().optional(), source: z.string().optional(), target: z.string() }),
])
const ServiceSchema = z.object({
  image: z.string().optional(),
  build: z.unknown().optional(),
  command: z.array(z.string()).optional(),
  environment: z.record(z.string(), z.string()).default({}),
  volumes: z.array(VolumeSchema).default([]),
  ports: z
    .array(
      z.union([
        z.string(),
        z.object({ published: z.unknown(), target: z.number(), host_ip: z.string().optional() }),
      ]),
    )
    .default([]),
  healthcheck: z.object({ test: z.array(z.string()) }).optional(),
  depends_on: z.record(z.string(), z.object({ condition: z.string() })).optional(),
  restart: z.string().optional(),
  profiles: z.array(z.string()).optional(),
})
const ComposeSchema = z.object({
  services: z.record(z.string(), ServiceSchema),
  volumes: z.record(z.string(), z.unknown()).default({}),
})
type Service = z.infer<typeof ServiceSchema>

/** The environment of this process without the variables the compose file reads. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const name of [...SECRETS, ...OPTIONAL]) delete env[name]
  return env
}

function composeConfig(envFile: string) {
  return spawnSync('docker-compose', ['--env-file', envFile, '-f', 'docker-compose.yml', 'config'], {
    cwd: ROOT,
    env: cleanEnv(),
    encoding: 'utf8',
  })
}

function parseYaml(yaml: string): unknown {
  const json = execFileSync(
    'python3',
    ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    { input: yaml, encoding: 'utf8' },
  )
  return JSON.parse(json)
}

/** Named volume mounted at `target`, or undefined (a bind mount or an anonymous volume is not one). */
function namedVolumeAt(service: Service, target: string): string | undefined {
  for (const v of service.volumes) {
    if (typeof v === 'string') {
      const [source, path] = v.split(':')
      if (path === target && source !== undefined && !source.startsWith('/') && !source.startsWith('.')) {
        return source
      }
    } else if (v.target === target && (v.type === undefined || v.type === 'volume') && v.source) {
      return v.source
    }
  }
  return undefined
}

describe('docker-compose.yml', () => {
  let dir: string
  let compose: z.infer<typeof ComposeSchema>
  const secrets = {
    INFLUX_TOKEN: 'tok-3f9a1c',
    INFLUX_ADMIN_PASSWORD: 'pw-77d0e2b1',
    API_TOKEN: 'api-5c2e8b',
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'deploy-compose-'))
    writeFileSync(
      join(dir, 'secrets.env'),
      Object.entries(secrets)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    )
    const result = composeConfig(join(dir, 'secrets.env'))
    expect(result.status, result.stderr).toBe(0)
    compose = ComposeSchema.parse(parseYaml(result.stdout))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const service = (name: string): Service => {
    const s = compose.services[name]
    if (s === undefined) throw new Error(`no service ${name}`)
    return s
  }

  it('refuses to start without the secrets instead of shipping the same admin token to every node', () => {
    writeFileSync(join(dir, 'empty.env'), '')
    const result = composeConfig(join(dir, 'empty.env'))
    expect(result.status).not.toBe(0)
    expect(result.stderr).toMatch(/INFLUX_ADMIN_PASSWORD|INFLUX_TOKEN|API_TOKEN/)
    expect(result.stderr).toContain('.env.example')
    // Every secret is required on its own: with all but one given, that one is named.
    for (const missing of SECRETS) {
      const file = join(dir, `without-${missing}.env`)
      writeFileSync(
        file,
        Object.entries(secrets)
          .filter(([k]) => k !== missing)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
      )
      const r = composeConfig(file)
      expect(r.status, missing).not.toBe(0)
      expect(r.stderr, missing).toContain(missing)
    }
  })

  it('lists every secret it requires in .env.example, which the image never receives', () => {
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8')
    for (const name of SECRETS) expect(example).toMatch(new RegExp(`^${name}=\\S`, 'm'))
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n')
    expect(ignored).toContain('.env')
  })

  it('sets InfluxDB up with the org, bucket and token the platform writes with', () => {
    const influx = service('influxdb').environment
    const platform = service('platform').environment
    expect(service('influxdb').image).toMatch(/^influxdb:2(\.|$)/)
    expect(influx.DOCKER_INFLUXDB_INIT_MODE).toBe('setup')
    expect(influx.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN).toBe(secrets.INFLUX_TOKEN)
    expect(influx.DOCKER_INFLUXDB_INIT_PASSWORD).toBe(secrets.INFLUX_ADMIN_PASSWORD)
    expect(platform.INFLUX_API).toBe('v2')
    expect(platform.INFLUX_TOKEN).toBe(influx.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN)
    expect(platform.INFLUX_ORG).toBe(influx.DOCKER_INFLUXDB_INIT_ORG)
    expect(platform.INFLUX_BUCKET).toBe(influx.DOCKER_INFLUXDB_INIT_BUCKET)
    // Queries go to /query with db=<bucket>: the bucket's virtual DBRP mapping takes the bucket name as
    // the database only when the name has no '/'.
    expect(platform.INFLUX_BUCKET).not.toContain('/')
    const url = new URL(platform.INFLUX_URL ?? '')
    expect(url.hostname).toBe('influxdb')
    expect(url.port).toBe('8086')
    expect(platform.API_TOKEN).toBe(secrets.API_TOKEN)
  })

  it('keeps the spool and the registry on a named volume at DATA_DIR, the directory the image prepares', () => {
    const platform = service('platform')
    const dataDir = platform.environment.DATA_DIR
    expect(dataDir).toBe('/app/data')
    const volume = namedVolumeAt(platform, dataDir ?? '')
    expect(volume).toBeDefined()
    expect(Object.keys(compose.volumes)).toContain(volume)
    expect(namedVolumeAt(service('influxdb'), '/var/lib/influxdb2')).toBeDefined()
    expect(namedVolumeAt(service('influxdb'), '/etc/influxdb2')).toBeDefined()
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    expect(dockerfile).toContain(`chown -R node:node ${dataDir}`)
  })

  it('starts the platform once InfluxDB is healthy, restarts both, and checks the platform is healthy', () => {
    const influx = service('influxdb')
    const platform = service('platform')
    expect(influx.healthcheck?.test.length).toBeGreaterThan(1)
    expect(platform.depends_on?.influxdb?.condition).toBe('service_healthy')
    expect(platform.healthcheck?.test.join(' ')).toContain('/api/v1/health')
    for (const s of [influx, platform]) expect(s.restart).toMatch(/^(always|unless-stopped)$/)
  })

  it('keeps the simulator out of a plain `up`, so a production bucket gets no simulated readings', () => {
    expect(service('simulator').profiles ?? []).not.toHaveLength(0)
    expect(service('platform').environment.SIM_ENABLED).toBe('false')
  })

  it('publishes MQTT and HTTP, and InfluxDB’s admin API on loopback only', () => {
    const published = (s: Service) =>
      s.ports.map((p) =>
        typeof p === 'string' ? p : `${p.host_ip ? `${p.host_ip}:` : ''}${String(p.published)}:${p.target}`,
      )
    expect(published(service('platform'))).toEqual(expect.arrayContaining(['1883:1883', '8080:8080']))
    for (const port of published(service('influxdb'))) expect(port).toMatch(/^127\.0\.0\.1:/)
  })
})

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const pkg = z
    .object({ dependencies: z.record(z.string(), z.string()) })
    .parse(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')))

  it('installs only runtime dependencies, tsx among them, and runs as an unprivileged user', () => {
    expect(dockerfile).toMatch(/^FROM node:20[-\w.]*$/m)
    expect(dockerfile).toMatch(/npm ci --omit=dev/)
    expect(pkg.dependencies).toHaveProperty('tsx')
    expect(dockerfile).toMatch(/^USER node$/m)
  })

  it('runs the platform with node itself, not through npm (whose prestart would run npm ci as that user)', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1]
    expect(cmd).toBeDefined()
    const argv = z.array(z.string()).parse(JSON.parse(cmd ?? '[]'))
    expect(argv[0]).toBe('node')
    expect(argv).toContain('platform/main.ts')
  })
})
