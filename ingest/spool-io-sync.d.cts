/** Where the time of one write + fdatasync went; see SyncTimes in spool-io.ts. */
export interface CommitTimes {
  readonly diskSeconds: number
  readonly cpuWaitSeconds: number
}

export interface CommitWriter {
  /**
   * Writes the text's UTF-8 bytes at the file's position and fdatasyncs, then fsyncs the directory `dirFd`
   * when it is given (≥ 0); throws what the file system threw.
   */
  writeAndSync(fd: number, text: string, dirFd?: number): CommitTimes
  close(): void
}

/** For the calling thread only: it times CPU waits through that thread's own schedstat file. */
export declare function commitWriter(): CommitWriter
/** The sync thread's body; runs only as a worker with `workerData.synced` (an Int32Array's SharedArrayBuffer of 3). */
export declare function serveSyncThread(): void
