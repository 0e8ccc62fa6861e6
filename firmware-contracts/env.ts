import { z } from 'zod'

/**
 * Variables whose value must not reach a terminal or a log (keys, tokens, secrets, passwords): a config
 * error names the variable and says what is wrong, and a typo in a key would otherwise print the key.
 */
const SECRET_VARIABLE = /KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS/

function shownValue(variable: string, value: string): string {
  // A path to a key file is not the key: it is shown.
  if (SECRET_VARIABLE.test(variable) && !variable.endsWith('_FILE'))
    return `value hidden, ${value.length} characters`
  return `got ${JSON.stringify(withoutCredentials(value).slice(0, 80))}`
}

/**
 * URLs carry secrets of their own (`https://user:password@host`, `?apikey=`), in any variable that takes
 * one or a list of them (INFLUX_URL, ALARM_WEBHOOK_URLS): the user part and the query are not shown.
 */
function withoutCredentials(value: string): string {
  return value.replace(/\/\/[^/@\s,]*@/g, '//…@').replace(/\?[^,\s#]*/g, '?…')
}

/**
 * Building blocks for each component's configuration schema over environment variables: the contract
 * between the platform and the operators who deploy it. Values arrive as strings; each helper says in
 * its message what it expects, so a bad value names the variable and the fix.
 */
export function envInt(min: number, max: number) {
  return z
    .string()
    .trim()
    .regex(/^-?\d+$/, `expected a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, `expected a whole number from ${min} to ${max}`)
        .max(max, `expected a whole number from ${min} to ${max}`),
    )
}

export const envPort = envInt(0, 65535)

const TRUE = ['true', '1', 'yes', 'on'] as const
const FALSE = ['false', '0', 'no', 'off'] as const
export const envBool = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum([...TRUE, ...FALSE], `expected one of ${[...TRUE, ...FALSE].join(', ')}`))
  .transform((v) => (TRUE as readonly string[]).includes(v))

export const envUrl = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol.replace(/:$/, ''))
        } catch {
          return false
        }
      },
      `expected a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')}`,
    )

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    readonly component: string,
    readonly problems: readonly { variable: string; message: string; value?: string }[],
  ) {
    super(
      `invalid ${component} configuration:\n${problems
        .map(
          (p) =>
            `  ${p.variable}: ${p.message}${p.value === undefined ? '' : ` (${shownValue(p.variable, p.value)})`}`,
        )
        .join('\n')}`,
    )
  }
}

/**
 * Parses the variables a schema names out of an environment. Empty strings count as unset (compose files
 * often pass `VAR=`). Throws `ConfigError` listing every bad variable at once.
 */
export function parseEnv<S extends z.ZodObject>(
  component: string,
  schema: S,
  env: Readonly<Record<string, string | undefined>>,
): z.output<S> {
  const input: Record<string, string> = {}
  for (const key of Object.keys(schema.shape)) {
    const value = env[key]
    if (value !== undefined && value !== '') input[key] = value
  }
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const problems = result.error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? '(environment)')
    return { variable, message: issue.message, value: input[variable] }
  })
  throw new ConfigError(component, problems)
}
