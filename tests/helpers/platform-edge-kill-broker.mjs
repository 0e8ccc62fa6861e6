// Preloaded (node --import) into a platform process by tests/platform-edge-startup.test.ts: once the file
// named by KILL_WORKERS_WHEN exists, every worker thread the main thread started (the broker thread) is
// terminated, as an out-of-memory or a native crash of that thread would end it. Plain JavaScript: it
// loads before tsx is registered.
import { existsSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import workerThreads from 'node:worker_threads'

const trigger = process.env.KILL_WORKERS_WHEN
if (trigger && workerThreads.isMainThread) {
  const workers = []
  const Original = workerThreads.Worker
  workerThreads.Worker = class extends Original {
    constructor(...args) {
      super(...args)
      workers.push(this)
    }
  }
  // `import { Worker } from 'node:worker_threads'` in the platform sees the wrapper.
  syncBuiltinESMExports()
  const poll = setInterval(() => {
    if (!existsSync(trigger)) return
    clearInterval(poll)
    for (const w of workers) void w.terminate()
  }, 50)
  poll.unref()
}
