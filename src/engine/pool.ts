// A warm pool: children of one snapshot restored ahead of demand and kept
// idle (an idle child costs ~0.6% of a host core under TCG). Taking one only
// hands it over (fresh entropy, clock, vary): no QEMU start, no device-state
// load, no first-run code translation on the request's path. The pool
// refills itself in the background.
import { errorMessage } from '../errors.js';
import type { CallOptions } from '../util/abort.js';
import {
  handOver,
  restoreChildren,
  type ChildResult,
  type ForkContext,
  type RestoreOptions,
} from './fork.js';
import type { Sandbox } from './sandbox.js';
import type { Variant } from './variants.js';
import { DEFAULT_EGRESS, needsHostNetwork, type EgressPolicy } from './egress.js';

export interface PoolOptions {
  tag: string;
  size: number;
  /** Restore options for pooled children (network, memory limit). */
  restore?: Pick<RestoreOptions, 'egress' | 'memoryLimitMib' | 'limits' | 'concurrency'>;
  onError?: (message: string) => void;
}

export class WarmPool {
  private ready: Sandbox[] = [];
  private refilling: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly ctx: ForkContext,
    readonly options: PoolOptions,
  ) {}

  get tag(): string {
    return this.options.tag;
  }

  /** The egress policy every pooled child was restored with. */
  get egress(): EgressPolicy {
    return this.options.restore?.egress ?? DEFAULT_EGRESS;
  }

  /** Children idle in the pool right now. */
  get available(): number {
    return this.ready.length;
  }

  /** Restore children until the pool is full; resolves when it is. */
  fill(): Promise<void> {
    this.refilling ??= this.refill().finally(() => {
      this.refilling = null;
    });
    return this.refilling;
  }

  private async refill(): Promise<void> {
    while (!this.closed && this.ready.length < this.options.size) {
      const missing = this.options.size - this.ready.length;
      const result = await restoreChildren(
        this.ctx,
        { ...this.options.restore, tag: this.options.tag, n: missing },
        { warmOnly: true },
      );
      const failed = result.children.filter((c) => !c.ok);
      for (const child of result.children) {
        if (!child.ok) continue;
        if (this.closed) await child.sandbox.kill();
        else this.ready.push(child.sandbox);
      }
      if (failed.length) {
        // Do not spin on a snapshot that cannot be restored.
        this.options.onError?.(
          `warm pool for ${this.tag}: ${failed.length} children failed: ${errorMessage(failed[0]!.ok ? '' : failed[0]!.error)}`,
        );
        return;
      }
    }
  }

  /**
   * Hand out up to `n` pooled children (fewer if the pool has fewer). Starts
   * a background refill. Indices run from `firstIndex`.
   */
  async take(
    n: number,
    opts: CallOptions & { vary?: (index: number) => Variant | undefined; firstIndex?: number } = {},
  ): Promise<ChildResult[]> {
    const taken = this.ready.splice(0, n);
    const firstIndex = opts.firstIndex ?? 0;
    const results = await Promise.all(
      taken.map(async (sandbox, i): Promise<ChildResult> => {
        const index = firstIndex + i;
        const started = Date.now();
        try {
          await handOver(
            sandbox.agent,
            { variant: opts.vary?.(index), networked: needsHostNetwork(this.egress) },
            opts,
          );
          const ms = Date.now() - started;
          return { index, ok: true, sandbox, timings: { launchMs: 0, loadMs: 0, agentMs: ms, totalMs: ms } };
        } catch (err) {
          await sandbox.kill();
          return { index, ok: false, error: err instanceof Error ? err : new Error(String(err)) };
        }
      }),
    );
    if (!this.closed) this.fill().catch((err: unknown) => this.options.onError?.(errorMessage(err)));
    return results;
  }

  /** Kill every pooled child; a refill in flight kills what it restores. */
  async close(): Promise<void> {
    this.closed = true;
    const children = this.ready.splice(0);
    await Promise.all(children.map((c) => c.kill()));
    await this.refilling?.catch(() => undefined);
  }
}
