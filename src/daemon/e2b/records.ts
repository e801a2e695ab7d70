// An E2B sandbox as the E2B layer keeps it: E2B's id, the forkd sandbox that
// currently runs it (none while paused), its deadline, metadata, environment
// and access tokens. Stored in the daemon's state database, so a restarted
// daemon still answers for the sandboxes it created and still kills them at
// their deadline.

export type E2bState = 'running' | 'paused';

export interface E2bRecord {
  id: string;
  /** What the SDK created it from: a snapshot tag or recipe name. */
  templateId: string;
  /** The snapshot the live sandbox was restored from, or the paused state. */
  snapshotTag: string;
  /** True when the E2B layer made that snapshot (a fork's or a pause's) and removes it when unused. */
  snapshotOwned: boolean;
  /** The forkd sandbox running it; null while paused. */
  sandboxId: string | null;
  state: E2bState;
  metadata: Record<string, string>;
  envs: Record<string, string>;
  envdAccessToken: string;
  trafficAccessToken: string;
  startedAtMs: number;
  /** When the sandbox is killed (E2B: its end of life). */
  endAtMs: number;
  /** Egress: true when created with allowInternetAccess. */
  internet: boolean;
  /** Its ports answer anyone who can reach the daemon (E2B's default); false: only with the traffic token. */
  publicTraffic: boolean;
  /** Whether its root filesystem has /bin/bash (E2B runs commands in it; else the guest's sh). */
  hasBash?: boolean;
  /** At its deadline: pause (E2B's lifecycle onTimeout 'pause') instead of kill. */
  autoPause: boolean;
}
